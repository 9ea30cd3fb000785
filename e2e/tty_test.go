package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// term is a program running on a pseudo-terminal, read as a person would.
type term struct {
	t   *testing.T
	f   *os.File
	cmd *exec.Cmd
	out chan []byte
	buf bytes.Buffer
	all bytes.Buffer // everything seen, for failure messages
}

func startTerm(t *testing.T, cmd *exec.Cmd) *term {
	t.Helper()
	attr := cmd.SysProcAttr
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Setsid, attr.Setctty = true, true
	cmd.SysProcAttr = attr
	f, err := pty.StartWithAttrs(cmd, &pty.Winsize{Rows: 24, Cols: 80}, attr)
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, f: f, cmd: cmd, out: make(chan []byte, 64)}
	go func() {
		defer close(tm.out)
		for {
			b := make([]byte, 4096)
			n, err := f.Read(b)
			if n > 0 {
				tm.out <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); f.Close() })
	return tm
}

// expect reads until the screen output contains s. The deadline only
// guards against a hang; nothing here measures time.
func (tm *term) expect(s string) {
	tm.t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(tm.buf.String(), s) {
		select {
		case b, ok := <-tm.out:
			if !ok {
				tm.t.Fatalf("terminal closed before %q; saw:\n%q", s, tm.all.String())
			}
			tm.buf.Write(b)
			tm.all.Write(b)
		case <-deadline:
			tm.t.Fatalf("never saw %q; saw:\n%q", s, tm.all.String())
		}
	}
	// Consume through the match so the next expect looks at new output.
	rest := tm.buf.String()[strings.Index(tm.buf.String(), s)+len(s):]
	tm.buf.Reset()
	tm.buf.WriteString(rest)
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.f, s); err != nil {
		tm.t.Fatal(err)
	}
}

// output reads until the program closes the terminal and returns all it
// printed.
func (tm *term) output() string {
	tm.t.Helper()
	deadline := time.After(5 * time.Minute)
	for {
		select {
		case b, ok := <-tm.out:
			if !ok {
				return tm.all.String()
			}
			tm.all.Write(b)
		case <-deadline:
			tm.t.Fatalf("the program never ended; saw:\n%s", tm.all.String())
		}
	}
}

func (tm *term) wait() int {
	tm.t.Helper()
	go func() {
		for range tm.out {
		}
	}()
	err := tm.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		tm.t.Fatal(err)
	}
	return 0
}

func TestInteractiveProgramOnATerminal(t *testing.T) {
	e := newEnv(t)
	tm := startTerm(t, e.command("run", "--audit", e.auditPath(), "--", "python3", "-q", "-i", "-c", "import os; print('tty=%s' % os.isatty(0))"))
	tm.expect("tty=True")
	tm.expect(">>> ")
	tm.send("print(6*7)\r")
	tm.expect("42")
	tm.expect(">>> ")
	tm.send("import sys; sys.exit(5)\r")
	if code := tm.wait(); code != 5 {
		t.Fatalf("want exit 5, got %d", code)
	}
}

// TestTerminalSignals: a resize reaches the agent as SIGWINCH with the new
// size, and Ctrl-C as SIGINT, straight from the terminal.
func TestTerminalSignals(t *testing.T) {
	e := newEnv(t)
	e.write("winch.py", `import os, signal, sys
signal.signal(signal.SIGWINCH, lambda *a: os.write(1, b"winch %d\n" % os.get_terminal_size().columns))
signal.signal(signal.SIGINT, lambda *a: os.write(1, b"got SIGINT\n"))
print("ready", flush=True)
sys.stdin.readline()
`)
	tm := startTerm(t, e.command("run", "--audit", e.auditPath(), "--", "python3", "winch.py"))
	tm.expect("ready")
	if err := pty.Setsize(tm.f, &pty.Winsize{Rows: 40, Cols: 123}); err != nil {
		t.Fatal(err)
	}
	tm.expect("winch 123")
	tm.send("\x03")
	tm.expect("got SIGINT")
	tm.send("\r")
	if code := tm.wait(); code != 0 {
		t.Fatalf("want exit 0, got %d", code)
	}
}

func TestJobControl(t *testing.T) {
	e := newEnv(t)
	sh := e.command()
	sh.Path, sh.Args = "/bin/bash", []string{"bash", "--norc", "--noprofile", "-i"}
	sh.Env = append(sh.Env, "PS1=$ ")
	tm := startTerm(t, sh)
	tm.expect("$ ")
	tm.send(fmt.Sprintf("%s run --audit %s -- python3 -q -i\r", bin, e.auditPath()))
	tm.expect(">>> ")
	tm.send("\x1a") // Ctrl-Z
	tm.expect("Stopped")
	tm.expect("$ ")
	tm.send("fg\r")
	tm.send("print(7*6)\r")
	tm.expect("42")
	tm.send("exit()\r")
	tm.expect("$ ")
	tm.send("echo status=$?\r")
	tm.expect("status=0")
	tm.send("exit\r")
	tm.wait()
}

// TestNoKeystrokeInjection: TIOCSTI would push input into the caller's
// terminal for the caller's shell to run after the agent exits.
func TestNoKeystrokeInjection(t *testing.T) {
	e := newEnv(t)
	e.write("sti.py", `import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    print("injected")
except OSError as err:
    print("refused:", err.strerror)
`)
	tm := startTerm(t, e.command("run", "--audit", e.auditPath(), "--", "python3", "sti.py"))
	tm.expect("refused: Operation not permitted")
	if code := tm.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
