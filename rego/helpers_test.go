package rego

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// writePolicy writes files (name → text) into a new directory and returns it.
func writePolicy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
