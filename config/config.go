// Package config owns the YAML schema of SPEC §3: loading with file:line
// errors for unknown keys and bad values, defaults, validation, and matching
// a destination to an endpoint.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole config file.
type Config struct {
	Policy      Policy                `yaml:"policy"`
	Endpoints   map[string]*Endpoint  `yaml:"endpoints"`
	Passthrough []string              `yaml:"passthrough"`
	Credentials map[string]Credential `yaml:"credentials"`
	Approvers   map[string]Approver   `yaml:"approvers"`
	Approval    Approval              `yaml:"approval"`
	Dashboard   Dashboard             `yaml:"dashboard"`
	Audit       Audit                 `yaml:"audit"`
	Limits      Limits                `yaml:"limits"`
	Env         Env                   `yaml:"env"`
	Mask        []string              `yaml:"mask"`

	// File is the path the config was read from ("" for built-in defaults).
	File string `yaml:"-"`
	// Digest is the sha256 of the file's bytes, for the audit log.
	Digest string `yaml:"-"`
}

// Policy says where the Rego lives and what happens when no rule fires.
type Policy struct {
	Paths   []string `yaml:"paths"`
	Default string   `yaml:"default"`
}

// Endpoint is a named destination the agent may reach.
type Endpoint struct {
	Hosts       []string `yaml:"hosts"`
	Ports       []int    `yaml:"ports"`
	Protocol    string   `yaml:"protocol"`
	Upstream    string   `yaml:"upstream"`
	UpstreamCA  string   `yaml:"upstream_ca"`
	UpstreamTLS string   `yaml:"upstream_tls"`
	Credential  string   `yaml:"credential"`

	// Name is the endpoint's key in the endpoints map.
	Name string `yaml:"-"`
}

// Credential is a secret clawpatrol holds on the agent's behalf.
type Credential struct {
	From        Source         `yaml:"from"`
	Inject      map[string]any `yaml:"inject"`
	Placeholder Placeholder    `yaml:"placeholder"`
	Username    string         `yaml:"username"`
	ClientCert  string         `yaml:"client_cert"`
	ClientKey   string         `yaml:"client_key"`
}

// Source says where a secret is read from: exactly one field is set.
type Source struct {
	Env     string   `yaml:"env"`
	File    string   `yaml:"file"`
	Command []string `yaml:"command"`
}

// Placeholder says how the agent sees a credential.
type Placeholder struct {
	Env   string `yaml:"env"`
	Value string `yaml:"value"`
	File  string `yaml:"file"`
}

// Approver is one entry of approvers.
type Approver struct {
	Type          string   `yaml:"type"`
	API           string   `yaml:"api"`
	URL           string   `yaml:"url"`
	Model         string   `yaml:"model"`
	Credential    string   `yaml:"credential"`
	AppCredential string   `yaml:"app_credential"`
	Instructions  string   `yaml:"instructions"`
	Timeout       Duration `yaml:"timeout"`
	Channel       string   `yaml:"channel"`
	AllowedUsers  []string `yaml:"allowed_users"`
}

// Approval holds the approval defaults.
type Approval struct {
	Default []string `yaml:"default"`
	Timeout Duration `yaml:"timeout"`
	// Reuse lets an identical action approved within this window reuse
	// that approval; 0 (the default) asks every time.
	Reuse Duration `yaml:"reuse"`
}

// Dashboard configures the local web UI.
type Dashboard struct {
	Listen string `yaml:"listen"`
}

// Audit configures the JSONL audit log.
type Audit struct {
	Path   string `yaml:"path"`
	Bodies string `yaml:"bodies"`
}

// Limits bounds what the policy sees.
type Limits struct {
	Body Size `yaml:"body"`
}

// Env says which well-known secret variables the agent keeps.
type Env struct {
	Keep []string `yaml:"keep"`
}

// Duration is a time.Duration written as "30s" or "5m".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 30s, 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written as 1048576, "64KiB", "1MiB" or "1MB".
type Size int64

var sizeRe = regexp.MustCompile(`^(\d+)\s*(|b|kib|kb|mib|mb|gib|gb)$`)

// UnmarshalYAML parses a byte size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	m := sizeRe.FindStringSubmatch(strings.ToLower(strings.TrimSpace(n.Value)))
	if m == nil {
		return fmt.Errorf("line %d: bad size %q (want e.g. 65536, 64KiB, 1MiB)", n.Line, n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("line %d: bad size %q", n.Line, n.Value)
	}
	mult := map[string]int64{"": 1, "b": 1, "kib": 1 << 10, "kb": 1000, "mib": 1 << 20, "mb": 1000 * 1000, "gib": 1 << 30, "gb": 1000 * 1000 * 1000}[m[2]]
	*s = Size(v * mult)
	return nil
}

// Protocols an endpoint may speak, with their usual ports.
var defaultPorts = map[string][]int{
	"https":      {443},
	"http":       {80},
	"postgres":   {5432},
	"mysql":      {3306},
	"clickhouse": {8123},
	"kubernetes": {443, 6443},
	"tcp":        nil, // no usual port: ports are required
}

// Default returns the built-in config: default-deny, no endpoints.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

// Find returns the config file to use when none was given on the command
// line: ./clawpatrol.yaml, else $XDG_CONFIG_HOME/clawpatrol/config.yaml, else "".
func Find() string {
	if _, err := os.Stat("clawpatrol.yaml"); err == nil {
		return "clawpatrol.yaml"
	}
	p := filepath.Join(XDGDir("XDG_CONFIG_HOME", ".config"), "clawpatrol", "config.yaml")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// XDGDir returns $env, or $HOME/fallback when it is unset.
func XDGDir(env, fallback string) string {
	if v := os.Getenv(env); v != "" && filepath.IsAbs(v) {
		return v
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, fallback)
}

// Load reads, decodes and validates a config file. Errors carry file:line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates config bytes; path names the file in errors
// and anchors relative paths.
func Parse(path string, data []byte) (*Config, error) {
	c := &Config{File: path, Digest: Digest(data)}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // empty file: defaults
		return nil, lineErrors(path, err)
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.resolvePaths()
	return c, nil
}

var lineRe = regexp.MustCompile(`line (\d+): `)

// lineErrors turns yaml's "line N: msg" errors into "FILE:N: msg" lines.
func lineErrors(path string, err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	for i, m := range msgs {
		m = strings.Replace(m, "not found in type", "is not a known key in", 1)
		if loc := lineRe.FindStringSubmatchIndex(m); loc != nil {
			m = fmt.Sprintf("%s:%s: %s", path, m[loc[2]:loc[3]], m[:loc[0]]+m[loc[1]:])
		} else {
			m = path + ": " + m
		}
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func (c *Config) applyDefaults() {
	if c.Policy.Default == "" {
		c.Policy.Default = "deny"
	}
	if c.Audit.Bodies == "" {
		c.Audit.Bodies = "redacted"
	}
	if c.Limits.Body == 0 {
		c.Limits.Body = 1 << 20
	}
	if c.Approval.Timeout == 0 {
		c.Approval.Timeout = Duration(5 * time.Minute)
	}
	for name, e := range c.Endpoints {
		if e == nil {
			e = &Endpoint{}
			c.Endpoints[name] = e
		}
		e.Name = name
		if len(e.Ports) == 0 {
			e.Ports = defaultPorts[e.Protocol]
		}
	}
}

func (c *Config) validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	switch c.Policy.Default {
	case "deny", "allow":
	default:
		bad("policy.default: %q is not deny or allow", c.Policy.Default)
	}
	switch c.Audit.Bodies {
	case "redacted", "metadata", "full":
	default:
		bad("audit.bodies: %q is not redacted, metadata or full", c.Audit.Bodies)
	}
	for _, name := range sortedKeys(c.Endpoints) {
		e := c.Endpoints[name]
		if _, ok := defaultPorts[e.Protocol]; !ok {
			bad("endpoints.%s.protocol: %q is not one of https, http, postgres, mysql, clickhouse, kubernetes, tcp", name, e.Protocol)
		}
		if len(e.Hosts) == 0 {
			bad("endpoints.%s.hosts: at least one host is needed", name)
		}
		for _, h := range e.Hosts {
			if err := checkHostPattern(h); err != nil {
				bad("endpoints.%s.hosts: %v", name, err)
			}
		}
		if len(e.Ports) == 0 {
			bad("endpoints.%s.ports: protocol %s has no usual port, so ports must be given", name, e.Protocol)
		}
		for _, p := range e.Ports {
			if p < 1 || p > 65535 {
				bad("endpoints.%s.ports: %d is not a port", name, p)
			}
		}
		if e.Upstream != "" {
			if _, _, err := splitHostPort(e.Upstream); err != nil {
				bad("endpoints.%s.upstream: %q is not host:port", name, e.Upstream)
			}
		}
		switch e.UpstreamTLS {
		case "", "disable", "prefer", "require", "verify-full":
		default:
			bad("endpoints.%s.upstream_tls: %q is not disable, prefer, require or verify-full", name, e.UpstreamTLS)
		}
		if e.Credential != "" {
			if _, ok := c.Credentials[e.Credential]; !ok {
				bad("endpoints.%s.credential: no credential named %q", name, e.Credential)
			}
		}
	}
	for _, name := range sortedKeys(c.Credentials) {
		s := c.Credentials[name].From
		n := 0
		for _, set := range []bool{s.Env != "", s.File != "", len(s.Command) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad("credentials.%s.from: exactly one of env, file, command is needed", name)
		}
	}
	for _, name := range sortedKeys(c.Approvers) {
		switch c.Approvers[name].Type {
		case "llm", "slack", "webhook", "human":
		default:
			bad("approvers.%s.type: %q is not llm, slack, webhook or human", name, c.Approvers[name].Type)
		}
	}
	for _, a := range c.Approval.Default {
		if _, ok := c.Approvers[a]; !ok {
			bad("approval.default: no approver named %q", a)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// resolvePaths makes relative paths relative to the config file.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.File)
	abs := func(p string) string {
		if p == "" {
			return p
		}
		if strings.HasPrefix(p, "~/") {
			home, _ := os.UserHomeDir()
			return filepath.Join(home, p[2:])
		}
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i, p := range c.Policy.Paths {
		c.Policy.Paths[i] = abs(p)
	}
	c.Audit.Path = abs(c.Audit.Path)
	for _, e := range c.Endpoints {
		e.UpstreamCA = abs(e.UpstreamCA)
	}
	for name, cr := range c.Credentials {
		cr.From.File = abs(cr.From.File)
		cr.ClientCert = abs(cr.ClientCert)
		cr.ClientKey = abs(cr.ClientKey)
		c.Credentials[name] = cr
	}
	for i, p := range c.Mask {
		c.Mask[i] = abs(p)
	}
}

func checkHostPattern(h string) error {
	switch {
	case h == "":
		return errors.New("empty host")
	case strings.Contains(h, "/"):
		if _, err := netip.ParsePrefix(h); err != nil {
			return fmt.Errorf("%q is not a CIDR", h)
		}
	case strings.HasPrefix(h, "*."):
		if strings.Contains(h[2:], "*") {
			return fmt.Errorf("%q: only a leading *. wildcard is allowed", h)
		}
	case strings.Contains(h, "*"):
		return fmt.Errorf("%q: only a leading *. wildcard is allowed", h)
	}
	return nil
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, errors.New("no port")
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p < 1 || p > 65535 {
		return "", 0, errors.New("bad port")
	}
	return strings.Trim(s[:i], "[]"), p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
