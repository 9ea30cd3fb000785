package clawpatrol

# The Kubernetes API at the endpoint named "cluster": reading is allowed,
# exec (and attach and port-forward, which reach into a pod the same way)
# waits for an approver, and secrets are denied whatever the verb.
# Everything else falls to policy.default.

k8s_read_verbs := {"get", "list", "watch"}

k8s_into_pod := {"exec", "attach", "portforward"}

allow contains "k8s-read" if {
	input.endpoint == "cluster"
	input.k8s.verb in k8s_read_verbs
}

# API discovery (/api, /apis, /version) is how kubectl learns the resources.
allow contains "k8s-discovery" if {
	input.endpoint == "cluster"
	input.k8s.discovery
}

approve contains {"rule": "k8s-exec", "reason": sprintf("%s into pod %s/%s: %s", [input.k8s.subresource, input.k8s.namespace, input.k8s.name, concat(" ", object.get(input.k8s, "command", []))])} if {
	input.endpoint == "cluster"
	input.k8s.resource == "pods"
	input.k8s.subresource in k8s_into_pod
}

deny contains {"rule": "k8s-secrets", "reason": "secrets are not for agents"} if {
	input.endpoint == "cluster"
	input.k8s.group == ""
	input.k8s.resource == "secrets"
}
