// Package creds holds the secrets clawpatrol injects on the agent's behalf:
// it reads them from their sources on the host, hands the agent placeholders
// instead, scrubs the agent's environment, and redacts secrets and
// placeholders wherever they could leak.
package creds

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/clawpatrol/clawpatrol/config"
)

// commandTimeout bounds a `command` source (`pass show x`, `gh auth token`).
const commandTimeout = 30 * time.Second

// Credential is one secret and the placeholder that stands for it.
type Credential struct {
	Name        string
	Secret      string
	Placeholder string
	Config      config.Credential
}

// Store is every credential of a session.
type Store struct {
	byName map[string]*Credential
	names  []string // sorted
}

// SourceError is a credential that could not be read: a start-up error.
type SourceError struct {
	Name   string
	Source string
	Err    error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("credential %s: %s: %v", e.Name, e.Source, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// Load reads every credential's secret from its source and makes its
// placeholder. A missing or empty secret is an error naming the credential
// and the source. lookupEnv reads clawpatrol's own environment.
func Load(ctx context.Context, cfg *config.Config, lookupEnv func(string) (string, bool)) (*Store, error) {
	s := &Store{byName: map[string]*Credential{}}
	for name, c := range cfg.Credentials {
		secret, source, err := read(ctx, c.From, lookupEnv)
		if err == nil && strings.TrimSpace(secret) == "" {
			err = errors.New("the secret is empty")
		}
		if err != nil {
			return nil, &SourceError{Name: name, Source: source, Err: err}
		}
		ph, err := placeholder(c.Placeholder.Value, len(secret))
		if err != nil {
			return nil, err
		}
		s.byName[name] = &Credential{Name: name, Secret: secret, Placeholder: ph, Config: c}
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

func read(ctx context.Context, src config.Source, lookupEnv func(string) (string, bool)) (secret, source string, err error) {
	switch {
	case src.Env != "":
		source = "env " + src.Env
		v, ok := lookupEnv(src.Env)
		if !ok {
			return "", source, errors.New("the variable is not set")
		}
		return v, source, nil
	case src.File != "":
		source = "file " + src.File
		b, err := os.ReadFile(src.File)
		if err != nil {
			return "", source, err
		}
		return strings.TrimRight(string(b), "\r\n"), source, nil
	case len(src.Command) > 0:
		source = "command " + strings.Join(src.Command, " ")
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, src.Command[0], src.Command[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			return "", source, err
		}
		return strings.TrimRight(string(out), "\r\n"), source, nil
	}
	return "", "no source", errors.New("no source configured")
}

const placeholderAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// placeholder makes a random stand-in: the configured prefix, then random
// letters and digits, as long as the real secret (at least 24 random
// characters), so clients that check a token's shape accept it.
func placeholder(prefix string, secretLen int) (string, error) {
	n := max(secretLen-len(prefix), 24)
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("placeholder: %w", err)
	}
	for i := range b {
		b[i] = placeholderAlphabet[int(b[i])%len(placeholderAlphabet)]
	}
	return prefix + string(b), nil
}

// Get returns a credential by name.
func (s *Store) Get(name string) (*Credential, bool) {
	c, ok := s.byName[name]
	return c, ok
}

// Names returns the credential names, sorted.
func (s *Store) Names() []string { return s.names }

// Secrets returns every secret and placeholder, for redaction elsewhere.
func (s *Store) Secrets() []string {
	var out []string
	for _, n := range s.names {
		c := s.byName[n]
		out = append(out, c.Secret, c.Placeholder)
	}
	return out
}

// FileSources are the files secrets are read from: masked from the agent.
func (s *Store) FileSources() []string {
	var out []string
	for _, n := range s.names {
		if f := s.byName[n].Config.From.File; f != "" {
			out = append(out, f)
		}
	}
	return out
}

// FindPlaceholder returns the credential whose placeholder occurs in text.
func (s *Store) FindPlaceholder(text string) (*Credential, bool) {
	if s == nil {
		return nil, false
	}
	for _, n := range s.names {
		if c := s.byName[n]; strings.Contains(text, c.Placeholder) {
			return c, true
		}
	}
	return nil, false
}

// Redact replaces every secret and placeholder in text with <redacted:NAME>.
func (s *Store) Redact(text string) string {
	if s == nil {
		return text
	}
	for _, n := range s.names {
		c := s.byName[n]
		mark := "<redacted:" + n + ">"
		text = strings.ReplaceAll(text, c.Secret, mark)
		text = strings.ReplaceAll(text, c.Placeholder, mark)
	}
	return text
}
