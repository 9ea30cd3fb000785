package clawpatrol

# GitHub's REST and GraphQL API at the endpoint named "github": reads are
# allowed, deletes are denied, merging a pull request waits for an approver.
# Every other write falls through to policy.default.

github_read_methods := {"GET", "HEAD", "OPTIONS"}

allow contains "github-read" if {
	input.endpoint == "github"
	input.http.method in github_read_methods
}

deny contains {"rule": "github-delete", "reason": "deleting on GitHub is not allowed"} if {
	input.endpoint == "github"
	input.http.method == "DELETE"
}

# PUT /repos/OWNER/REPO/pulls/N/merge
approve contains {"rule": "github-merge", "reason": "merging a pull request needs an approver"} if {
	input.endpoint == "github"
	input.http.method == "PUT"
	regex.match(`^/repos/[^/]+/[^/]+/pulls/[0-9]+/merge$`, input.http.path)
}

# GraphQL carries every operation in a POST body. A query reads; mutations
# that delete are denied and a merge needs an approver, as in REST. This
# reads the body: when it was truncated, the decision is deny
# (truncated-input) rather than a guess.
github_graphql_text := input.http.json.query if {
	input.endpoint == "github"
	input.http.method == "POST"
	input.http.path == "/graphql"
}

allow contains "github-graphql-query" if {
	input.endpoint == "github"
	text := github_graphql_text
	not regex.match(`^\s*mutation\b`, text)
}

deny contains {"rule": "github-delete", "reason": "deleting on GitHub is not allowed"} if {
	input.endpoint == "github"
	regex.match(`^\s*mutation\b[\s\S]*\bdelete[A-Z]`, github_graphql_text)
}

approve contains {"rule": "github-merge", "reason": "merging a pull request needs an approver"} if {
	input.endpoint == "github"
	regex.match(`^\s*mutation\b[\s\S]*\bmergePullRequest\b`, github_graphql_text)
}
