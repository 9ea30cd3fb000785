package inspect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// testRouter is a router with the endpoints and credentials of a config,
// enough for the per-flow options.
func testRouter(t *testing.T, yaml string, secrets map[string]string) *Router {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "clawpatrol.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	store, err := creds.Load(context.Background(), cfg, func(k string) (string, bool) { v, ok := secrets[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return &Router{cfg: cfg, creds: store, roots: map[string]*x509.CertPool{}}
}

func kubernetesTarget(r *Router, name string) upstream.Target {
	return upstream.Target{Host: "k8s.test", Port: 6443, Endpoint: r.cfg.Endpoints[name]}
}

func TestKubernetesOptionsBearer(t *testing.T) {
	r := testRouter(t, `
endpoints:
  cluster: {hosts: [k8s.test], ports: [6443], protocol: kubernetes, credential: cluster}
  gh: {hosts: [api.github.com], protocol: https, credential: gh}
credentials:
  cluster: {from: {env: K8S_TOKEN}}
  gh: {from: {env: GH_TOKEN}}
`, map[string]string{"K8S_TOKEN": "real-k8s-token-0123456789", "GH_TOKEN": "ghp_real0123456789"})
	o := r.httpOptions(kubernetesTarget(r, "cluster"))
	if o.Describe == nil || o.Refuse == nil || o.ClientCert != nil {
		t.Fatalf("options %+v", o)
	}
	cluster, _ := r.creds.Get("cluster")
	gh, _ := r.creds.Get("gh")
	newAction := func(authorization string) *action.Action {
		return &action.Action{Protocol: action.ProtoHTTP, Endpoint: "cluster", Credential: "cluster",
			Destination: action.Destination{Host: "k8s.test", Port: 6443, TLS: true},
			HTTP: &action.HTTP{Method: "GET", Scheme: "https", Host: "k8s.test", Path: "/api/v1/namespaces/default/pods",
				Headers: map[string][]string{"authorization": {authorization}}}}
	}

	// An API request becomes a k8s action; its token goes in upstream.
	a := newAction("Bearer " + cluster.Placeholder)
	if d := o.Describe(a, nil); d != nil || a.K8s == nil || a.K8s.Verb != "list" || a.HTTP != nil {
		t.Fatalf("describe: %+v %+v", d, a)
	}
	req := httptest.NewRequest("GET", "https://k8s.test:6443/api/v1/namespaces/default/pods", nil)
	req.Header.Set("Authorization", "Bearer "+cluster.Placeholder)
	if err := o.Inject(a, req); err != nil || req.Header.Get("Authorization") != "Bearer real-k8s-token-0123456789" {
		t.Fatalf("inject: %v %q", err, req.Header.Get("Authorization"))
	}
	// Never over cleartext.
	a.Destination.TLS = false
	if err := o.Inject(a, req); err == nil {
		t.Error("the token went out over cleartext")
	}

	// Another credential's placeholder is a leak, though the k8s action
	// has no http block for the gate to look into.
	a = newAction("Bearer " + gh.Placeholder)
	if d := o.Describe(a, nil); d == nil || d.Rule != "placeholder-leak" {
		t.Fatalf("leak: %+v", d)
	}

	// Refusals are Status objects.
	w := httptest.NewRecorder()
	o.Refuse(w, a, 403, action.Denied("some-rule", "a reason"))
	if w.Code != 403 || !strings.Contains(w.Body.String(), `"kind":"Status"`) {
		t.Errorf("refusal %d %s", w.Code, w.Body)
	}

	// Endpoints of other protocols keep the plain HTTP options.
	if o := r.httpOptions(upstream.Target{Host: "api.github.com", Port: 443, Endpoint: r.cfg.Endpoints["gh"]}); o.Describe != nil || o.Refuse != nil {
		t.Error("an https endpoint got the Kubernetes hooks")
	}
}

func TestKubernetesOptionsClientCertificate(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testClientCert(t)
	os.WriteFile(filepath.Join(dir, "c.crt"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "c.key"), keyPEM, 0o600)
	for _, tc := range []struct{ name, cred string }{
		{"key from client_key", "{from: {env: UNUSED}, client_cert: c.crt, client_key: c.key}"},
		{"key as the secret", "{from: {file: c.key}, client_cert: c.crt}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouter(t, `
endpoints:
  lab: {hosts: [10.0.0.1], ports: [6443], protocol: kubernetes, credential: lab}
credentials:
  lab: `+strings.ReplaceAll(tc.cred, "c.", dir+"/c."), map[string]string{"UNUSED": "x"})
			o := r.httpOptions(kubernetesTarget(r, "lab"))
			if o.ClientCert == nil {
				t.Fatal("no client certificate")
			}
			lab, _ := r.creds.Get("lab")
			a := &action.Action{Protocol: action.ProtoK8s, Credential: "lab", Destination: action.Destination{TLS: true}, K8s: &action.K8s{Verb: "list"}}
			req := httptest.NewRequest("GET", "https://10.0.0.1:6443/api/v1/pods", nil)
			req.Header.Set("Authorization", "Bearer "+lab.Placeholder)
			if err := o.Inject(a, req); err != nil || req.Header.Get("Authorization") != "" {
				t.Errorf("inject: %v, Authorization %q", err, req.Header.Get("Authorization"))
			}
		})
	}

	// A certificate that does not load refuses every request, by rule.
	r := testRouter(t, `
endpoints:
  lab: {hosts: [10.0.0.1], ports: [6443], protocol: kubernetes, credential: lab}
credentials:
  lab: {from: {env: K}, client_cert: `+dir+`/missing.crt}
`, map[string]string{"K": "x"})
	o := r.httpOptions(kubernetesTarget(r, "lab"))
	a := &action.Action{HTTP: &action.HTTP{Method: "GET", Path: "/api"}}
	if d := o.Describe(a, nil); d == nil || d.Rule != "credential" || !strings.Contains(d.Reason(), "missing.crt") {
		t.Errorf("missing certificate: %+v", d)
	}
}

func TestConnectRefusals(t *testing.T) {
	rs := &refusals{ttl: time.Minute, m: map[string]refusal{}}
	exec := func(cmd string) *action.Action {
		return &action.Action{Protocol: action.ProtoK8s, Endpoint: "cluster", K8s: &action.K8s{Verb: "connect", Resource: "pods",
			Subresource: "exec", Namespace: "default", Name: "web-0", Command: []string{cmd}}}
	}
	denied := action.Denied("k8s-exec", "approval denied")
	denied.Approval = &action.Approval{ID: "a1", Outcome: action.Deny}
	rs.remember(exec("id"), denied)
	d := rs.recall(exec("id"))
	if d == nil || d.Rule != "k8s-exec" || d.Approval != nil || !strings.HasPrefix(d.Reason(), "approval denied (the same request was refused") {
		t.Fatalf("recall: %+v", d)
	}
	if denied.Reasons[0].Reason != "approval denied" {
		t.Error("recall changed the remembered decision")
	}
	if rs.recall(exec("ls")) != nil || newRefusals().recall(exec("id")) != nil {
		t.Error("another command, or another router's table, recalled the refusal")
	}
	get := &action.Action{Protocol: action.ProtoK8s, K8s: &action.K8s{Verb: "get", Resource: "pods"}}
	rs.remember(get, denied)
	if rs.recall(get) != nil {
		t.Error("a get was remembered")
	}
	rs.remember(exec("sh"), action.Decision{Verdict: action.Allow, Rule: "ok"})
	if rs.recall(exec("sh")) != nil {
		t.Error("an allow was remembered")
	}
	expired := &refusals{ttl: -time.Second, m: map[string]refusal{}}
	expired.remember(exec("id"), denied)
	if expired.recall(exec("id")) != nil {
		t.Error("an expired refusal was recalled")
	}
}

func testClientCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
