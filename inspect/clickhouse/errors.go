package clickhouse

import (
	"fmt"
	"io"
	nethttp "net/http"
	"strconv"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
	clawhttp "github.com/clawpatrol/clawpatrol/inspect/http"
)

// ClickHouse error codes clawpatrol answers with.
const (
	codeAccessDenied = 497 // ACCESS_DENIED: a denied query or request
	codeNetworkError = 210 // NETWORK_ERROR: the server could not be reached
)

// writeError answers a refused request the way ClickHouse reports its own
// errors, so clients print it as they print the server's: a text body
// "Code: N. DB::Exception: message. (NAME)" and the code in
// X-ClickHouse-Exception-Code.
func writeError(w nethttp.ResponseWriter, status int, d action.Decision) {
	w.Header().Set(clawhttp.RuleHeader, headerValue(d.Rule))
	write(w, status, codeAccessDenied, "ACCESS_DENIED", fmt.Sprintf("clawpatrol: %s (rule %s)", d.Reason(), d.Rule))
}

// writeUpstreamError tells the agent why an allowed request got no answer.
func writeUpstreamError(w nethttp.ResponseWriter, err error) {
	write(w, nethttp.StatusBadGateway, codeNetworkError, "NETWORK_ERROR", "clawpatrol: upstream unreachable: "+err.Error())
}

func write(w nethttp.ResponseWriter, status, code int, name, msg string) {
	body := fmt.Sprintf("Code: %d. DB::Exception: %s. (%s)\n", code, strings.TrimSuffix(msg, "."), name)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-ClickHouse-Exception-Code", strconv.Itoa(code))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// headerValue makes a rule id safe as a header value.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
