package clawpatrol

model_api_input(credential, stream) := {
	"protocol": "http",
	"endpoint": "openai",
	"credential": credential,
	"http": {
		"method": "POST", "scheme": "https", "host": "api.openai.com", "path": "/v1/chat/completions",
		"headers": {"authorization": ["<redacted>"], "accept": ["text/event-stream"]},
		"json": {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
		"size": 90, "truncated": false,
	},
}

test_model_api_streaming_allowed if {
	"model-api-call" in allow with input as model_api_input("openai", true)
	count(deny) == 0 with input as model_api_input("openai", true)
}

test_model_api_other_key_denied if {
	some e in deny with input as model_api_input("", false)
	e.rule == "model-api-foreign-key"
}
