package clawpatrol

# Slack's Web API at the endpoint named "slack": the agent may post only to
# the channels named here. Slack takes the channel from a JSON body, a form
# body or the query string, so every place is read, and a post naming any
# other channel (or none that can be read) is not allowed.

slack_channels := {"#agent-reports", "C0123456789"}

slack_post_paths := {"/api/chat.postMessage", "/api/chat.postEphemeral", "/api/chat.scheduleMessage"}

# The channels a post names; the allow and deny rules below check it is a post.

slack_channels_named contains c if {
	c := input.http.json.channel
}

slack_channels_named contains c if {
	some c in input.http.query.channel
}

slack_channels_named contains c if {
	some ct in input.http.headers["content-type"]
	startswith(ct, "application/x-www-form-urlencoded")
	some c in urlquery.decode_object(input.http.body).channel
}

allow contains "slack-post-named-channel" if {
	input.endpoint == "slack"
	input.http.method == "POST"
	input.http.path in slack_post_paths
	count(slack_channels_named) > 0
	every c in slack_channels_named {
		c in slack_channels
	}
}

deny contains {"rule": "slack-other-channel", "reason": sprintf("posting to %v is not allowed", [c])} if {
	input.endpoint == "slack"
	input.http.method == "POST"
	input.http.path in slack_post_paths
	some c in slack_channels_named
	not c in slack_channels
}

# auth.test is what most clients call first, to check the token works.
allow contains "slack-auth-test" if {
	input.endpoint == "slack"
	input.http.path == "/api/auth.test"
}
