package k8s

import (
	"errors"
	"net/url"
	"reflect"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
)

func TestRequestInfo(t *testing.T) {
	type k = action.K8s
	tests := []struct {
		name   string
		method string
		target string // path?query
		want   *k     // nil: not an API request
	}{
		// core group
		{"list pods in a namespace", "GET", "/api/v1/namespaces/default/pods",
			&k{Verb: "list", Version: "v1", Resource: "pods", Namespace: "default"}},
		{"list pods everywhere", "GET", "/api/v1/pods?limit=500",
			&k{Verb: "list", Version: "v1", Resource: "pods", Params: map[string][]string{"limit": {"500"}}}},
		{"get a pod", "GET", "/api/v1/namespaces/default/pods/web-0",
			&k{Verb: "get", Version: "v1", Resource: "pods", Namespace: "default", Name: "web-0"}},
		{"head is get", "HEAD", "/api/v1/namespaces/default/pods/web-0",
			&k{Verb: "get", Version: "v1", Resource: "pods", Namespace: "default", Name: "web-0"}},
		{"get a secret", "GET", "/api/v1/namespaces/prod/secrets/db",
			&k{Verb: "get", Version: "v1", Resource: "secrets", Namespace: "prod", Name: "db"}},
		{"create a configmap", "POST", "/api/v1/namespaces/default/configmaps",
			&k{Verb: "create", Version: "v1", Resource: "configmaps", Namespace: "default"}},
		{"update", "PUT", "/api/v1/namespaces/default/configmaps/x",
			&k{Verb: "update", Version: "v1", Resource: "configmaps", Namespace: "default", Name: "x"}},
		{"patch", "PATCH", "/api/v1/namespaces/default/configmaps/x",
			&k{Verb: "patch", Version: "v1", Resource: "configmaps", Namespace: "default", Name: "x"}},
		{"delete a pod", "DELETE", "/api/v1/namespaces/default/pods/web-0",
			&k{Verb: "delete", Version: "v1", Resource: "pods", Namespace: "default", Name: "web-0"}},
		{"deletecollection", "DELETE", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb",
			&k{Verb: "deletecollection", Version: "v1", Resource: "pods", Namespace: "default", Params: map[string][]string{"labelSelector": {"app=web"}}}},
		{"unknown method has no verb", "OPTIONS", "/api/v1/pods",
			&k{Verb: "", Version: "v1", Resource: "pods"}},
		{"trailing slash", "GET", "/api/v1/namespaces/default/pods/",
			&k{Verb: "list", Version: "v1", Resource: "pods", Namespace: "default"}},

		// grouped resources
		{"list deployments", "GET", "/apis/apps/v1/namespaces/default/deployments",
			&k{Verb: "list", Group: "apps", Version: "v1", Resource: "deployments", Namespace: "default"}},
		{"create a deployment", "POST", "/apis/apps/v1/namespaces/default/deployments?fieldManager=kubectl-client-side-apply",
			&k{Verb: "create", Group: "apps", Version: "v1", Resource: "deployments", Namespace: "default", Params: map[string][]string{"fieldManager": {"kubectl-client-side-apply"}}}},
		{"custom resource", "GET", "/apis/cert-manager.io/v1/namespaces/x/certificates/web",
			&k{Verb: "get", Group: "cert-manager.io", Version: "v1", Resource: "certificates", Namespace: "x", Name: "web"}},

		// subresources
		{"scale", "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale",
			&k{Verb: "update", Group: "apps", Version: "v1", Resource: "deployments", Subresource: "scale", Namespace: "default", Name: "web"}},
		{"status", "PATCH", "/api/v1/namespaces/default/pods/web-0/status",
			&k{Verb: "patch", Version: "v1", Resource: "pods", Subresource: "status", Namespace: "default", Name: "web-0"}},
		{"logs", "GET", "/api/v1/namespaces/default/pods/web-0/log?container=web&follow=true",
			&k{Verb: "get", Version: "v1", Resource: "pods", Subresource: "log", Namespace: "default", Name: "web-0", Container: "web",
				Params: map[string][]string{"container": {"web"}, "follow": {"true"}}}},
		{"exec over SPDY", "POST", "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=id&container=web&stdout=true",
			&k{Verb: "connect", Version: "v1", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "web-0",
				Command: []string{"sh", "-c", "id"}, Container: "web",
				Params: map[string][]string{"command": {"sh", "-c", "id"}, "container": {"web"}, "stdout": {"true"}}}},
		{"exec over WebSocket is the same", "GET", "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=id&container=web&stdout=true",
			&k{Verb: "connect", Version: "v1", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "web-0",
				Command: []string{"sh", "-c", "id"}, Container: "web",
				Params: map[string][]string{"command": {"sh", "-c", "id"}, "container": {"web"}, "stdout": {"true"}}}},
		{"attach", "POST", "/api/v1/namespaces/default/pods/web-0/attach?stdin=true",
			&k{Verb: "connect", Version: "v1", Resource: "pods", Subresource: "attach", Namespace: "default", Name: "web-0",
				Params: map[string][]string{"stdin": {"true"}}}},
		{"port-forward", "GET", "/api/v1/namespaces/default/pods/web-0/portforward?ports=8080",
			&k{Verb: "connect", Version: "v1", Resource: "pods", Subresource: "portforward", Namespace: "default", Name: "web-0",
				Params: map[string][]string{"ports": {"8080"}}}},
		{"service proxy keeps its path", "GET", "/api/v1/namespaces/default/services/web:80/proxy/metrics/x",
			&k{Verb: "connect", Version: "v1", Resource: "services", Subresource: "proxy", Namespace: "default", Name: "web:80"}},
		{"node proxy", "GET", "/api/v1/nodes/n1/proxy/logs/",
			&k{Verb: "connect", Version: "v1", Resource: "nodes", Subresource: "proxy", Name: "n1"}},
		{"old proxy verb", "GET", "/api/v1/proxy/namespaces/default/pods/web-0/some/path",
			&k{Verb: "connect", Version: "v1", Resource: "pods", Subresource: "proxy", Namespace: "default", Name: "web-0"}},
		{"eviction", "POST", "/api/v1/namespaces/default/pods/web-0/eviction",
			&k{Verb: "create", Version: "v1", Resource: "pods", Subresource: "eviction", Namespace: "default", Name: "web-0"}},

		// cluster-scoped resources, and namespaces themselves
		{"list nodes", "GET", "/api/v1/nodes",
			&k{Verb: "list", Version: "v1", Resource: "nodes"}},
		{"get a cluster role", "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
			&k{Verb: "get", Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Name: "admin"}},
		{"list namespaces", "GET", "/api/v1/namespaces",
			&k{Verb: "list", Version: "v1", Resource: "namespaces"}},
		{"get a namespace", "GET", "/api/v1/namespaces/prod",
			&k{Verb: "get", Version: "v1", Resource: "namespaces", Namespace: "prod", Name: "prod"}},
		{"delete a namespace", "DELETE", "/api/v1/namespaces/prod",
			&k{Verb: "delete", Version: "v1", Resource: "namespaces", Namespace: "prod", Name: "prod"}},
		{"namespace finalize", "PUT", "/api/v1/namespaces/prod/finalize",
			&k{Verb: "update", Version: "v1", Resource: "namespaces", Subresource: "finalize", Namespace: "prod", Name: "prod"}},
		{"namespace status", "GET", "/api/v1/namespaces/prod/status",
			&k{Verb: "get", Version: "v1", Resource: "namespaces", Subresource: "status", Namespace: "prod", Name: "prod"}},

		// watch forms
		{"watch=true", "GET", "/api/v1/namespaces/default/pods?watch=true",
			&k{Verb: "watch", Version: "v1", Resource: "pods", Namespace: "default", Params: map[string][]string{"watch": {"true"}}}},
		{"watch=1", "GET", "/api/v1/pods?watch=1",
			&k{Verb: "watch", Version: "v1", Resource: "pods", Params: map[string][]string{"watch": {"1"}}}},
		{"watch=anything but false", "GET", "/api/v1/pods?watch=yes",
			&k{Verb: "watch", Version: "v1", Resource: "pods", Params: map[string][]string{"watch": {"yes"}}}},
		{"watch=FALSE is a list", "GET", "/api/v1/pods?watch=FALSE",
			&k{Verb: "list", Version: "v1", Resource: "pods", Params: map[string][]string{"watch": {"FALSE"}}}},
		{"watch=0 is a list", "GET", "/api/v1/pods?watch=0&watch=1",
			&k{Verb: "list", Version: "v1", Resource: "pods", Params: map[string][]string{"watch": {"0", "1"}}}},
		{"watch path", "GET", "/api/v1/watch/namespaces/default/pods",
			&k{Verb: "watch", Version: "v1", Resource: "pods", Namespace: "default"}},
		{"watch path with a name", "GET", "/apis/apps/v1/watch/namespaces/default/deployments/web",
			&k{Verb: "watch", Group: "apps", Version: "v1", Resource: "deployments", Namespace: "default", Name: "web"}},
		{"watch one object by field selector", "GET", "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ddb&watch=true",
			&k{Verb: "watch", Version: "v1", Resource: "secrets", Namespace: "default", Name: "db",
				Params: map[string][]string{"fieldSelector": {"metadata.name=db"}, "watch": {"true"}}}},
		{"list one object by field selector ==", "GET", "/api/v1/secrets?fieldSelector=status.phase%3DRunning,metadata.name%3D%3Ddb",
			&k{Verb: "list", Version: "v1", Resource: "secrets", Name: "db",
				Params: map[string][]string{"fieldSelector": {"status.phase=Running,metadata.name==db"}}}},
		{"a != selector names nothing", "GET", "/api/v1/secrets?fieldSelector=metadata.name!%3Ddb",
			&k{Verb: "list", Version: "v1", Resource: "secrets", Params: map[string][]string{"fieldSelector": {"metadata.name!=db"}}}},
		{"an unparseable selector names nothing", "GET", "/api/v1/secrets?fieldSelector=metadata.name%3Ddb,junk",
			&k{Verb: "list", Version: "v1", Resource: "secrets", Params: map[string][]string{"fieldSelector": {"metadata.name=db,junk"}}}},

		// discovery
		{"api", "GET", "/api", &k{Verb: "get", Discovery: true}},
		{"api version", "GET", "/api/v1", &k{Verb: "get", Version: "v1", Discovery: true}},
		{"apis", "GET", "/apis", &k{Verb: "get", Discovery: true}},
		{"apis group", "GET", "/apis/apps", &k{Verb: "get", Group: "apps", Discovery: true}},
		{"apis group version", "GET", "/apis/apps/v1/", &k{Verb: "get", Group: "apps", Version: "v1", Discovery: true}},
		{"version", "GET", "/version", &k{Verb: "get", Discovery: true}},
		{"openapi v2", "GET", "/openapi/v2?timeout=32s", &k{Verb: "get", Discovery: true}},
		{"openapi v3 group", "GET", "/openapi/v3/apis/apps/v1?hash=abc", &k{Verb: "get", Discovery: true}},

		// not API requests: they stay http actions
		{"healthz", "GET", "/healthz", nil},
		{"metrics", "GET", "/metrics", nil},
		{"root", "GET", "/", nil},
		{"a write to discovery", "POST", "/api/v1", nil},
		{"a write to version", "POST", "/version", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			var q map[string][]string
			if u.RawQuery != "" {
				q = u.Query()
			}
			got, err := RequestInfo(tc.method, u.Path, q)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %s\n got %+v\nwant %+v", tc.method, tc.target, got, tc.want)
			}
		})
	}
}

func TestRequestInfoMalformed(t *testing.T) {
	for _, path := range []string{
		"/api/v1/watch",                              // a special verb with nothing to act on
		"/apis/apps/v1/proxy/",                       // the same, trailing slash
		"/api/v1//pods",                              // empty segment
		"/api/v1/namespaces//pods",                   // empty namespace would read as every namespace
		"/apis/apps//v1/deployments",                 // empty version
		"/api/v1/namespaces/default/pods/x/exec/sh",  // a path after a subresource other than proxy
		"/api/v1/namespaces/default/pods/x/log/more", // the same
		"/api/v1/namespaces/default/pods/a%b",        // a decoded name with % (double-encoded)
		"/api/v1/namespaces/../secrets",              // dot segments
		"/api/v1/namespaces/./secrets/x",
	} {
		k, err := RequestInfo("GET", path, nil)
		if err == nil || !errors.Is(err, errMalformed) {
			t.Errorf("%s: want malformed, got %+v, %v", path, k, err)
		}
	}
}

func TestSelectsName(t *testing.T) {
	tests := []struct {
		sel  string
		name string
		ok   bool
	}{
		{"metadata.name=db", "db", true},
		{"metadata.name==db", "db", true},
		{"metadata.namespace=x,metadata.name=db", "db", true},
		{`metadata.name=a\,b`, "a,b", true}, // an escaped comma is part of the value
		{"metadata.name=a/b", "", false},
		{"metadata.name=..", "", false},
		{"metadata.name=", "", false},
		{"metadata.name!=db", "", false},
		{"metadata.name=db,", "db", true},
		{"metadata.name=b,metadata.name=a", "a", true}, // sorted first, as the API server does
		{"spec.nodeName=n1", "", false},
		{`metadata.name=x\y`, "", false}, // invalid escape: the selector does not parse
	}
	for _, tc := range tests {
		name, ok := selectsName(tc.sel)
		if name != tc.name || ok != tc.ok {
			t.Errorf("%q: got %q %v, want %q %v", tc.sel, name, ok, tc.name, tc.ok)
		}
	}
}
