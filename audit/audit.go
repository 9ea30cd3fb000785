// Package audit writes the JSONL audit log of SPEC §8: a session_start
// record, one record per action, and a session_end record. A record that
// cannot be written makes the log unhealthy, and an unhealthy log stops the
// traffic: the gate denies every later action.
package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// Log is an append-only JSONL file. It is safe for concurrent use.
//
// It writes with encoding/json rather than through a zap logger: zap reports
// write errors to its own error output and carries on, and the audit log must
// know of every failed write to fail closed.
type Log struct {
	mu     sync.Mutex
	f      *os.File
	err    error // sticky: the first write error
	counts map[action.Verdict]int
	onErr  func(error)
}

// Open opens (creating it 0600, and its directory 0700) the log at path.
// onErr is called once, with the first write error.
func Open(path string, onErr func(error)) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Log{f: f, counts: map[action.Verdict]int{}, onErr: onErr}, nil
}

// Err returns the first write error, or nil while the log is healthy.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// SessionStart is the first record of a session.
type SessionStart struct {
	Event        string   `json:"event"`
	Time         string   `json:"time"`
	Session      string   `json:"session"`
	Version      string   `json:"version"`
	Config       string   `json:"config,omitempty"`
	ConfigDigest string   `json:"config_digest"`
	PolicyDigest string   `json:"policy_digest"`
	Command      []string `json:"command"`
	Monitor      bool     `json:"monitor,omitempty"`
}

// ActionRecord is one decided action.
type ActionRecord struct {
	Event          string             `json:"event"`
	ID             string             `json:"id"`
	Time           string             `json:"time"`
	Session        string             `json:"session"`
	Protocol       string             `json:"protocol"`
	Endpoint       string             `json:"endpoint,omitempty"`
	Destination    action.Destination `json:"destination"`
	Summary        string             `json:"summary"`
	Decision       action.Decision    `json:"decision"`
	Credential     string             `json:"credential,omitempty"`
	UpstreamStatus int                `json:"upstream_status,omitempty"`
	BytesUp        int64              `json:"bytes_up"`
	BytesDown      int64              `json:"bytes_down"`
	DurationMS     float64            `json:"duration_ms"`
	Error          string             `json:"error,omitempty"`
	Input          *action.Action     `json:"input"`
}

// SessionEnd is the last record of a session.
type SessionEnd struct {
	Event      string                 `json:"event"`
	Time       string                 `json:"time"`
	Session    string                 `json:"session"`
	ExitStatus int                    `json:"exit_status"`
	Counts     map[action.Verdict]int `json:"counts"`
}

// Start writes the session_start record.
func (l *Log) Start(r SessionStart) error {
	r.Event, r.Time = "session_start", Now()
	return l.write(r)
}

// Action writes one action record and counts its verdict.
func (l *Log) Action(r ActionRecord) error {
	r.Event = "action"
	l.mu.Lock()
	v := r.Decision.Verdict
	if r.Decision.Monitor {
		v = action.Allow // shadow mode: it went through
	}
	l.counts[v]++
	l.mu.Unlock()
	return l.write(r)
}

// End writes the session_end record with the counts by verdict.
func (l *Log) End(session string, exitStatus int) error {
	l.mu.Lock()
	counts := map[action.Verdict]int{action.Allow: 0, action.Deny: 0}
	for k, v := range l.counts {
		counts[k] = v
	}
	l.mu.Unlock()
	return l.write(SessionEnd{Event: "session_end", Time: Now(), Session: session, ExitStatus: exitStatus, Counts: counts})
}

func (l *Log) write(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<redacted:x>" stays readable
	if err := enc.Encode(v); err != nil {
		return l.fail(fmt.Errorf("audit log: encode: %w", err))
	}
	b := buf.Bytes()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if _, err := l.f.Write(b); err != nil {
		l.err = fmt.Errorf("audit log: %w", err)
		if l.onErr != nil {
			l.onErr(l.err)
		}
		return l.err
	}
	return nil
}

func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		if l.onErr != nil {
			l.onErr(err)
		}
	}
	return err
}

// Now formats the current time as the log does.
func Now() string { return time.Now().UTC().Format(time.RFC3339Nano) }
