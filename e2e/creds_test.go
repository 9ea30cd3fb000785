package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentHoldsPlaceholdersOnly: the agent's environment has placeholders,
// the secrets are nowhere it can look, and a command source runs on the host.
func TestAgentHoldsPlaceholdersOnly(t *testing.T) {
	e := newEnv(t)
	const envSecret = "ghp_REALenvSECRETvalue0123456789abcdefgh"
	const fileSecret = "file-secret-0123456789-abcdef"
	const cmdSecret = "command-secret-0123456789-xyz"
	srcFile := e.write("token.txt", fileSecret+"\n")
	os.Chmod(srcFile, 0o600)
	e.config(`
credentials:
  gh:
    from: {env: GH_REAL_TOKEN}
    placeholder: {env: GITHUB_TOKEN, value: ghp_}
  filecred:
    from: {file: token.txt}
    placeholder: {env: FILE_TOKEN}
  cmdcred:
    from: {command: [sh, -c, "echo ` + cmdSecret + `"]}
    placeholder: {env: CMD_TOKEN}
`)
	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", "sh", "-c",
		`echo "GITHUB_TOKEN=$GITHUB_TOKEN"; echo "FILE_TOKEN=$FILE_TOKEN"; echo "CMD_TOKEN=$CMD_TOKEN"; env; tr '\0' '\n' </proc/self/environ; cat /proc/$PPID/environ; cat `+srcFile+`; echo "source=$(wc -c <`+srcFile+`)"`)
	cmd.Env = append(cmd.Env, "GH_REAL_TOKEN="+envSecret, "SOME_COPY="+envSecret, "OPENAI_API_KEY=sk-inherited")
	r := e.exec(cmd)
	for _, s := range []string{envSecret, fileSecret, cmdSecret, "sk-inherited"} {
		if strings.Contains(r.stdout, s) {
			t.Errorf("the agent saw %q:\n%v", s, r)
		}
	}
	for _, want := range []string{"GITHUB_TOKEN=ghp_", "FILE_TOKEN=", "CMD_TOKEN=", "source=0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in the agent's output:\n%v", want, r)
		}
	}
	if strings.Contains(r.stdout, "FILE_TOKEN=\n") || strings.Contains(r.stdout, "CMD_TOKEN=\n") {
		t.Errorf("a placeholder is empty:\n%v", r)
	}
	if !strings.Contains(r.stderr, "clawpatrol: removed from the agent's environment: GH_REAL_TOKEN OPENAI_API_KEY SOME_COPY") {
		t.Errorf("want one line naming what was removed:\n%v", r)
	}
	audit, _ := os.ReadFile(e.auditPath())
	for _, s := range []string{envSecret, fileSecret, cmdSecret} {
		if strings.Contains(string(audit), s) {
			t.Errorf("the audit log holds %q", s)
		}
	}
}

func TestMissingSecretStopsRun(t *testing.T) {
	e := newEnv(t)
	e.config("credentials:\n  gh:\n    from: {env: NOT_SET_ANYWHERE}\n")
	r := e.run("echo", "agent ran")
	if r.code != 125 || strings.Contains(r.stdout, "agent ran") || !strings.Contains(r.stderr, "credential gh: env NOT_SET_ANYWHERE") {
		t.Fatalf("want exit 125 naming the credential and source:\n%v", r)
	}
}

func TestMaskHidesPaths(t *testing.T) {
	e := newEnv(t)
	secretDir := filepath.Join(e.dir, "private")
	os.Mkdir(secretDir, 0o755)
	os.Chown(secretDir, agentUID, agentGID)
	e.write("private/key", "PRIVATE")
	e.write("sock", "not really a socket")
	e.config("mask: [private, sock]\n")
	r := e.sh(`ls -A private; cat sock; echo; echo x > private/new 2>/dev/null || echo readonly`)
	if strings.Contains(r.stdout, "key") || strings.Contains(r.stdout, "PRIVATE") || strings.Contains(r.stdout, "not really") || !strings.Contains(r.stdout, "readonly") {
		t.Fatalf("masked paths visible:\n%v", r)
	}
}
