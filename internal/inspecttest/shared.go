package inspecttest

import (
	"sync"
	"testing"
)

// Shared is a test server started once per test binary, on first use, and
// stopped by Stop (from TestMain).
type Shared[S interface{ Stop() }] struct {
	once  sync.Once
	s     S
	err   error
	start bool
}

// Get returns the server, starting it with start the first time; a failure
// fails the test with the error and hint (what to install).
func (sh *Shared[S]) Get(t testing.TB, start func() (S, error), hint string) S {
	t.Helper()
	sh.once.Do(func() {
		sh.s, sh.err = start()
		sh.start = true
	})
	if sh.err != nil {
		t.Fatalf("test server: %v (%s)", sh.err, hint)
	}
	return sh.s
}

// Stop stops the server if it was started.
func (sh *Shared[S]) Stop() {
	if sh.start && sh.err == nil {
		sh.s.Stop()
	}
}
