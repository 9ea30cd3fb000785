package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/chtest"
)

// TestClickHouseThroughRun: curl inside clawpatrol queries a real
// ClickHouse over its HTTP interface with only the placeholder; file() is
// refused with ClickHouse's own error shape.
func TestClickHouseThroughRun(t *testing.T) {
	srv, err := chtest.Start()
	if err != nil {
		t.Fatalf("clickhouse test server: %v", err)
	}
	defer srv.Stop()
	e := newEnv(t)
	e.config(fmt.Sprintf(`
endpoints:
  ch:
    hosts: [ch.test]
    protocol: clickhouse
    upstream: 127.0.0.1:%d
    credential: chk
credentials:
  chk:
    from: {env: CH_REAL_PASSWORD}
    username: %s
    placeholder: {env: CH_KEY}
policy:
  paths: [policy.rego]
`, srv.Port, chtest.User))
	e.write("policy.rego", `package clawpatrol

allow contains "reads-and-inserts" if {
	input.endpoint == "ch"
	every v in input.sql.verbs { v in {"select", "insert"} }
}

deny contains {"rule": "no-table-functions", "reason": "file() reads the server's disk"} if {
	"file" in input.sql.functions
}
`)
	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", "sh", "-c",
		`curl -sS -H "X-ClickHouse-User: app" -H "X-ClickHouse-Key: $CH_KEY" --data-binary "SELECT 40 + 2" http://ch.test:8123/; `+
			`curl -sS -w "status=%{http_code}\n" -H "X-ClickHouse-Key: $CH_KEY" --data-binary "SELECT * FROM file('/etc/passwd', 'CSV', 'x String')" http://ch.test:8123/`)
	cmd.Env = append(cmd.Env, "CH_REAL_PASSWORD="+chtest.Password)
	r := e.exec(cmd)
	if !strings.HasPrefix(r.stdout, "42\n") || !strings.Contains(r.stdout, "Code: 497") || !strings.Contains(r.stdout, "status=403") ||
		!strings.Contains(r.stdout, "no-table-functions") {
		t.Fatalf("want 42, then a 497 refusal of file():\n%v", r)
	}
	// A 50 MB INSERT streams through: the policy sees the statement, the
	// rows go on to the server.
	before, _ := srv.Query("SELECT count() FROM rows")
	ins := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", "sh", "-c",
		`python3 -c 'import sys; sys.stdout.write(("y" * 99 + "\n") * 500000)' | `+
			`curl -sS -w "status=%{http_code}\n" -H "X-ClickHouse-User: app" -H "X-ClickHouse-Key: $CH_KEY" --data-binary @- "http://ch.test:8123/?query=INSERT%20INTO%20rows%20FORMAT%20TSV"`)
	ins.Env = append(ins.Env, "CH_REAL_PASSWORD="+chtest.Password)
	if r := e.exec(ins); !strings.Contains(r.stdout, "status=200") {
		t.Fatalf("the 50 MB insert:\n%v", r)
	}
	after, err := srv.Query("SELECT count() FROM rows")
	if err != nil || after == before || after != fmt.Sprint(atoi(before)+500000) {
		t.Fatalf("rows before %s, after %s (%v): want 500000 more", before, after, err)
	}
	for _, a := range e.actions() {
		if sq, ok := a["input"].(map[string]any)["sql"].(map[string]any); ok && strings.HasPrefix(fmt.Sprint(sq["statement"]), "INSERT") {
			if len(fmt.Sprint(sq["statement"])) > 200 {
				t.Fatalf("the policy saw the rows, not just the statement: %d bytes", len(fmt.Sprint(sq["statement"])))
			}
		}
	}
	audit, _ := os.ReadFile(e.auditPath())
	if strings.Contains(string(audit), chtest.Password) || strings.Contains(r.stdout, chtest.Password) {
		t.Fatal("the real password leaked")
	}
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}
