package clawpatrol

# A model API (OpenAI's, at the endpoint named "openai"): the agent may call
# the inference endpoints, streaming or not, but only with the key
# clawpatrol holds for it. input.credential names the credential clawpatrol
# splices into the request, which it does only when the agent sent that
# credential's placeholder; a request with any other key is denied, so an
# agent cannot bring its own key to spend on another account.

model_api_calls := {
	["POST", "/v1/chat/completions"],
	["POST", "/v1/responses"],
	["POST", "/v1/embeddings"],
	["GET", "/v1/models"],
}

model_api_key_headers := {"authorization", "x-api-key", "api-key"}

allow contains "model-api-call" if {
	input.endpoint == "openai"
	input.credential == "openai"
	[input.http.method, input.http.path] in model_api_calls
}

deny contains {"rule": "model-api-foreign-key", "reason": "only the configured API key may be used"} if {
	input.endpoint == "openai"
	not input.credential == "openai"
	some h in model_api_key_headers
	input.http.headers[h]
}

# Files and fine-tuning upload data to the provider; batches run unattended.
deny contains {"rule": "model-api-upload", "reason": "uploading files to the model provider is not allowed"} if {
	input.endpoint == "openai"
	startswith(input.http.path, "/v1/files")
}
