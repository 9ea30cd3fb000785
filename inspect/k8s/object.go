package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Errors of Object: the policy cannot see the object whole.
var (
	ErrTruncated   = errors.New("the object in the request body is longer than limits.body")
	ErrUnparseable = errors.New("the object in the request body could not be parsed")
)

// Object parses the body of a create, update or patch as the API server
// would for its content type: JSON and YAML objects, a JSON patch's list of
// operations, a merge, strategic-merge or apply patch's partial object.
// Numbers stay exact (json.Number), as in http.json. parsed is the body
// already decoded as JSON, if it was; nil otherwise. An empty body has no
// object. Binary encodings (protobuf, CBOR) are ErrUnparseable.
func Object(contentType, body string, parsed any, truncated bool) (any, error) {
	if truncated {
		return nil, ErrTruncated
	}
	if strings.TrimSpace(body) == "" {
		return nil, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = ""
	}
	switch mt {
	case "application/json", "application/json-patch+json", "application/merge-patch+json",
		"application/strategic-merge-patch+json":
		return jsonObject(body, parsed)
	case "application/yaml", "application/apply-patch+yaml", "":
		// YAML is a superset of JSON: kubectl's server-side apply sends
		// JSON under the YAML type.
		if v, err := jsonObject(body, parsed); err == nil {
			return v, nil
		}
		return yamlObject(body)
	}
	return nil, fmt.Errorf("%w: content type %s", ErrUnparseable, mt)
}

func jsonObject(body string, parsed any) (any, error) {
	if parsed != nil {
		return parsed, nil
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparseable, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: more than one JSON value", ErrUnparseable)
	}
	return v, nil
}

// yamlObject decodes one YAML document into the values JSON would give.
// The API server reads YAML with YAML 1.1 rules (yes, on and 1:30 are a
// boolean and a number there) and this decoder with YAML 1.2's: a plain
// scalar the two read differently, an explicit tag or a second document
// would let the policy see something else than the server, so they are
// ErrUnparseable.
func yamlObject(body string) (any, error) {
	dec := yaml.NewDecoder(strings.NewReader(body))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparseable, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrUnparseable)
	}
	if err := checkYAML(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparseable, err)
	}
	var v any
	if err := doc.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparseable, err)
	}
	// Through JSON, so maps have string keys and numbers are json.Number.
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparseable, err)
	}
	dec2 := json.NewDecoder(bytes.NewReader(raw))
	dec2.UseNumber()
	var out any
	if err := dec2.Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparseable, err)
	}
	return out, nil
}

// yaml11Scalar matches plain scalars YAML 1.1 reads as booleans or numbers
// where YAML 1.2 reads strings.
var yaml11Scalar = regexp.MustCompile(`^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|[-+]?[0-9_]*_[0-9_]*(\.[0-9_]*)?)$`)

func checkYAML(n *yaml.Node) error {
	if n.Style&yaml.TaggedStyle != 0 {
		return fmt.Errorf("line %d: explicit tag %s", n.Line, n.Tag)
	}
	if n.Kind == yaml.ScalarNode && n.Style == 0 && n.Tag == "!!str" && yaml11Scalar.MatchString(n.Value) {
		return fmt.Errorf("line %d: %q is a boolean or number in YAML 1.1 and a string in YAML 1.2; quote it", n.Line, n.Value)
	}
	// An alias's target was checked where its anchor stands.
	for _, c := range n.Content {
		if err := checkYAML(c); err != nil {
			return err
		}
	}
	return nil
}
