package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/clawpatrol/clawpatrol/fixtures"
	"github.com/clawpatrol/clawpatrol/rego"
)

// TestMain makes the test binary double as the clawpatrol command, so the
// scripts in testdata/script run the real CLI as a subprocess.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"clawpatrol": main})
}

// TestScript runs the CLI transcripts in testdata/script. $EXAMPLES is the
// policy library in examples/.
func TestScript(t *testing.T) {
	examples, err := filepath.Abs("examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("EXAMPLES", examples)
			return nil
		},
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"exits":  cmdExits,
			"record": cmdRecord,
		},
	})
}

// cmdExits runs a command and checks its exact exit status:
// exits N COMMAND [ARGS...]. stdout and stderr are kept for the next lines.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits STATUS COMMAND [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// cmdRecord stands in for `run --record`: record POLICY DIR ACTIONS.jsonl
// decides each action (one JSON object a line) with the policy and records
// it with the decision it got, through the same API the run command uses.
func cmdRecord(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: record POLICY DIR ACTIONS.jsonl [SECRET...]")
	}
	eng, err := rego.Load([]string{ts.MkAbs(args[0])}, nil)
	ts.Check(err)
	rec, err := fixtures.NewRecorder(ts.MkAbs(args[1]), args[3:]...)
	ts.Check(err)
	f, err := os.Open(ts.MkAbs(args[2]))
	ts.Check(err)
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		a, err := fixtures.ParseAction(lines.Bytes())
		ts.Check(err)
		_, err = rec.Record(a, eng.Decide(context.Background(), a))
		ts.Check(err)
	}
	ts.Check(lines.Err())
}
