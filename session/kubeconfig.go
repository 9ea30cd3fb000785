package session

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/run"
)

// The agent's kubeconfig: one cluster, user and context per kubernetes
// endpoint, named after it, so kubectl and client libraries inside the
// agent reach the API servers through clawpatrol with a placeholder token
// and trust clawpatrol's CA. The real credential is applied upstream
// after an allow; the agent never holds it.

// kubeConfig is the part of client-go's Config file format written here.
type kubeConfig struct {
	APIVersion     string        `yaml:"apiVersion"`
	Kind           string        `yaml:"kind"`
	Clusters       []kubeCluster `yaml:"clusters"`
	Users          []kubeUser    `yaml:"users"`
	Contexts       []kubeContext `yaml:"contexts"`
	CurrentContext string        `yaml:"current-context"`
}

type kubeCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server               string `yaml:"server"`
		CertificateAuthority string `yaml:"certificate-authority"`
	} `yaml:"cluster"`
}

type kubeUser struct {
	Name string `yaml:"name"`
	User struct {
		Token string `yaml:"token,omitempty"`
	} `yaml:"user"`
}

type kubeContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster string `yaml:"cluster"`
		User    string `yaml:"user"`
	} `yaml:"context"`
}

// kubeconfig writes the agent's kubeconfig into its exposed directory and
// points KUBECONFIG at it, replacing the caller's; the current context is
// the first kubernetes endpoint by name. Without kubernetes endpoints it
// does nothing. Client keys of credentials are masked like secret files.
// It needs the CA bundle trustBundle wrote.
func kubeconfig(spec *run.Spec, cfg *config.Config, store *creds.Store, agentDir string) error {
	for _, name := range store.Names() {
		if c, ok := store.Get(name); ok && c.Config.ClientKey != "" {
			spec.Masks = append(spec.Masks, c.Config.ClientKey)
		}
	}
	kc := kubeConfigFor(cfg, store, filepath.Join(agentDir, bundleName))
	if kc == nil {
		return nil
	}
	data, err := yaml.Marshal(kc)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	path := filepath.Join(agentDir, "kubeconfig")
	data = append([]byte("# written by clawpatrol: the token is a placeholder, the real credential is applied upstream\n"), data...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	env := spec.Env[:0]
	for _, kv := range spec.Env {
		if !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	spec.Env = append(env, "KUBECONFIG="+path)
	return nil
}

// kubeConfigFor builds the kubeconfig, or nil when no kubernetes endpoint
// has a host a client can be pointed at.
func kubeConfigFor(cfg *config.Config, store *creds.Store, caBundle string) *kubeConfig {
	kc := &kubeConfig{APIVersion: "v1", Kind: "Config"}
	for _, name := range cfg.EndpointNames() {
		e := cfg.Endpoints[name]
		if e.Protocol != "kubernetes" {
			continue
		}
		server := serverURL(e)
		if server == "" {
			continue // only wildcards and CIDRs: no one address to name
		}
		var cl kubeCluster
		cl.Name = name
		cl.Cluster.Server = server
		cl.Cluster.CertificateAuthority = caBundle
		var u kubeUser
		u.Name = name
		if c, ok := store.Get(e.Credential); ok && e.Credential != "" {
			u.User.Token = c.Placeholder
		}
		var cx kubeContext
		cx.Name = name
		cx.Context.Cluster, cx.Context.User = name, name
		kc.Clusters = append(kc.Clusters, cl)
		kc.Users = append(kc.Users, u)
		kc.Contexts = append(kc.Contexts, cx)
	}
	if len(kc.Contexts) == 0 {
		return nil
	}
	kc.CurrentContext = kc.Contexts[0].Name
	return kc
}

// serverURL is https://HOST[:PORT] for an endpoint's first host that names
// one server (a name or an IP literal: the agent resolves the name through
// clawpatrol's DNS, and an IP is matched by destination) and its first
// port, left out when it is 443.
func serverURL(e *config.Endpoint) string {
	for _, h := range e.Hosts {
		if strings.Contains(h, "*") || strings.Contains(h, "/") {
			continue
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			h = ip.String()
		}
		if len(e.Ports) == 0 || e.Ports[0] == 443 {
			if strings.Contains(h, ":") {
				return "https://[" + h + "]"
			}
			return "https://" + h
		}
		return "https://" + net.JoinHostPort(h, strconv.Itoa(e.Ports[0]))
	}
	return ""
}
