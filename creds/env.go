package creds

import (
	"slices"
	"sort"
	"strings"
)

// secretSuffixes and secretNames are the well-known secret variables removed
// from the agent's environment unless env.keep lists them. A wrapped agent
// that inherits the caller's GITHUB_TOKEN would bypass injection entirely.
var (
	secretSuffixes = []string{
		"_TOKEN", "_API_KEY", "_APIKEY", "_SECRET", "_SECRET_KEY", "_ACCESS_KEY",
		"_PRIVATE_KEY", "_PASSWORD", "_PASSWD", "_CREDENTIALS", "_AUTH",
	}
	secretNames = []string{
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
		"PGPASSWORD", "MYSQL_PWD", "DATABASE_URL", "GOOGLE_APPLICATION_CREDENTIALS",
		"AZURE_CLIENT_SECRET", "HF_TOKEN", "SLACK_BOT_TOKEN", "NPM_TOKEN",
	}
)

// WellKnownSecret reports whether a variable name looks like a secret.
func WellKnownSecret(name string) bool {
	up := strings.ToUpper(name)
	if slices.Contains(secretNames, up) {
		return true
	}
	for _, s := range secretSuffixes {
		if strings.HasSuffix(up, s) {
			return true
		}
	}
	return false
}

// AgentEnv returns the agent's environment: env without every variable
// that is a credential's source, holds a secret's value, or has a
// well-known secret name not listed in keep; plus each credential's
// placeholder under its placeholder.env name. removed names what went.
func (s *Store) AgentEnv(env, keep []string) (out, removed []string) {
	sources := map[string]bool{}
	placeholders := map[string]string{}
	for _, n := range s.names {
		c := s.byName[n]
		if c.Config.From.Env != "" {
			sources[c.Config.From.Env] = true
		}
		if v := c.Config.Placeholder.Env; v != "" {
			placeholders[v] = c.Placeholder
		}
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if _, replaced := placeholders[name]; replaced {
			continue
		}
		if sources[name] || s.holdsSecret(value) || (WellKnownSecret(name) && !slices.Contains(keep, name)) {
			removed = append(removed, name)
			continue
		}
		out = append(out, kv)
	}
	names := make([]string, 0, len(placeholders))
	for name := range placeholders {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out = append(out, name+"="+placeholders[name])
	}
	sort.Strings(removed)
	return out, removed
}

// holdsSecret reports whether a value contains any secret.
func (s *Store) holdsSecret(value string) bool {
	for _, n := range s.names {
		if sec := s.byName[n].Secret; sec != "" && strings.Contains(value, sec) {
			return true
		}
	}
	return false
}
