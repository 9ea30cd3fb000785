package clawpatrol

github_request(method, path) := {
	"protocol": "http",
	"endpoint": "github",
	"http": {"method": method, "scheme": "https", "host": "api.github.com", "path": path, "size": 0, "truncated": false},
}

test_github_reads_allowed if {
	"github-read" in allow with input as github_request("GET", "/repos/acme/app/issues")
	count(deny) == 0 with input as github_request("GET", "/repos/acme/app/issues")
}

test_github_delete_denied if {
	deny[{"rule": "github-delete", "reason": "deleting on GitHub is not allowed"}] with input as github_request("DELETE", "/repos/acme/app")
}

test_github_merge_needs_approval if {
	some e in approve with input as github_request("PUT", "/repos/acme/app/pulls/7/merge")
	e.rule == "github-merge"
}

test_github_other_writes_fall_through if {
	inp := github_request("POST", "/repos/acme/app/issues")
	count(allow) == 0 with input as inp
	count(approve) == 0 with input as inp
	count(deny) == 0 with input as inp
}

test_github_graphql_mutation_merge if {
	inp := object.union(github_request("POST", "/graphql"), {"http": {"method": "POST", "path": "/graphql", "json": {"query": "mutation { mergePullRequest(input: {pullRequestId: \"x\"}) { clientMutationId } }"}}})
	some e in approve with input as inp
	e.rule == "github-merge"
	count(allow) == 0 with input as inp
}
