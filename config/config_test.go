package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsCarryFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{"policy:\n  default: deny\n  defualt: allow\n", "c.yaml:3: field defualt is not a known key in"},
		{"endpoints:\n  x:\n    hosts: [a]\n    protocol: https\n    colour: red\n", "c.yaml:5: field colour is not a known key in"},
		{"limits:\n  body: lots\n", `c.yaml:2: bad size "lots"`},
		{"approval:\n  timeout: soon\n", `c.yaml:2: bad duration "soon"`},
		{"policy:\n  default: maybe\n", `policy.default: "maybe" is not deny or allow`},
		{"endpoints:\n  x:\n    hosts: [a]\n    protocol: gopher\n", `endpoints.x.protocol: "gopher"`},
		{"endpoints:\n  x:\n    hosts: [a]\n    protocol: tcp\n", "protocol tcp has no usual port"},
		{"endpoints:\n  x:\n    hosts: [a.*.com]\n    protocol: https\n", "only a leading *. wildcard"},
		{"endpoints:\n  x:\n    hosts: [a]\n    protocol: https\n    credential: nope\n", `no credential named "nope"`},
		{"endpoints:\n  x:\n    hosts: [a]\n    protocol: https\n    upstream: nohost\n", "is not host:port"},
		{"credentials:\n  c:\n    from: {env: A, file: /b}\n", "exactly one of env, file, command"},
		{"approval:\n  default: [ghost]\n", `no approver named "ghost"`},
		{"audit:\n  bodies: all\n", `audit.bodies: "all"`},
	} {
		_, err := Parse("c.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want error containing %q, got %v", tc.yaml, tc.want, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("/etc/cp/c.yaml", []byte("endpoints:\n  gh:\n    hosts: [api.github.com]\n    protocol: https\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Default != "deny" || c.Limits.Body != 1<<20 || time.Duration(c.Approval.Timeout) != 5*time.Minute || c.Audit.Bodies != "redacted" {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.Endpoints["gh"].Ports; len(got) != 1 || got[0] != 443 {
		t.Fatalf("https default port: %v", got)
	}
	empty, err := Parse("e.yaml", nil)
	if err != nil || empty.Policy.Default != "deny" {
		t.Fatalf("an empty file is the defaults: %v %v", empty, err)
	}
}

func TestSizesAndRelativePaths(t *testing.T) {
	c, err := Parse("/srv/cp/c.yaml", []byte("limits: {body: 64KiB}\npolicy: {paths: [policy/, /abs.rego]}\naudit: {path: a.jsonl}\nmask: [sock]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.Body != 64<<10 {
		t.Fatalf("body %d", c.Limits.Body)
	}
	if c.Policy.Paths[0] != "/srv/cp/policy" || c.Policy.Paths[1] != "/abs.rego" || c.Audit.Path != "/srv/cp/a.jsonl" || c.Mask[0] != "/srv/cp/sock" {
		t.Fatalf("paths not relative to the config file: %v %v %v", c.Policy.Paths, c.Audit.Path, c.Mask)
	}
}

func TestMatch(t *testing.T) {
	c, err := Parse("c.yaml", []byte(`
endpoints:
  exact:   {hosts: [api.example.com], protocol: https}
  wild:    {hosts: ["*.example.com"], protocol: https}
  ip:      {hosts: [10.1.2.3], ports: [5432], protocol: postgres}
  cidr:    {hosts: [10.1.0.0/16], ports: [5432], protocol: postgres}
  v6:      {hosts: ["2001:db8::/32"], ports: [22], protocol: tcp}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, ip string
		port     int
		want     string
	}{
		{"api.example.com", "", 443, "exact"},
		{"API.Example.com.", "", 443, "exact"},
		{"www.example.com", "", 443, "wild"},
		{"example.com", "", 443, ""},
		{"api.example.com", "", 80, ""},
		{"", "10.1.2.3", 5432, "ip"},
		{"", "10.1.9.9", 5432, "cidr"},
		{"", "10.2.0.1", 5432, ""},
		{"", "2001:db8::1", 22, "v6"},
	} {
		var ip netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip)
		}
		got := ""
		if e := c.Match(tc.host, ip, tc.port); e != nil {
			got = e.Name
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q, %d) = %q, want %q", tc.host, tc.ip, tc.port, got, tc.want)
		}
	}
	if !(&Config{Passthrough: []string{"*.pinned.example"}}).IsPassthrough("a.pinned.example") {
		t.Error("passthrough wildcard")
	}
}
