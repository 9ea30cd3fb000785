package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

const svcPolicy = `package clawpatrol

allow contains "svc-port" if {
	input.endpoint == "svc"
	input.destination.port == 80
}

deny contains {"rule": "no-evil", "reason": "evil.test is off limits"} if {
	input.destination.host == "evil.test"
}
`

func policyEnv(t *testing.T, addr string) *env {
	e := newEnv(t)
	e.config(demoConfig(addr) + `  evil:
    hosts: [evil.test]
    ports: [80]
    protocol: tcp
    upstream: ` + addr + "\npolicy:\n  paths: [policy.rego]\n")
	e.write("policy.rego", svcPolicy)
	return e
}

func TestRegoPolicyDecidesRun(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := policyEnv(t, addr)
	r := e.sh(`curl -sS --connect-timeout 20 http://svc.test/ok; curl -s --connect-timeout 20 http://evil.test/; echo "evil=$?"`)
	if !strings.Contains(r.stdout, "hello from /ok") || !strings.Contains(r.stdout, "evil=7") {
		t.Fatalf("want svc allowed and evil refused:\n%v", r)
	}
	if hits.Load() != 1 {
		t.Fatalf("server saw %d requests, want 1", hits.Load())
	}
	rules := map[string]string{}
	for _, a := range e.actions() {
		d := a["decision"].(map[string]any)
		rules[a["endpoint"].(string)] = d["verdict"].(string) + " " + d["rule"].(string)
	}
	if rules["svc"] != "allow svc-port" || rules["evil"] != "deny no-evil" {
		t.Fatalf("decisions: %v", rules)
	}
	start := e.auditRecords()[0]
	if d, _ := start["policy_digest"].(string); !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("session_start carries no policy digest: %v", start)
	}
}

func TestPolicyThatDoesNotCompileStopsRun(t *testing.T) {
	e := newEnv(t)
	e.config("policy:\n  paths: [broken.rego]\n")
	e.write("broken.rego", "package clawpatrol\n\nallow contains \"x\" if {\n\tinput.endpoint ==\n}\n")
	r := e.run("echo", "agent ran")
	if r.code != 125 || strings.Contains(r.stdout, "agent ran") || !strings.Contains(r.stderr, "broken.rego:") {
		t.Fatalf("want exit 125 with file:line and no agent:\n%v", r)
	}
}

func TestMonitorForwardsWouldBeDenied(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := policyEnv(t, addr)
	cmd := e.command("run", "--monitor", "-c", e.cfg, "--audit", e.auditPath(), "--", "curl", "-sS", "--connect-timeout", "20", "http://evil.test/shadow")
	r := e.exec(cmd)
	if r.code != 0 || r.stdout != "hello from /shadow\n" || hits.Load() != 1 {
		t.Fatalf("monitor mode must forward:\n%v", r)
	}
	var found bool
	for _, a := range e.actions() {
		d := a["decision"].(map[string]any)
		if a["endpoint"] == "evil" && d["verdict"] == "deny" && d["rule"] == "no-evil" && d["monitor"] == true {
			found = true
		}
	}
	if !found {
		t.Fatalf("want the would-be deny logged as such: %v", e.actions())
	}
}

func TestRecordedSessionReplays(t *testing.T) {
	addr, _ := serveHTTP(t)
	e := policyEnv(t, addr)
	dir := filepath.Join(e.dir, "recorded")
	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--record", dir, "--",
		"sh", "-c", "curl -s http://svc.test/a; curl -s http://evil.test/b; curl -s http://nowhere.test/c; true")
	if r := e.exec(cmd); r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 3 {
		t.Fatalf("want 3 fixtures, got %v", files)
	}
	r := e.exec(e.command("test", "-c", e.cfg, dir))
	if r.code != 0 || !strings.Contains(r.stdout, "3 passed, 0 failed") {
		t.Fatalf("replay: %v", r)
	}
	// Flip one decision: exactly that fixture fails.
	e.write("policy.rego", strings.Replace(svcPolicy, "input.destination.port == 80", "input.destination.port == 81", 1))
	r = e.exec(e.command("test", "-c", e.cfg, dir))
	if r.code != 1 || strings.Count(r.stdout, "FAIL ") != 1 || !strings.Contains(r.stdout, "want:") || !strings.Contains(r.stdout, "got:") {
		t.Fatalf("want exactly one failing fixture:\n%v", r)
	}
}
