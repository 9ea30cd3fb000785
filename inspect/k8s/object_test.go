package k8s

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestObject(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	deployment := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": "default"},
		"spec":     map[string]any{"replicas": num("3")},
	}
	tests := []struct {
		name        string
		contentType string
		body        string
		want        any
	}{
		{"create as JSON", "application/json", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":3}}`, deployment},
		{"create as YAML", "application/yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 3\n", deployment},
		{"charset parameter", "application/json; charset=utf-8", `{"a":1}`, map[string]any{"a": num("1")}},
		{"json patch gives the operations", "application/json-patch+json", `[{"op":"replace","path":"/spec/replicas","value":5}]`,
			[]any{map[string]any{"op": "replace", "path": "/spec/replicas", "value": num("5")}}},
		{"merge patch", "application/merge-patch+json", `{"spec":{"replicas":5}}`, map[string]any{"spec": map[string]any{"replicas": num("5")}}},
		{"strategic merge patch", "application/strategic-merge-patch+json", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}`,
			map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "web", "image": "nginx:2"}}}}}}},
		{"server-side apply sends JSON as YAML", "application/apply-patch+yaml", `{"kind":"Deployment","spec":{"replicas":2}}`,
			map[string]any{"kind": "Deployment", "spec": map[string]any{"replicas": num("2")}}},
		{"server-side apply as YAML", "application/apply-patch+yaml", "kind: Deployment\nspec:\n  replicas: 2\n  paused: true\n",
			map[string]any{"kind": "Deployment", "spec": map[string]any{"replicas": num("2"), "paused": true}}},
		{"quoted yes is a string", "application/yaml", "a: 'yes'\nb: \"on\"\n", map[string]any{"a": "yes", "b": "on"}},
		{"anchors and aliases", "application/yaml", "a: &x {b: 1}\nc: *x\n", map[string]any{"a": map[string]any{"b": num("1")}, "c": map[string]any{"b": num("1")}}},
		{"no content type: JSON", "", `{"a":true}`, map[string]any{"a": true}},
		{"no content type: YAML", "", "a: true\n", map[string]any{"a": true}},
		{"empty body", "application/json", "", nil},
		{"large integers stay exact", "application/json", `{"n":12345678901234567890}`, map[string]any{"n": num("12345678901234567890")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Object(tc.contentType, tc.body, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestObjectRefused(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		truncated   bool
		want        error
	}{
		{"truncated", "application/json", `{"a":`, true, ErrTruncated},
		{"bad JSON", "application/json", `{"a":`, false, ErrUnparseable},
		{"two JSON values", "application/merge-patch+json", `{"a":1} {"b":2}`, false, ErrUnparseable},
		{"protobuf", "application/vnd.kubernetes.protobuf", "k8s\x00\n\x02v1", false, ErrUnparseable},
		{"CBOR", "application/apply-patch+cbor", "\xd9\xd9\xf7", false, ErrUnparseable},
		{"two YAML documents", "application/yaml", "a: 1\n---\nb: 2\n", false, ErrUnparseable},
		// The API server reads YAML 1.1: there these are booleans and
		// numbers, here strings. Refused rather than misread.
		{"yes", "application/yaml", "spec:\n  hostNetwork: yes\n", false, ErrUnparseable},
		{"on as a key", "application/apply-patch+yaml", "on: x\n", false, ErrUnparseable},
		{"Off", "application/yaml", "a: Off\n", false, ErrUnparseable},
		{"sexagesimal", "application/yaml", "a: 1:30\n", false, ErrUnparseable},
		{"explicit tag", "application/yaml", "a: !!binary aGk=\n", false, ErrUnparseable},
		{"bad YAML", "application/yaml", "a: [\n", false, ErrUnparseable},
		{"non-string keys", "application/yaml", "? [a]\n: b\n", false, ErrUnparseable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Object(tc.contentType, tc.body, nil, tc.truncated)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %#v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// The http block's json, parsed once already, is used as it is.
func TestObjectReusesParsedJSON(t *testing.T) {
	parsed := map[string]any{"kind": "Pod"}
	got, err := Object("application/json", `{"kind":"Pod"}`, parsed, false)
	if err != nil || !reflect.DeepEqual(got, parsed) {
		t.Fatalf("got %v, %v", got, err)
	}
}
