// Package session runs one `clawpatrol run`: it puts together the config,
// the policy engine, the audit log, the agent's namespaces, the netstack and
// the inspectors, and tears them down in order when the agent exits.
package session

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/audit"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/dashboard"
	"github.com/clawpatrol/clawpatrol/fixtures"
	"github.com/clawpatrol/clawpatrol/gate"
	"github.com/clawpatrol/clawpatrol/inspect"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/netstack"
	"github.com/clawpatrol/clawpatrol/run"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

// Version is the program version, set by main.
var Version = "dev"

// drain is how long flows get to finish after the agent exits.
const drain = 2 * time.Second

// Options are the inputs of one run.
type Options struct {
	Config    *config.Config
	Command   []string
	AuditPath string // overrides audit.path
	Monitor   bool
	// NonInteractive denies at once an action that needs a human approver.
	NonInteractive bool
	// LoadEngine loads and compiles the policy. It runs while the agent's
	// namespaces are being built, and must finish before the agent starts;
	// nil means the built-in rule. It returns the engine and its digest.
	LoadEngine func() (gate.Engine, string, error)
	RecordDir  string // run --record: write every action as a fixture here
	// Dashboard is the address to serve the dashboard on ("": none);
	// DashboardAllowRemote permits one that is not loopback.
	Dashboard            string
	DashboardAllowRemote bool
	Logger               *zap.Logger
}

// Error is a failure of clawpatrol itself (exit 125), with hints for the user.
type Error struct {
	Err   error
	Hints []string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Run runs the agent under clawpatrol and returns how it ended. An error
// means the agent never started.
func Run(o Options) (run.Status, error) {
	log := o.Logger
	cfg := o.Config
	cwd, err := os.Getwd()
	if err != nil {
		return run.Status{}, &Error{Err: fmt.Errorf("working directory: %w", err)}
	}
	agent, err := run.Spawn()
	if err != nil {
		return run.Status{}, &Error{Err: err, Hints: run.Hints(err)}
	}
	policy := loadPolicy(o)
	started := false
	defer func() {
		if !started {
			agent.Abort()
		}
	}()
	auditPath := o.AuditPath
	if auditPath == "" {
		auditPath = cfg.Audit.Path
	}
	if auditPath == "" {
		auditPath = filepath.Join(config.XDGDir("XDG_STATE_HOME", ".local/state"), "clawpatrol", "audit.jsonl")
	}
	auditLog, err := audit.Open(auditPath, func(err error) {
		fmt.Fprintf(os.Stderr, "clawpatrol: error: %v; every further action is denied\n", err)
	})
	if err != nil {
		return run.Status{}, &Error{Err: err, Hints: []string{"pass --audit FILE with a writable path, or set audit.path in the config"}}
	}
	defer auditLog.Close()

	// Secrets are read only now that we are non-dumpable (run.Spawn).
	store, err := creds.Load(context.Background(), cfg, os.LookupEnv)
	if err != nil {
		return run.Status{}, &Error{Err: err, Hints: []string{"every credential's source must give a non-empty secret before the agent starts"}}
	}
	var recorder gate.Recorder
	if o.RecordDir != "" {
		rec, err := fixtures.NewRecorder(o.RecordDir, store.Secrets()...)
		if err != nil {
			return run.Status{}, &Error{Err: err}
		}
		rec.Redact = func(a *action.Action) *action.Action { return store.RedactAction(a, creds.BodiesFull) }
		recorder = rec
	}

	ca, err := tlsca.Load("")
	if err != nil {
		return run.Status{}, &Error{Err: err, Hints: tlsca.Hints(err)}
	}

	id := gate.NewID()
	dir, err := sessionDir(id)
	if err != nil {
		return run.Status{}, &Error{Err: err}
	}
	defer os.RemoveAll(dir)
	spec, err := agentSpec(o, store, ca, dir, cwd, auditPath)
	if err != nil {
		return run.Status{}, &Error{Err: err}
	}
	// The dashboard listens before approvals exist: webhooks are told its
	// callback URL.
	var dash *dashboard.Server
	var callbackURL string
	if o.Dashboard != "" {
		if err := policy.wait(); err != nil {
			return run.Status{}, err
		}
		dash, err = dashboard.Listen(dashboard.Options{Addr: o.Dashboard, AllowRemote: o.DashboardAllowRemote, Logger: log,
			Session: dashboard.SessionInfo{ID: id, Command: redactArgs(store, o.Command), PID: os.Getpid(), Config: cfg.File,
				PolicyDigest: policy.digest, Monitor: o.Monitor}})
		if err != nil {
			return run.Status{}, &Error{Err: err, Hints: dashboard.Hints(err)}
		}
		defer dash.Close()
		callbackURL = dash.CallbackURL()
	}
	redact := func(a *action.Action) *action.Action { return store.RedactAction(a, cfg.Audit.Bodies) }
	approvals, err := approve.New(cfg, approve.Options{
		Session: id, NonInteractive: o.NonInteractive, Logger: log, Redact: redact, Summary: gate.Summary, CallbackURL: callbackURL,
		Secret: func(name string) (string, error) {
			c, ok := store.Get(name)
			if !ok {
				return "", fmt.Errorf("no credential named %q", name)
			}
			return c.Secret, nil
		},
	})
	if err != nil {
		return run.Status{}, &Error{Err: err}
	}
	defer approvals.Close()
	g := &gate.Gate{Log: auditLog, Session: id, Monitor: o.Monitor, Recorder: recorder, Logger: log,
		Creds: store, Bodies: cfg.Audit.Bodies, Approvals: approvals, Agent: &action.Agent{Command: o.Command}}
	if dash != nil {
		dash.Attach(approvals)
		g.Observer = dash
	}

	tun, err := agent.Setup(spec)
	if err != nil {
		started = true // Setup already took the helper down
		return run.Status{}, &Error{Err: err, Hints: run.Hints(err)}
	}
	g.Agent.PID = agent.PID()
	router, err := inspect.NewRouter(cfg, g, upstream.NewDialer(), ca, store, log)
	if err != nil {
		return run.Status{}, &Error{Err: err}
	}
	stack, err := netstack.New(tun, router, log)
	if err != nil {
		return run.Status{}, &Error{Err: err}
	}
	if err := policy.wait(); err != nil {
		stack.Close(0)
		return run.Status{}, err
	}
	g.Engine = policy.engine
	if err := auditLog.Start(audit.SessionStart{Session: id, Version: Version, Config: cfg.File, ConfigDigest: cfg.Digest,
		PolicyDigest: policy.digest, Command: redactArgs(store, o.Command), Monitor: o.Monitor}); err != nil {
		stack.Close(0)
		return run.Status{}, &Error{Err: err}
	}
	if dash != nil {
		// Once, before the agent owns the terminal.
		fmt.Fprintf(os.Stderr, "clawpatrol: dashboard: %s\n", dash.Banner())
	}
	started = true
	if err := agent.Go(); err != nil {
		agent.Abort()
		stack.Close(0)
		return run.Status{}, &Error{Err: fmt.Errorf("start agent: %w", err)}
	}
	status := agent.Wait()
	stack.Close(drain)
	if dash != nil {
		dash.End(status.ExitCode())
	}
	if err := auditLog.End(id, status.ExitCode()); err != nil {
		log.Error("audit", zap.Error(err))
	}
	return status, nil
}

// sessionDir makes a private directory for the files the agent's mounts
// come from, under clawpatrol's runtime directory (masked inside the agent's
// namespace). Its agent/ subdirectory stays visible to the agent, read-only.
func sessionDir(id string) (string, error) {
	root := approve.RuntimeDir()
	if err := approve.PrivateDir(root); err != nil {
		return "", fmt.Errorf("session dir: %w", err)
	}
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("session dir: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "agent"), 0o755); err != nil {
		return "", fmt.Errorf("session dir: %w", err)
	}
	return dir, nil
}

// redactArgs is the command line as the audit log and the dashboard show
// it: a secret typed on it is redacted.
func redactArgs(store *creds.Store, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = store.Redact(a)
	}
	return out
}

// loadingPolicy is the policy compiling in the background.
type loadingPolicy struct {
	done   chan struct{}
	engine gate.Engine
	digest string
	err    error
}

// loadPolicy starts compiling the policy while the namespaces are built.
func loadPolicy(o Options) *loadingPolicy {
	p := &loadingPolicy{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if o.LoadEngine == nil {
			p.engine = gate.Builtin{DefaultAllow: o.Config.Policy.Default == "allow"}
			return
		}
		p.engine, p.digest, p.err = o.LoadEngine()
	}()
	return p
}

// wait returns once the policy is compiled; an error stops the run.
func (p *loadingPolicy) wait() error {
	<-p.done
	if p.err != nil {
		return &Error{Err: p.err, Hints: []string{"run `clawpatrol check` to see every problem in the policy"}}
	}
	return nil
}
