package run

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLookPathExitCodes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "plain"), []byte("#!/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "runnable"), []byte("#!/bin/sh\n"), 0o755)
	env := []string{"PATH=" + dir}
	for _, tc := range []struct {
		cmd  string
		code int
	}{
		{"runnable", 0},
		{filepath.Join(dir, "runnable"), 0},
		{"nowhere-to-be-found", 127},
		{filepath.Join(dir, "missing"), 127},
		{filepath.Join(dir, "plain"), 126},
	} {
		_, code, err := lookPath(tc.cmd, env)
		if code != tc.code || (code == 0) != (err == nil) {
			t.Errorf("%s: code %d err %v, want %d", tc.cmd, code, err, tc.code)
		}
	}
}

func TestHints(t *testing.T) {
	tun := Hints(&SetupError{Msg: "open /dev/net/tun: permission denied"})
	if len(tun) == 0 || !strings.Contains(strings.Join(tun, "\n"), "chmod 0666 /dev/net/tun") {
		t.Errorf("tun hints: %v", tun)
	}
	ns := Hints(&NamespaceError{Err: unix.EPERM})
	if len(ns) == 0 || !strings.Contains(ns[0], "clawpatrol doctor") {
		t.Errorf("namespace hints: %v", ns)
	}
	if h := Hints(errors.New("something else")); len(h) != 0 {
		t.Errorf("unrelated error got hints: %v", h)
	}
}

func TestStatusExitCode(t *testing.T) {
	if (Status{Code: 3}).ExitCode() != 3 || (Status{Signal: unix.SIGINT}).ExitCode() != 130 {
		t.Fatal("exit codes")
	}
}
