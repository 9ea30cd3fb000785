package postgres

import (
	"bytes"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
)

// poisonSQL replaces a denied statement on its way to the server. It is a
// syntax error in every state, so the server fails exactly where the
// denied statement stood: an open transaction is aborted, a pipeline is
// skipped up to its Sync, a denied unnamed statement no longer exists, just
// as if the server itself had refused the statement. The agent gets
// clawpatrol's error in place of the server's. Server logs show this text.
const poisonSQL = "clawpatrol_denied_this_statement"

// errorResponse builds an ErrorResponse; severity is ERROR or FATAL.
func errorResponse(severity, code, message string) []byte {
	message = strings.ReplaceAll(message, "\x00", "")
	return newMsg('E').
		byte1('S').str(severity).
		byte1('V').str(severity).
		byte1('C').str(code).
		byte1('M').str(message).
		byte1(0).done()
}

// denyResponse is what the agent gets for a denied statement: SQLSTATE
// 42501 (insufficient_privilege), naming the rule and its reason.
func denyResponse(d action.Decision) []byte {
	return errorResponse("ERROR", "42501", "clawpatrol: "+d.Reason()+" (rule "+d.Rule+")")
}

// errorMessage returns the message (M) field of an ErrorResponse body.
func errorMessage(body []byte) string {
	for len(body) > 1 {
		code := body[0]
		i := bytes.IndexByte(body[1:], 0)
		if i < 0 {
			return ""
		}
		if code == 'M' {
			return string(body[1 : 1+i])
		}
		body = body[2+i:]
	}
	return ""
}
