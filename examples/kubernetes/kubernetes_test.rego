package clawpatrol

k8s_req(verb, resource, subresource) := {
	"protocol": "k8s",
	"endpoint": "cluster",
	"k8s": {"verb": verb, "group": "", "version": "v1", "resource": resource, "subresource": subresource, "namespace": "default", "name": "web-0"},
}

test_k8s_get_allowed if {
	"k8s-read" in allow with input as k8s_req("get", "pods", "")
}

test_k8s_exec_needs_approval if {
	inp := json.patch(k8s_req("connect", "pods", "exec"), [{"op": "add", "path": "/k8s/command", "value": ["sh", "-c", "id"]}])
	some e in approve with input as inp
	e.rule == "k8s-exec"
	e.reason == "exec into pod default/web-0: sh -c id"
}

test_k8s_exec_over_websocket_is_not_a_read if {
	# kubectl's WebSocket exec is a GET and its SPDY exec a POST; clawpatrol
	# calls both verb connect, and the rule keys on the subresource anyway.
	count(approve) == 1 with input as k8s_req("connect", "pods", "exec")
}

test_k8s_secrets_denied if {
	some e in deny with input as k8s_req("list", "secrets", "")
	e.rule == "k8s-secrets"
}
