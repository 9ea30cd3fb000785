package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func approvalEnv(t *testing.T, addr, timeout string) *env {
	e := newEnv(t)
	e.config(fmt.Sprintf(`
endpoints:
  svc:
    hosts: [svc.test]
    ports: [80]
    protocol: http
    upstream: %s
approvers:
  me: {type: human}
approval:
  default: [me]
  timeout: %s
policy:
  paths: [policy.rego]
`, addr, timeout))
	e.write("policy.rego", `package clawpatrol

allow contains "reads" if input.http.method == "GET"

approve contains {"rule": "needs-ok", "reason": "a person looks at this first"} if input.http.path == "/held"
`)
	return e
}

// startAgent starts `clawpatrol run -- ARGS` and returns a function that
// waits for it.
func (e *env) startAgent(args ...string) func() result {
	e.t.Helper()
	cmd := e.command(append([]string{"run", "-c", e.cfg, "--audit", e.auditPath(), "--"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return func() result {
		err := cmd.Wait()
		r := result{stdout: out.String(), stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		return r
	}
}

// pending waits until `clawpatrol approve --json`, run by the user from
// outside, lists one pending approval, and returns it. The deadline only
// guards against a hang.
func (e *env) pending() map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := e.exec(e.command("approve", "--json"))
		var list []map[string]any
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &list) == nil && len(list) > 0 {
			return list[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatal("no pending approval appeared")
	return nil
}

func TestApprovalFromAnotherProcess(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "5m")
	wait := e.startAgent("curl", "-sS", "-m", "120", "http://svc.test/held")
	p := e.pending()
	if p["rule"] != "needs-ok" || !strings.Contains(fmt.Sprint(p["summary"]), "GET /held") {
		t.Fatalf("pending approval: %v", p)
	}
	if hits.Load() != 0 {
		t.Fatal("the upstream saw the request before the approval")
	}
	if r := e.exec(e.command("approve", p["id"].(string))); r.code != 0 {
		t.Fatalf("approve: %v", r)
	}
	if r := wait(); r.code != 0 || r.stdout != "hello from /held\n" {
		t.Fatalf("want the held request through after the approval:\n%v", r)
	}
	var approval map[string]any
	for _, a := range e.actions() {
		if d := a["decision"].(map[string]any); d["rule"] == "needs-ok" {
			approval, _ = d["approval"].(map[string]any)
			if d["verdict"] != "allow" {
				t.Fatalf("audit verdict: %v", d)
			}
		}
	}
	if approval == nil || approval["approver"] != "me" || approval["by"] == "" {
		t.Fatalf("want the approval outcome in the audit log, got %v", approval)
	}
}

func TestApprovalDenied(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "5m")
	wait := e.startAgent("curl", "-s", "-D", "-", "-m", "120", "http://svc.test/held")
	p := e.pending()
	if r := e.exec(e.command("approve", p["id"].(string), "--deny", "--reason", "not today")); r.code != 0 {
		t.Fatalf("approve --deny: %v", r)
	}
	r := wait()
	if !strings.Contains(r.stdout, "403") || !strings.Contains(r.stdout, "X-Clawpatrol-Rule: needs-ok") || hits.Load() != 0 {
		t.Fatalf("want a 403 and an untouched upstream:\n%v", r)
	}
}

func TestApprovalTimeoutDenies(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "1s")
	r := e.sh(`curl -s -o /dev/null -w "%{http_code}" -m 120 http://svc.test/held`)
	if r.stdout != "403" || hits.Load() != 0 {
		t.Fatalf("want a 403 after the timeout, upstream untouched:\n%v", r)
	}
}

func TestNonInteractiveDeniesAtOnce(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "5m")
	cmd := e.command("run", "--non-interactive", "-c", e.cfg, "--audit", e.auditPath(), "--",
		"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "120", "http://svc.test/held")
	if r := e.exec(cmd); r.stdout != "403" || hits.Load() != 0 {
		t.Fatalf("want an immediate 403:\n%v", r)
	}
}

// TestAgentCannotApproveItself: the approval socket lives in clawpatrol's
// runtime directory, which the agent's mount namespace masks.
func TestAgentCannotApproveItself(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "3s")
	script := fmt.Sprintf(`curl -s -o /dev/null -m 120 http://svc.test/held &
sleep 1
%[1]s approve --json; echo "list=$?"
ls /tmp/clawpatrol-%[2]d/ 2>&1 | grep -c sock; echo "sockets-seen"
wait`, bin, agentUID)
	r := e.sh(script)
	if strings.Contains(r.stdout, `"rule"`) || !strings.Contains(r.stdout, "0\nsockets-seen") || hits.Load() != 0 {
		t.Fatalf("the agent reached the approvals:\n%v", r)
	}
}
