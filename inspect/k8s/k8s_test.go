package k8s

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

func httpAction(method, target, contentType, body string) *action.Action {
	u, _ := url.Parse(target)
	h := &action.HTTP{Method: method, Scheme: "https", Host: "k8s.test", Path: u.Path, Body: body, Size: int64(len(body))}
	if u.RawQuery != "" {
		h.Query = u.Query()
	}
	if contentType != "" {
		h.Headers = map[string][]string{"content-type": {contentType}}
	}
	return &action.Action{Protocol: action.ProtoHTTP, Endpoint: "cluster", HTTP: h}
}

func TestDescribe(t *testing.T) {
	a := httpAction("POST", "/apis/apps/v1/namespaces/default/deployments?fieldManager=kubectl", "application/json",
		`{"kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":3}}`)
	if d := Describe(a); d != nil {
		t.Fatalf("refused: %+v", d)
	}
	if a.Protocol != action.ProtoK8s || a.HTTP != nil || a.K8s == nil {
		t.Fatalf("want a k8s action with no http block: %+v", a)
	}
	k := a.K8s
	if k.Verb != "create" || k.Group != "apps" || k.Resource != "deployments" || k.Namespace != "default" {
		t.Errorf("facts %+v", k)
	}
	spec := k.Object.(map[string]any)["spec"].(map[string]any)
	if spec["replicas"] != json.Number("3") {
		t.Errorf("object %#v", k.Object)
	}

	// Reads carry no object, even with a body.
	a = httpAction("GET", "/api/v1/pods", "application/json", `{"x":1}`)
	if Describe(a); a.K8s == nil || a.K8s.Object != nil {
		t.Errorf("a list has no object: %+v", a.K8s)
	}

	// A non-API path stays http.
	a = httpAction("GET", "/healthz", "", "")
	if d := Describe(a); d != nil || a.Protocol != action.ProtoHTTP || a.HTTP == nil {
		t.Errorf("healthz: %+v %+v", d, a)
	}
}

func TestDescribeRefuses(t *testing.T) {
	tests := []struct {
		name string
		a    *action.Action
		rule string
	}{
		{"malformed path", httpAction("GET", "/api/v1/namespaces//secrets", "", ""), RuleMalformed},
		{"truncated object", func() *action.Action {
			a := httpAction("POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"data":{"a":"`)
			a.HTTP.Truncated = true
			return a
		}(), RuleTruncated},
		{"protobuf object", httpAction("PUT", "/api/v1/namespaces/default/pods/x", "application/vnd.kubernetes.protobuf", "k8s\x00"), RuleUnparseable},
		{"ambiguous YAML", httpAction("PATCH", "/api/v1/namespaces/default/pods/x", "application/apply-patch+yaml", "spec:\n  hostPID: on\n"), RuleUnparseable},
	}
	for _, tc := range tests {
		d := Describe(tc.a)
		if d == nil || d.Verdict != action.Deny || d.Rule != tc.rule {
			t.Errorf("%s: got %+v, want deny %s", tc.name, d, tc.rule)
		}
	}
}

func TestDeriveFixture(t *testing.T) {
	// A fixture that gives only the HTTP request of a k8s action.
	a, err := fixtures.ParseAction([]byte(`{
		"protocol": "k8s", "endpoint": "cluster",
		"http": {"method": "GET", "path": "/api/v1/namespaces/default/pods/web-0/exec",
		         "query": {"command": ["sh", "-c", "id"], "container": ["web"], "stdout": ["true"]}}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &action.K8s{Verb: "connect", Version: "v1", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "web-0",
		Command: []string{"sh", "-c", "id"}, Container: "web",
		Params: map[string][]string{"command": {"sh", "-c", "id"}, "container": {"web"}, "stdout": {"true"}}}
	if a.HTTP != nil || !reflect.DeepEqual(a.K8s, want) {
		t.Fatalf("derived %+v, http %+v", a.K8s, a.HTTP)
	}

	// Stated facts are kept.
	a, _ = fixtures.ParseAction([]byte(`{"protocol": "k8s", "k8s": {"verb": "get", "group": "", "resource": "pods"},
		"http": {"method": "DELETE", "path": "/api/v1/secrets"}}`))
	if a.K8s.Verb != "get" || a.K8s.Resource != "pods" {
		t.Errorf("stated facts overwritten: %+v", a.K8s)
	}
	// An http action to /api is not taken for Kubernetes.
	a, _ = fixtures.ParseAction([]byte(`{"protocol": "http", "http": {"method": "GET", "path": "/api/v3/repos"}}`))
	if a.K8s != nil || a.HTTP == nil {
		t.Errorf("http action derived: %+v", a)
	}
	// A non-API path to a Kubernetes endpoint is the http action the wire sees.
	a, _ = fixtures.ParseAction([]byte(`{"protocol": "k8s", "http": {"method": "GET", "path": "/metrics"}}`))
	if a.Protocol != action.ProtoHTTP || a.K8s != nil {
		t.Errorf("metrics: %+v", a)
	}
}

func TestWriteStatus(t *testing.T) {
	w := httptest.NewRecorder()
	a := &action.Action{Protocol: action.ProtoK8s, K8s: &action.K8s{Verb: "get", Version: "v1", Resource: "secrets", Name: "x"}}
	WriteStatus(w, a, 403, action.Denied("k8s-secrets", "secrets are not for agents"))
	if w.Code != 403 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get(RuleHeader) != "k8s-secrets" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	var s map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s["kind"] != "Status" || s["apiVersion"] != "v1" || s["status"] != "Failure" || s["reason"] != "Forbidden" || s["code"] != float64(403) {
		t.Errorf("status %v", s)
	}
	if msg := s["message"].(string); msg != `clawpatrol: denied by rule "k8s-secrets": secrets are not for agents` {
		t.Errorf("message %q", msg)
	}
	if det := s["details"].(map[string]any); det["kind"] != "secrets" || det["name"] != "x" {
		t.Errorf("details %v", det)
	}

	w = httptest.NewRecorder()
	WriteStatus(w, nil, 400, action.Denied("http-malformed", "bare LF"))
	if w.Code != 400 || !strings.Contains(w.Body.String(), `"reason":"BadRequest"`) || !strings.Contains(w.Body.String(), "rejected by rule") {
		t.Errorf("400: %s", w.Body)
	}
}
