package inspect

import (
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
