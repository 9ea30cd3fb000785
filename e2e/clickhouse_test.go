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

allow contains "reads" if {
	input.endpoint == "ch"
	every v in input.sql.verbs { v == "select" }
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
	audit, _ := os.ReadFile(e.auditPath())
	if strings.Contains(string(audit), chtest.Password) || strings.Contains(r.stdout, chtest.Password) {
		t.Fatal("the real password leaked")
	}
}
