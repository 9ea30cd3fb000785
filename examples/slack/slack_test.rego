package clawpatrol

slack_post_json(channel) := {
	"protocol": "http",
	"endpoint": "slack",
	"http": {
		"method": "POST", "scheme": "https", "host": "slack.com", "path": "/api/chat.postMessage",
		"headers": {"content-type": ["application/json; charset=utf-8"]},
		"json": {"channel": channel, "text": "done"}, "size": 40, "truncated": false,
	},
}

test_slack_named_channel_allowed if {
	"slack-post-named-channel" in allow with input as slack_post_json("#agent-reports")
}

test_slack_other_channel_denied if {
	some e in deny with input as slack_post_json("#general")
	e.rule == "slack-other-channel"
	e.reason == "posting to #general is not allowed"
}

test_slack_form_body_read if {
	inp := {
		"protocol": "http", "endpoint": "slack",
		"http": {
			"method": "POST", "path": "/api/chat.postMessage",
			"headers": {"content-type": ["application/x-www-form-urlencoded"]},
			"body": "channel=%23random&text=hi", "size": 25, "truncated": false,
		},
	}
	some e in deny with input as inp
	e.rule == "slack-other-channel"
	count(allow) == 0 with input as inp
}

test_slack_post_without_channel_not_allowed if {
	inp := json.patch(slack_post_json("x"), [{"op": "remove", "path": "/http/json/channel"}])
	count(allow) == 0 with input as inp
}
