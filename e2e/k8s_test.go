package e2e

// The real kubectl inside `clawpatrol run`, against a fake Kubernetes API
// server this process starts: TLS from a test CA only clawpatrol trusts
// (upstream_ca), the real bearer token required, discovery, pods, secrets,
// deployments and exec over WebSocket (the v5.channel.k8s.io protocol).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/clawpatrol/clawpatrol/tlsca"
)

const k8sToken = "k8s-real-token-0123456789abcdef"

// k8sPolicy reads freely, denies secrets, holds exec for an approver,
// deletes only in namespace scratch and creates deployments of at most
// three replicas.
const k8sPolicy = `package clawpatrol

allow contains "k8s-read" if {
	input.k8s.verb in {"get", "list", "watch"}
	not input.k8s.subresource
}

deny contains {"rule": "k8s-secrets", "reason": "secrets are not for agents"} if {
	input.k8s.resource == "secrets"
}

approve contains {"rule": "k8s-exec", "reason": sprintf("exec into %s/%s: %s", [input.k8s.namespace, input.k8s.name, concat(" ", input.k8s.command)])} if {
	input.k8s.subresource == "exec"
}

allow contains "k8s-delete-scratch" if {
	input.k8s.verb == "delete"
	input.k8s.namespace == "scratch"
}

allow contains "k8s-create-deployments" if {
	input.k8s.verb == "create"
	input.k8s.resource == "deployments"
}

deny contains {"rule": "k8s-replicas", "reason": "at most 3 replicas"} if {
	input.k8s.resource == "deployments"
	input.k8s.object.spec.replicas > 3
}
`

// apiServer is the fake API server: what it saw, and its state.
type apiServer struct {
	t    *testing.T
	addr string
	ca   string // the test CA's PEM, for upstream_ca

	shell string // the pod to exec into

	mu       sync.Mutex
	seen     []string // "METHOD /path" of every authorized request
	pods     map[string][]string
	created  []map[string]any
	clientCN string // the client certificate's CN, when one was presented
	auth     string // the Authorization header next to a client certificate
}

func (s *apiServer) saw(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.seen {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

// startAPIServer starts the fake API server on a loopback port, with a
// certificate for k8s.test and for 192.0.2.10 (a server named by IP).
func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	ca, err := tlsca.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// shell is a pod only this server has: the approvals of concurrent
	// runs (every run of this user lists them) are told apart by it.
	shell := "shell-" + strings.ToLower(rand.Text()[:8])
	s := &apiServer{t: t, ca: string(ca.CertPEM()), shell: shell,
		pods: map[string][]string{"default": {"web-0", "web-1", shell}, "scratch": {"tmp-0"}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s, ErrorLog: log.New(io.Discard, "", 0)}
	srv.TLSConfig = &tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName == "" {
				return ca.GetCertificate("192.0.2.10")
			}
			return ca.GetCertificate(hello.ServerName)
		},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		s.mu.Lock()
		s.clientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		s.auth = r.Header.Get("Authorization")
		s.mu.Unlock()
	} else if r.Header.Get("Authorization") != "Bearer "+k8sToken {
		status(w, 401, "Unauthorized", "no valid token: "+r.Header.Get("Authorization"))
		return
	}
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch p := r.URL.Path; {
	case p == "/version":
		writeJSON(w, 200, map[string]any{"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"})
	case p == "/api":
		writeJSON(w, 200, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]any{"clientCIDR": "0.0.0.0/0", "serverAddress": "k8s.test:6443"}}})
	case p == "/apis":
		gv := map[string]any{"groupVersion": "apps/v1", "version": "v1"}
		writeJSON(w, 200, map[string]any{"kind": "APIGroupList", "apiVersion": "v1",
			"groups": []any{map[string]any{"name": "apps", "versions": []any{gv}, "preferredVersion": gv}}})
	case p == "/api/v1":
		writeJSON(w, 200, resourceList("v1", resource("pods", "Pod", "po"), resource("pods/exec", "PodExecOptions", ""),
			resource("secrets", "Secret", "")))
	case p == "/apis/apps/v1":
		writeJSON(w, 200, resourceList("apps/v1", resource("deployments", "Deployment", "deploy")))
	case r.Method == "GET" && (p == "/api/v1/pods" || len(parts) == 5 && parts[4] == "pods"):
		s.listPods(w, r, parts)
	case len(parts) == 6 && parts[4] == "pods":
		s.pod(w, r, parts[3], parts[5])
	case len(parts) == 7 && parts[4] == "pods" && parts[6] == "exec":
		s.exec(w, r)
	case len(parts) == 6 && parts[4] == "secrets":
		writeJSON(w, 200, map[string]any{"kind": "Secret", "apiVersion": "v1", "metadata": map[string]any{"name": parts[5], "namespace": parts[3]},
			"data": map[string]any{"password": "aHVudGVyMg=="}})
	case len(parts) == 7 && parts[5] == "deployments" && r.Method == "GET":
		status(w, 404, "NotFound", fmt.Sprintf("deployments.apps %q not found", parts[6]))
	case len(parts) == 6 && parts[5] == "deployments" && r.Method == "POST":
		var obj map[string]any
		if err := json.NewDecoder(r.Body).Decode(&obj); err != nil {
			status(w, 400, "BadRequest", err.Error())
			return
		}
		s.mu.Lock()
		s.created = append(s.created, obj)
		s.mu.Unlock()
		writeJSON(w, 201, obj)
	default:
		status(w, 404, "NotFound", "the server could not find the requested resource")
	}
}

// listPods answers a list, as a Table when kubectl asks for one.
func (s *apiServer) listPods(w http.ResponseWriter, r *http.Request, parts []string) {
	namespaces := []string{"default", "scratch"}
	if len(parts) == 5 {
		namespaces = []string{parts[3]}
	}
	want := strings.TrimPrefix(r.URL.Query().Get("fieldSelector"), "metadata.name=")
	var items, rows []any
	s.mu.Lock()
	for _, ns := range namespaces {
		for _, name := range s.pods[ns] {
			if want != "" && name != want {
				continue
			}
			meta := map[string]any{"name": name, "namespace": ns, "uid": ns + "-" + name, "creationTimestamp": nil}
			items = append(items, map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": meta, "status": map[string]any{"phase": "Running"}})
			rows = append(rows, map[string]any{"cells": []any{name, "Running"},
				"object": map[string]any{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
		}
	}
	s.mu.Unlock()
	if strings.Contains(r.Header.Get("Accept"), "as=Table") {
		writeJSON(w, 200, map[string]any{"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": map[string]any{"resourceVersion": "1"},
			"columnDefinitions": []any{
				map[string]any{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
				map[string]any{"name": "Status", "type": "string", "format": "", "description": "", "priority": 0},
			}, "rows": rows})
		return
	}
	writeJSON(w, 200, map[string]any{"kind": "PodList", "apiVersion": "v1", "metadata": map[string]any{"resourceVersion": "1"}, "items": items})
}

// pod gets or deletes one pod.
func (s *apiServer) pod(w http.ResponseWriter, r *http.Request, ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := -1
	for j, n := range s.pods[ns] {
		if n == name {
			i = j
		}
	}
	if i < 0 {
		status(w, 404, "NotFound", fmt.Sprintf("pods %q not found", name))
		return
	}
	obj := map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": map[string]any{"name": name, "namespace": ns, "uid": ns + "-" + name},
		"spec":   map[string]any{"containers": []any{map[string]any{"name": "web", "image": "nginx"}}},
		"status": map[string]any{"phase": "Running"}}
	if r.Method == "DELETE" {
		s.pods[ns] = append(s.pods[ns][:i], s.pods[ns][i+1:]...)
	}
	writeJSON(w, 200, obj)
}

// exec runs "echo ARGS..." over the v5.channel.k8s.io WebSocket protocol:
// the output on channel 1 (stdout), then a Success status on channel 3.
func (s *apiServer) exec(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{Subprotocols: []string{"v5.channel.k8s.io", "v4.channel.k8s.io"}}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the response was written (kubectl then tries SPDY, which this server does not speak)
	}
	defer ws.Close()
	cmd := r.URL.Query()["command"]
	out := "unknown command\n"
	if len(cmd) > 0 && cmd[0] == "echo" {
		out = strings.Join(cmd[1:], " ") + "\n"
	}
	ws.WriteMessage(websocket.BinaryMessage, append([]byte{1}, out...))
	ws.WriteMessage(websocket.BinaryMessage, append([]byte{3}, `{"metadata":{},"status":"Success"}`...))
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
}

func resource(name, kind, short string) map[string]any {
	m := map[string]any{"name": name, "singularName": "", "namespaced": true, "kind": kind,
		"verbs": []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}}
	if short != "" {
		m["shortNames"] = []string{short}
	}
	return m
}

func resourceList(gv string, resources ...map[string]any) map[string]any {
	return map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code})
}

// k8sEnv is a test env whose config has the cluster endpoint k8s.test:6443
// mapped to the fake API server, with the policy above and a human approver.
func k8sEnv(t *testing.T, approvalTimeout string) (*env, *apiServer) {
	t.Helper()
	s := startAPIServer(t)
	e := newEnv(t)
	e.write("ca.pem", s.ca)
	e.write("token", k8sToken+"\n")
	e.write("policy.rego", k8sPolicy)
	e.config(fmt.Sprintf(`
endpoints:
  cluster:
    hosts: [k8s.test]
    ports: [6443]
    protocol: kubernetes
    upstream: %s
    upstream_ca: ca.pem
    credential: cluster
credentials:
  cluster:
    from: {file: token}
approvers:
  me: {type: human}
approval:
  default: [me]
  timeout: %s
policy:
  paths: [policy.rego]
`, s.addr, approvalTimeout))
	return e, s
}

// k8sActions returns the audit log's k8s actions as "verdict rule verb resource".
func (e *env) k8sActions() []string {
	var out []string
	for _, a := range e.actions() {
		if a["protocol"] != "k8s" {
			continue
		}
		d := a["decision"].(map[string]any)
		k := a["input"].(map[string]any)["k8s"].(map[string]any)
		out = append(out, fmt.Sprintf("%s %s %s %s", d["verdict"], d["rule"], k["verb"], k["resource"]))
	}
	return out
}

func TestKubectlGetPods(t *testing.T) {
	e, s := k8sEnv(t, "5m")
	r := e.sh(`kubectl get pods -A && cat "$KUBECONFIG"`)
	if r.code != 0 || strings.Contains(r.stdout, k8sToken) {
		t.Fatalf("kubectl get pods -A, then the kubeconfig:\n%v", r)
	}
	for _, want := range []string{"NAMESPACE", "default", "web-0", "web-1", "scratch", "tmp-0", "Running", "server: https://k8s.test:6443", "token: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in the output:\n%v", want, r)
		}
	}
	if !s.saw("GET /api/v1/pods") {
		t.Errorf("the server saw no list of pods")
	}
	acts := strings.Join(e.k8sActions(), "\n")
	if !strings.Contains(acts, "allow k8s-read list pods") || !strings.Contains(acts, "allow k8s-read get ") {
		t.Errorf("audit log:\n%s", acts)
	}
	audit, _ := os.ReadFile(e.auditPath())
	if strings.Contains(string(audit), k8sToken) {
		t.Error("the audit log holds the token")
	}
}

func TestKubectlSecretDenied(t *testing.T) {
	e, s := k8sEnv(t, "5m")
	r := e.run("kubectl", "get", "secret", "x", "-o", "yaml")
	want := `Error from server (Forbidden): clawpatrol: denied by rule "k8s-secrets": secrets are not for agents`
	if r.code == 0 || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "aHVudGVyMg") {
		t.Fatalf("want kubectl's Forbidden error:\n%v", r)
	}
	if s.saw("GET /api/v1/namespaces/default/secrets") {
		t.Error("the server saw the denied request")
	}
	if acts := e.k8sActions(); !strings.Contains(strings.Join(acts, "\n"), "deny k8s-secrets get secrets") {
		t.Errorf("audit log: %v", acts)
	}
}

// pendingExec waits until `clawpatrol approve --json` lists the approval
// of an exec into this server's shell pod, and returns it. Other runs of
// the same user may have approvals pending too. The deadline only guards
// against a hang.
func (e *env) pendingExec(s *apiServer) map[string]any {
	e.t.Helper()
	want := "exec into default/" + s.shell + ": echo hi"
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := e.exec(e.command("approve", "--json"))
		var list []map[string]any
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &list) == nil {
			for _, p := range list {
				if p["rule"] == "k8s-exec" && p["reason"] == want {
					return p
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatal("no pending approval for the exec appeared")
	return nil
}

func TestKubectlExecApproved(t *testing.T) {
	e, s := k8sEnv(t, "5m")
	wait := e.startAgent("kubectl", "exec", s.shell, "--", "echo", "hi")
	p := e.pendingExec(s)
	if s.saw("GET /api/v1/namespaces/default/pods/" + s.shell + "/exec") {
		t.Fatal("the server saw the exec before the approval")
	}
	if r := e.exec(e.command("approve", p["id"].(string))); r.code != 0 {
		t.Fatalf("approve: %v", r)
	}
	if r := wait(); r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("want hi after the approval:\n%v", r)
	}
	if acts := strings.Join(e.k8sActions(), "\n"); !strings.Contains(acts, "allow k8s-exec connect pods") {
		t.Errorf("audit log:\n%s", acts)
	}
}

func TestKubectlExecDenied(t *testing.T) {
	e, s := k8sEnv(t, "5m")
	wait := e.startAgent("kubectl", "exec", s.shell, "--", "echo", "hi")
	p := e.pendingExec(s)
	if r := e.exec(e.command("approve", p["id"].(string), "--deny", "--reason", "not in prod")); r.code != 0 {
		t.Fatalf("approve --deny: %v", r)
	}
	// kubectl asks again over SPDY after the refused WebSocket: that
	// request is refused at once, not put to the approver a second time.
	r := wait()
	if r.code == 0 || strings.Contains(r.stdout, "hi") || !strings.Contains(r.stderr, `Error from server (Forbidden): clawpatrol: denied by rule "k8s-exec"`) ||
		!strings.Contains(r.stderr, "not in prod (the same request was refused") {
		t.Fatalf("want the exec refused, the second time without asking:\n%v", r)
	}
	if s.saw("GET /api/v1/namespaces/default/pods/"+s.shell+"/exec") || s.saw("POST /api/v1/namespaces/default/pods/"+s.shell+"/exec") {
		t.Error("the server saw a refused exec")
	}
	var execs []string
	for _, a := range e.k8sActions() {
		if strings.Contains(a, "connect") {
			execs = append(execs, a)
		}
	}
	if len(execs) != 2 {
		t.Fatalf("want the WebSocket and the SPDY exec in the audit log: %v", execs)
	}
	for _, a := range execs {
		if !strings.HasPrefix(a, "deny k8s-exec connect pods") {
			t.Errorf("audit: %s", a)
		}
	}
}

func TestKubectlExecTimedOut(t *testing.T) {
	e, s := k8sEnv(t, "1s")
	r := e.run("kubectl", "exec", s.shell, "--", "echo", "hi")
	if r.code == 0 || strings.Contains(r.stdout, "hi") || !strings.Contains(r.stderr, `Error from server (Forbidden): clawpatrol: denied by rule "k8s-exec"`) {
		t.Fatalf("want the exec refused after the timeout:\n%v", r)
	}
	if s.saw("GET /api/v1/namespaces/default/pods/" + s.shell + "/exec") {
		t.Error("the server saw a refused exec")
	}
}

func TestKubectlDeleteByNamespace(t *testing.T) {
	e, s := k8sEnv(t, "5m")
	r := e.sh(`kubectl delete pod tmp-0 -n scratch; echo "scratch=$?"; kubectl delete pod web-0 -n default; echo "default=$?"`)
	if !strings.Contains(r.stdout, `pod "tmp-0" deleted`) || !strings.Contains(r.stdout, "scratch=0") || !strings.Contains(r.stdout, "default=1") {
		t.Fatalf("want the scratch pod deleted and the default one refused:\n%v", r)
	}
	if !strings.Contains(r.stderr, `Error from server (Forbidden): clawpatrol: denied by rule "policy.default"`) {
		t.Errorf("want kubectl's Forbidden error:\n%v", r)
	}
	if !s.saw("DELETE /api/v1/namespaces/scratch/pods/tmp-0") || s.saw("DELETE /api/v1/namespaces/default/") {
		t.Errorf("server saw %v", s.seen)
	}
}

func TestKubectlApplyDeployment(t *testing.T) {
	e, s := k8sEnv(t, "5m")
	deployment := func(name string, replicas int) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
  namespace: default
spec:
  replicas: %d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: web
        image: nginx
`, name, replicas)
	}
	e.write("small.yaml", deployment("small", 2))
	e.write("big.yaml", deployment("big", 5))
	r := e.sh(`kubectl apply --validate=false -f small.yaml; echo "small=$?"; kubectl apply --validate=false -f big.yaml; echo "big=$?"`)
	if !strings.Contains(r.stdout, "deployment.apps/small created") || !strings.Contains(r.stdout, "small=0") || !strings.Contains(r.stdout, "big=1") {
		t.Fatalf("want small created and big refused:\n%v", r)
	}
	if !strings.Contains(r.stderr, `denied by rule "k8s-replicas": at most 3 replicas`) {
		t.Errorf("want the replicas rule named:\n%v", r)
	}
	s.mu.Lock()
	created := len(s.created)
	s.mu.Unlock()
	if created != 1 {
		t.Errorf("the server created %d deployments, want 1", created)
	}
	// The policy saw the object: its spec is in the audit record.
	var replicas []string
	for _, a := range e.actions() {
		k, _ := a["input"].(map[string]any)["k8s"].(map[string]any)
		if k == nil || k["verb"] != "create" {
			continue
		}
		spec := k["object"].(map[string]any)["spec"].(map[string]any)
		replicas = append(replicas, fmt.Sprint(spec["replicas"], " ", a["decision"].(map[string]any)["rule"]))
	}
	if strings.Join(replicas, ",") != "2 k8s-create-deployments,5 k8s-replicas" {
		t.Errorf("create actions: %v", replicas)
	}
}

// TestKubectlClientCertificateByIP: a cluster named by IP (no SNI, matched
// by destination) with a client-certificate credential: the upstream TLS
// connection presents the certificate, and the agent's placeholder token
// does not reach the server.
func TestKubectlClientCertificateByIP(t *testing.T) {
	s := startAPIServer(t)
	e := newEnv(t)
	e.write("ca.pem", s.ca)
	certPEM, keyPEM := clientCertificate(t, "agent-operator")
	e.write("client.crt", certPEM)
	e.write("client.key", keyPEM)
	e.write("policy.rego", k8sPolicy)
	e.config(fmt.Sprintf(`
endpoints:
  lab:
    hosts: [192.0.2.10]
    ports: [6443]
    protocol: kubernetes
    upstream: %s
    upstream_ca: ca.pem
    credential: lab
credentials:
  lab:
    from: {file: client.key}
    client_cert: client.crt
policy:
  paths: [policy.rego]
`, s.addr))
	r := e.sh(`grep server: "$KUBECONFIG"; kubectl get pods -n default; cat client.key | wc -c`)
	if r.code != 0 || !strings.Contains(r.stdout, "server: https://192.0.2.10:6443") || !strings.Contains(r.stdout, "web-0") {
		t.Fatalf("kubectl get pods by IP:\n%v", r)
	}
	if strings.Contains(r.stdout, "PRIVATE KEY") || !strings.HasSuffix(r.stdout, "0\n") {
		t.Errorf("the agent read the client key:\n%v", r)
	}
	s.mu.Lock()
	cn, auth := s.clientCN, s.auth
	s.mu.Unlock()
	if cn != "agent-operator" || auth != "" {
		t.Errorf("the server saw client certificate %q and Authorization %q", cn, auth)
	}
}

// clientCertificate makes a self-signed client certificate and its key, as PEM.
func clientCertificate(t *testing.T, cn string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}
