package session

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/run"
)

func TestKubeconfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "clawpatrol.yaml"), []byte(`
endpoints:
  prod:
    hosts: [k8s.prod.test, "*.prod.test"]
    ports: [6443]
    protocol: kubernetes
    credential: prod
  lab:
    hosts: [10.1.2.3]
    protocol: kubernetes
    credential: lab
  any:
    hosts: ["*.clusters.test", 10.9.0.0/16]
    protocol: kubernetes
  v6:
    hosts: ["fd00::1"]
    ports: [6443]
    protocol: kubernetes
  github:
    hosts: [api.github.com]
    protocol: https
credentials:
  prod:
    from: {env: PROD_TOKEN}
  lab:
    from: {env: LAB_TOKEN}
    client_cert: lab.crt
    client_key: lab.key
`))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PROD_TOKEN": "prod-secret-token-0123456789", "LAB_TOKEN": "lab-secret"}
	store, err := creds.Load(context.Background(), cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	spec := &run.Spec{Env: []string{"HOME=/home/x", "KUBECONFIG=/home/x/.kube/real", "PATH=/bin"}}
	if err := kubeconfig(spec, cfg, store, dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if !slices.Contains(spec.Env, "KUBECONFIG="+path) || slices.Contains(spec.Env, "KUBECONFIG=/home/x/.kube/real") {
		t.Errorf("env %v", spec.Env)
	}
	if !slices.Contains(spec.Masks, filepath.Join(dir, "lab.key")) {
		t.Errorf("the client key is not masked: %v", spec.Masks)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range env {
		if strings.Contains(string(data), secret) {
			t.Fatalf("kubeconfig holds a secret:\n%s", data)
		}
	}
	var kc kubeConfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		t.Fatal(err)
	}
	prod, _ := store.Get("prod")
	lab, _ := store.Get("lab")
	bundle := filepath.Join(dir, "ca-bundle.pem")
	// Sorted by name; "any" names no single server, github is no cluster.
	want := []struct{ name, server, token string }{
		{"lab", "https://10.1.2.3", lab.Placeholder},
		{"prod", "https://k8s.prod.test:6443", prod.Placeholder},
		{"v6", "https://[fd00::1]:6443", ""},
	}
	if len(kc.Clusters) != len(want) || len(kc.Users) != len(want) || len(kc.Contexts) != len(want) {
		t.Fatalf("kubeconfig:\n%s", data)
	}
	for i, w := range want {
		cl, u, cx := kc.Clusters[i], kc.Users[i], kc.Contexts[i]
		if cl.Name != w.name || cl.Cluster.Server != w.server || cl.Cluster.CertificateAuthority != bundle {
			t.Errorf("cluster %d: %+v", i, cl)
		}
		if u.Name != w.name || u.User.Token != w.token {
			t.Errorf("user %d: %+v", i, u)
		}
		if cx.Name != w.name || cx.Context.Cluster != w.name || cx.Context.User != w.name {
			t.Errorf("context %d: %+v", i, cx)
		}
	}
	if kc.CurrentContext != "lab" || kc.APIVersion != "v1" || kc.Kind != "Config" {
		t.Errorf("kubeconfig:\n%s", data)
	}
}

func TestNoKubeconfigWithoutClusters(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "c.yaml"), []byte("endpoints:\n  gh:\n    hosts: [api.github.com]\n    protocol: https\n"))
	if err != nil {
		t.Fatal(err)
	}
	store, _ := creds.Load(context.Background(), cfg, os.LookupEnv)
	spec := &run.Spec{Env: []string{"KUBECONFIG=/home/x/.kube/config"}}
	if err := kubeconfig(spec, cfg, store, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err == nil || !slices.Equal(spec.Env, []string{"KUBECONFIG=/home/x/.kube/config"}) {
		t.Errorf("a kubeconfig without clusters: env %v", spec.Env)
	}
}
