package k8s

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequestInfo feeds the path parser what an agent controls: any
// method, path and query. It must not panic, and what it derives must be
// consistent: a name only with a resource, connect only for the connect
// subresources, discovery only without a resource.
func FuzzRequestInfo(f *testing.F) {
	for _, s := range []string{
		"GET /api/v1/namespaces/default/pods",
		"GET /api/v1/pods?watch=1",
		"GET /api/v1/watch/namespaces/default/pods/web",
		"DELETE /api/v1/namespaces/default/pods",
		"POST /api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=id&container=web&stdout=true",
		"GET /api/v1/namespaces/default/services/web:80/proxy/a/b",
		"GET /api/v1/proxy/nodes/n1/logs",
		"PUT /api/v1/namespaces/prod/finalize",
		"GET /apis/apps/v1/namespaces/default/deployments/web/scale",
		"GET /api/v1/secrets?fieldSelector=metadata.name%3D%3Ddb,a%3Db",
		"GET /apis/apps/v1",
		"GET /openapi/v3/apis/apps/v1",
		"GET /api/v1//pods",
		"GET /api/v1/watch",
		"GET /version",
	} {
		method, target, _ := strings.Cut(s, " ")
		f.Add(method, target)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		path, rawQuery, _ := strings.Cut(target, "?")
		q, _ := url.ParseQuery(rawQuery)
		k, err := RequestInfo(method, path, q)
		if err != nil || k == nil {
			return
		}
		if k.Discovery && (k.Resource != "" || k.Name != "" || k.Verb != "get") {
			t.Fatalf("discovery with a resource: %+v", k)
		}
		if !k.Discovery && k.Resource == "" {
			t.Fatalf("resource request without a resource: %s %s → %+v", method, target, k)
		}
		if (k.Verb == "connect") != connectSubresources[k.Subresource] {
			t.Fatalf("connect and subresource disagree: %+v", k)
		}
		if k.Verb == "delete" && k.Name == "" {
			t.Fatalf("delete without a name: %+v", k)
		}
		for _, seg := range []string{k.Group, k.Version, k.Resource, k.Subresource, k.Namespace} {
			if strings.Contains(seg, "/") {
				t.Fatalf("segment with a slash: %+v", k)
			}
		}
	})
}

// FuzzObject feeds the body parser any body under each content type a
// write may carry. It must not panic, and an object it returns must be
// plain JSON data (it goes into the policy input).
func FuzzObject(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":3}}`,
		`[{"op":"replace","path":"/spec/replicas","value":5}]`,
		"kind: Deployment\nspec:\n  replicas: 2\n",
		"a: &x {b: 1}\nc: *x\n",
		"a: yes\n",
		"a: 1\n---\nb: 2\n",
	} {
		f.Add(uint8(0), s)
	}
	types := []string{"application/json", "application/json-patch+json", "application/merge-patch+json",
		"application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/yaml", ""}
	f.Fuzz(func(t *testing.T, ct uint8, body string) {
		v, err := Object(types[int(ct)%len(types)], body, nil, false)
		if err != nil || v == nil {
			return
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("object %#v is not JSON data: %v", v, err)
		}
	})
}
