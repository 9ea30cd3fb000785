package inspect

import (
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/inspect/clickhouse"
	"github.com/clawpatrol/clawpatrol/inspect/mysql"
	"github.com/clawpatrol/clawpatrol/inspect/postgres"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// postgresOptions are the Postgres inspector's options for a flow to a
// postgres endpoint. With a credential, clawpatrol terminates the agent's
// login (the agent presents the placeholder) and logs in upstream with the
// real secret; without one, the agent's own login is relayed.
func (r *Router) postgresOptions(t upstream.Target) postgres.Options {
	e := t.Endpoint
	o := postgres.Options{Gate: r.gate, Dialer: r.dialer, Logger: r.log, UpstreamTLS: e.UpstreamTLS,
		UpstreamRoots: r.upstreamRoots(e.Name), ServerName: t.Host, TextLimit: int(r.cfg.Limits.Body), Cancels: &r.pgCancels}
	if c, ok := r.creds.Get(e.Credential); ok {
		o.Login = &postgres.Login{Username: c.Config.Username, Password: c.Secret, Placeholder: c.Placeholder}
	}
	return o
}

// mysqlOptions are the MySQL inspector's options, with login offload as for
// Postgres.
func (r *Router) mysqlOptions(t upstream.Target) mysql.Options {
	e := t.Endpoint
	o := mysql.Options{Gate: r.gate, Dialer: r.dialer, Logger: r.log, UpstreamTLS: e.UpstreamTLS,
		UpstreamRoots: r.upstreamRoots(e.Name), TextLimit: int(r.cfg.Limits.Body)}
	if c, ok := r.creds.Get(e.Credential); ok {
		o.Login = &mysql.Login{Username: c.Config.Username, Password: c.Secret, Placeholder: c.Placeholder}
	}
	return o
}

// clickhouseOptions are the ClickHouse inspector's options: after an allow
// the agent's credentials are replaced by the configured login, as
// X-ClickHouse-User/Key or, when the credential injects Basic, as Basic.
func (r *Router) clickhouseOptions(t upstream.Target) clickhouse.Options {
	e := t.Endpoint
	o := clickhouse.Options{Gate: r.gate, Dialer: r.dialer, Logger: r.log, UpstreamTLS: e.UpstreamTLS,
		UpstreamRoots: r.upstreamRoots(e.Name), TextLimit: int(r.cfg.Limits.Body), Redact: r.creds.RedactingReader}
	if c, ok := r.creds.Get(e.Credential); ok {
		o.Login = &clickhouse.Login{Username: c.Config.Username, Password: c.Secret, Placeholder: c.Placeholder}
		if len(c.Config.Inject) > 0 {
			if in, err := creds.ParseInjection(c.Config.Inject); err == nil {
				o.BasicAuth = in.Basic
			}
		}
	}
	return o
}
