package k8s

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
)

// The request info rules of the API server (k8s.io/apiserver's
// RequestInfoFactory), restated: a path under /api/VERSION or
// /apis/GROUP/VERSION names a resource; an optional /watch or /proxy
// segment after the version is a verb; /namespaces/NS/ scopes what follows
// unless what follows is a namespace's own subresource (status, finalize);
// then come resource, name and subresource, and anything after that is
// left to the subresource (a proxy's path). The method gives the verb; a
// get without a name is a list, or a watch when ?watch is anything but
// false or 0; a delete without a name is a deletecollection.
//
// clawpatrol adds three things. The connect subresources (exec, attach,
// portforward, proxy) get the verb connect whatever the method, because
// kubectl reaches them with a GET (WebSocket) or a POST (SPDY) and a policy
// should not have to know which. Paths the API server would not route
// (empty segments, a name containing %, parts after a subresource other
// than proxy) are errors: they are denied, not guessed at. And
// discovery (/api, /apis, /version, /openapi) is marked as such.

// namespaceSubresources follow /namespaces/NAME/ without starting a
// namespaced resource path.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// connectSubresources stream to a pod, node or service: the API server's
// admission sees them as CONNECT.
var connectSubresources = map[string]bool{"exec": true, "attach": true, "portforward": true, "proxy": true}

// errMalformed marks a path the API server would not route.
var errMalformed = errors.New("malformed Kubernetes API path")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// RequestInfo derives the request info of a request to a Kubernetes API
// server from its method, its decoded path (the API server routes on the
// decoded path too) and its query. It returns nil and no error for a path
// that is neither an API resource nor discovery (/healthz, /metrics, /logs):
// such a request stays an http action. The error is a malformed path.
// Object is not set: see Object.
func RequestInfo(method, path string, query map[string][]string) (*action.K8s, error) {
	parts, err := splitPath(path)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 || (parts[0] != "api" && parts[0] != "apis") {
		if isDiscovery(parts) && readMethod(method) {
			return &action.K8s{Verb: "get", Discovery: true}, nil
		}
		return nil, nil
	}
	k := &action.K8s{}
	rest := parts[1:]
	if parts[0] == "apis" {
		if len(rest) < 3 { // /apis, /apis/GROUP, /apis/GROUP/VERSION
			return discovery(method, parts)
		}
		k.Group, rest = rest[0], rest[1:]
	} else if len(rest) < 2 { // /api, /api/VERSION
		return discovery(method, parts)
	}
	k.Version, rest = rest[0], rest[1:]

	special := ""
	switch rest[0] {
	case "watch", "proxy":
		if len(rest) < 2 {
			return nil, malformed("%s with nothing to %s", path, rest[0])
		}
		special, rest = rest[0], rest[1:]
		k.Verb = special
	default:
		k.Verb = methodVerb(method)
	}

	if rest[0] == "namespaces" && len(rest) > 1 {
		k.Namespace = rest[1]
		if len(rest) > 2 && !namespaceSubresources[rest[2]] {
			rest = rest[2:]
		}
	}
	switch {
	case len(rest) >= 3 && special != "proxy":
		k.Subresource = rest[2]
		fallthrough
	case len(rest) >= 2:
		k.Name = rest[1]
		fallthrough
	default:
		k.Resource = rest[0]
	}
	// Parts past the subresource are the proxied path: meaningful only to
	// a proxy. Anywhere else the API server answers 404, and a firewall
	// must not guess what they were meant to name.
	if len(rest) > 3 && k.Subresource != "proxy" && special != "proxy" {
		return nil, malformed("%s: %q after subresource %s", path, strings.Join(rest[3:], "/"), k.Subresource)
	}
	for _, seg := range []string{k.Namespace, k.Name} {
		if strings.Contains(seg, "%") {
			return nil, malformed("%s: %q is not a valid name", path, seg)
		}
	}

	if k.Name == "" && k.Verb == "get" {
		k.Verb = "list"
		if w := query["watch"]; len(w) > 0 && !strings.EqualFold(w[0], "false") && w[0] != "0" {
			k.Verb = "watch"
		}
		// A list or watch of one object by field selector names it, as
		// the API server's authorizer sees it.
		if name, ok := selectsName(first(query["fieldSelector"])); ok {
			k.Name = name
		}
	}
	if k.Name == "" && k.Verb == "delete" {
		k.Verb = "deletecollection"
	}
	if special == "proxy" {
		k.Subresource = "proxy" // the old /proxy/ form reaches the same thing
	}
	if connectSubresources[k.Subresource] {
		k.Verb = "connect"
	}

	if len(query) > 0 {
		k.Params = query
	}
	if c := query["container"]; len(c) > 0 {
		k.Container = c[0]
	}
	if k.Subresource == "exec" || k.Subresource == "attach" {
		k.Command = query["command"]
	}
	return k, nil
}

// splitPath splits a path into its segments, ignoring leading and trailing
// slashes as the API server does. An empty segment inside is an error.
func splitPath(path string) ([]string, error) {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil, nil
	}
	parts := strings.Split(path, "/")
	for _, p := range parts {
		if p == "" {
			return nil, malformed("%s: empty path segment", path)
		}
		if p == "." || p == ".." {
			return nil, malformed("%s: dot segment", path)
		}
	}
	return parts, nil
}

// discovery is the answer for a path under /api or /apis too short to name
// a resource: the API's group and version lists.
func discovery(method string, parts []string) (*action.K8s, error) {
	if !readMethod(method) {
		return nil, nil // a write to a discovery path is no API request: an http action
	}
	k := &action.K8s{Verb: "get", Discovery: true}
	switch {
	case parts[0] == "api" && len(parts) == 2:
		k.Version = parts[1]
	case parts[0] == "apis" && len(parts) >= 2:
		k.Group = parts[1]
		if len(parts) == 3 {
			k.Version = parts[2]
		}
	}
	return k, nil
}

// isDiscovery reports whether a path outside /api and /apis is part of
// what clients read to learn the API: the server version and the OpenAPI
// documents.
func isDiscovery(parts []string) bool {
	switch {
	case len(parts) == 1 && parts[0] == "version":
		return true
	case len(parts) >= 1 && parts[0] == "openapi":
		return true
	}
	return false
}

func readMethod(method string) bool { return method == "GET" || method == "HEAD" }

// methodVerb is the API server's verb for a method, before the list,
// watch and deletecollection refinements.
func methodVerb(method string) string {
	switch method {
	case "POST":
		return "create"
	case "GET", "HEAD":
		return "get"
	case "PUT":
		return "update"
	case "PATCH":
		return "patch"
	case "DELETE":
		return "delete"
	}
	return ""
}

func first(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return vals[0]
}

// selectsName returns the name a field selector pins with metadata.name=X
// (or ==), as the API server reads it: terms are separated by unescaped
// commas, a backslash escapes the next character, and the terms are
// sorted before the first exact match is taken. A selector that does not
// parse, or a name that is not a valid path segment, names nothing, as
// there.
func selectsName(sel string) (string, bool) {
	if sel == "" {
		return "", false
	}
	terms := splitEscaped(sel, ',')
	slices.Sort(terms)
	name, found := "", false
	for _, term := range terms {
		if term == "" {
			continue
		}
		key, op, value := splitTerm(term)
		v, err := unescape(value)
		if op == "" || err != nil {
			return "", false
		}
		if !found && key == "metadata.name" && op != "!=" {
			name, found = v, true
		}
	}
	if !found || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/%") {
		return "", false
	}
	return name, true
}

// splitTerm splits a selector term at its first operator.
func splitTerm(term string) (key, op, value string) {
	for i := 0; i < len(term); i++ {
		for _, op := range []string{"!=", "==", "="} {
			if strings.HasPrefix(term[i:], op) {
				return term[:i], op, term[i+len(op):]
			}
		}
	}
	return term, "", ""
}

// splitEscaped splits s at each sep not preceded by a backslash escape.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape undoes a field selector value's escapes (\\, \, and \=); an
// unescaped , or = is an error, as for the API server.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' || s[i] == '=' {
			return "", errors.New("unescaped " + string(s[i]) + " in field selector value")
		}
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) || !strings.ContainsRune(`\,=`, rune(s[i])) {
			return "", errors.New("invalid escape in field selector")
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}
