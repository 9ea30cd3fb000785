package session

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/netstack"
	"github.com/clawpatrol/clawpatrol/run"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

// resolverSockets are host resolver daemons reached over unix sockets:
// left visible, they would resolve names (and leak them) past our DNS.
var resolverSockets = []string{
	"/run/systemd/resolve/io.systemd.Resolve",
	"/run/systemd/resolve/io.systemd.Resolve.Monitor",
	"/var/run/nscd/socket",
	"/run/nscd/socket",
}

// agentSpec builds what the helper sets up: the command, the generated
// resolver files and the paths hidden from the agent.
func agentSpec(o Options, store *creds.Store, ca *tlsca.CA, dir, cwd, auditPath string) (*run.Spec, error) {
	files := map[string][]byte{
		"resolv.conf":   resolvConf(),
		"nsswitch.conf": nsswitchConf(readOr("/etc/nsswitch.conf", nil)),
		"hosts":         hostsFile(),
	}
	env, removed := store.AgentEnv(os.Environ(), o.Config.Env.Keep)
	if len(removed) > 0 {
		// Before the agent starts: nothing may interleave with its output.
		fmt.Fprintf(os.Stderr, "clawpatrol: removed from the agent's environment: %s\n", strings.Join(removed, " "))
	}
	spec := &run.Spec{
		Command: o.Command,
		Env:     env,
		Dir:     cwd,
		TUN:     "tun0",
		MTU:     netstack.MTU,
		IP4:     netstack.GuestIP4,
		IP6:     netstack.GuestIP6,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		spec.Binds = append(spec.Binds, run.Bind{Source: p, Target: "/etc/" + name, Optional: name != "resolv.conf"})
	}
	if err := trustBundle(spec, ca, filepath.Join(dir, "agent")); err != nil {
		return nil, err
	}
	if err := kubeconfig(spec, o.Config, store, filepath.Join(dir, "agent")); err != nil {
		return nil, err
	}
	spec.Masks = append(spec.Masks, StatePaths(o.Config, auditPath)...)
	spec.Masks = append(spec.Masks, resolverSockets...)
	spec.Masks = append(spec.Masks, o.Config.Mask...)
	spec.Masks = append(spec.Masks, store.FileSources()...)
	return spec, nil
}

// StatePaths are clawpatrol's own files the agent must not touch: the state,
// data and runtime directories, the audit log, and the config and policy.
func StatePaths(cfg *config.Config, auditPath string) []string {
	paths := []string{
		filepath.Join(config.XDGDir("XDG_STATE_HOME", ".local/state"), "clawpatrol"),
		filepath.Join(config.XDGDir("XDG_DATA_HOME", ".local/share"), "clawpatrol"),
		approve.RuntimeDir(),
		auditPath,
	}
	return paths
}

func resolvConf() []byte {
	return fmt.Appendf(nil, "# written by clawpatrol: names are answered by clawpatrol's resolver\nnameserver %s\nnameserver %s\noptions edns0\n",
		netstack.DNSIP4, netstack.DNSIP6)
}

// nsswitchConf keeps the host's file but resolves hosts through files and
// DNS only: systemd-resolved, mdns or nis modules would bypass our resolver.
func nsswitchConf(host []byte) []byte {
	var out bytes.Buffer
	out.WriteString("# written by clawpatrol\n")
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "hosts:" || f[0] == "networks:") {
			continue
		}
		out.WriteString(line + "\n")
	}
	out.WriteString("hosts: files dns\nnetworks: files\n")
	return out.Bytes()
}

// hostsFile names only the local host: entries of the host's own file would
// map names past our resolver.
func hostsFile() []byte {
	name, _ := os.Hostname()
	return fmt.Appendf(nil, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", name)
}

func readOr(path string, def []byte) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	return b
}

// caVariables point tools at a CA bundle (SPEC §6). SSL_CERT_DIR names a
// directory; every other one a file.
var caVariables = []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
	"GIT_SSL_CAINFO", "PIP_CERT", "AWS_CA_BUNDLE", "CARGO_HTTP_CAINFO", "DENO_CERT", "npm_config_cafile"}

// bundleName is the agent's CA bundle in its exposed directory.
const bundleName = "ca-bundle.pem"

// trustBundle writes the agent's CA bundle — the system roots, the roots the
// caller already trusted through the CA variables, and clawpatrol's CA —
// into the agent's directory, points the CA variables at it, and binds it
// over the distribution's bundle paths, so tools that ignore the variables
// trust it too. Only the agent's mount namespace sees any of this.
func trustBundle(spec *run.Spec, ca *tlsca.CA, agentDir string) error {
	// The caller's variables often all name the system bundle (or its
	// hashed directory) again: read each other path once, the system's not
	// at all — the bundle starts with the system roots anyway.
	var extra []string
	for _, v := range append(caVariables, "SSL_CERT_DIR") {
		p := filepath.Clean(os.Getenv(v))
		if p == "." || slices.Contains(extra, p) || slices.Contains(tlsca.SystemBundleFiles, p) || slices.Contains(tlsca.SystemCertDirs, p) {
			continue
		}
		extra = append(extra, p)
	}
	pem, err := ca.Bundle(extra...)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	bundle := filepath.Join(agentDir, bundleName)
	if err := os.WriteFile(bundle, pem, 0o644); err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	for _, f := range tlsca.SystemBundleFiles {
		spec.Binds = append(spec.Binds, run.Bind{Source: bundle, Target: f, Optional: true})
	}
	spec.Expose = append(spec.Expose, agentDir)
	env := spec.Env[:0]
	for _, kv := range spec.Env {
		name, _, _ := strings.Cut(kv, "=")
		if name != "SSL_CERT_DIR" && !slices.Contains(caVariables, name) {
			env = append(env, kv)
		}
	}
	for _, v := range caVariables {
		env = append(env, v+"="+bundle)
	}
	spec.Env = append(env, "SSL_CERT_DIR="+agentDir)
	return nil
}
