// Command clawpatrol is a firewall for AI agents: it runs an agent in its
// own network namespace and decides every action it takes on the wire.
//
// Output rules (after age): diagnostics go to stderr as "clawpatrol: ...",
// errors as "clawpatrol: error: ..." followed by "clawpatrol: hint: ..."
// lines that say what to do; lower-case, no periods at the end. Nothing is
// printed while the agent runs except a fatal error.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/gate"
	"github.com/clawpatrol/clawpatrol/run"
	"github.com/clawpatrol/clawpatrol/session"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit status and optional hints out of a command.
type exitError struct {
	code  int
	err   error
	hints []string
}

func (e *exitError) Error() string { return e.err.Error() }

func fail(code int, err error, hints ...string) error {
	return &exitError{code: code, err: err, hints: hints}
}

func main() {
	if run.IsHelper() {
		run.Helper() // never returns
	}
	session.Version = version
	app := &cli.App{
		Name:            "clawpatrol",
		Usage:           "a firewall for AI agents",
		HideHelpCommand: true,
		Commands: append([]*cli.Command{
			runCommand(),
			approveCommand(),
			caCommand(),
			doctorCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Println("clawpatrol", version)
					return nil
				},
			},
		}, policyCommands()...),
		ExitErrHandler: func(*cli.Context, error) {}, // we print errors ourselves
	}
	err := app.Run(os.Args)
	if err == nil {
		return
	}
	code := 2 // usage errors from the flag parser
	var e *exitError
	if errors.As(err, &e) {
		code = e.code
	}
	fmt.Fprintf(os.Stderr, "clawpatrol: error: %v\n", err)
	if e != nil {
		for _, h := range e.hints {
			fmt.Fprintf(os.Stderr, "clawpatrol: hint: %s\n", h)
		}
	}
	os.Exit(code)
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config `FILE` (default ./clawpatrol.yaml, else $XDG_CONFIG_HOME/clawpatrol/config.yaml, else built-in defaults)"}
}

// loadConfig loads the config named by -c, or found by SPEC's search order.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := c.String("config")
	if path == "" {
		path = config.Find()
	}
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run COMMAND with every action it takes decided by policy",
		ArgsUsage: "-- COMMAND [ARGS...]",
		Flags: []cli.Flag{
			configFlag(),
			policyFlag(),
			&cli.StringFlag{Name: "audit", Usage: "audit log `FILE` (JSONL)"},
			&cli.StringFlag{Name: "record", Usage: "also write every action as a fixture file into `DIR`"},
			&cli.BoolFlag{Name: "monitor", Usage: "decide and log every action, but never block"},
			&cli.BoolFlag{Name: "non-interactive", Usage: "an action that needs a human approver is denied at once"},
			&cli.StringFlag{Name: "dashboard", Usage: "serve the local dashboard on `ADDR` (default dashboard.listen; off when unset)"},
			&cli.BoolFlag{Name: "dashboard-allow-remote", Usage: "let --dashboard listen on an address that is not loopback"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug|info|warn|error for diagnostics on stderr"},
		},
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			if len(args) == 0 {
				return fail(125, errors.New("run: no command given"), "usage: clawpatrol run [flags] -- COMMAND [ARGS...]")
			}
			log, err := newLogger(c.String("log-level"))
			if err != nil {
				return fail(125, err)
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return fail(125, err, "run `clawpatrol check` to see every problem in the config")
			}
			opts := session.Options{Config: cfg, Command: args, AuditPath: c.String("audit"), Monitor: c.Bool("monitor"),
				NonInteractive: c.Bool("non-interactive"), Logger: log}
			opts.LoadEngine = func() (gate.Engine, string, error) {
				engine, err := engineFor(c, cfg)
				if err != nil {
					return nil, "", err
				}
				digest := ""
				if d, ok := engine.(interface{ Digest() string }); ok {
					digest = d.Digest()
				}
				return engine, digest, nil
			}
			opts.RecordDir = c.String("record")
			opts.Dashboard, opts.DashboardAllowRemote = c.String("dashboard"), c.Bool("dashboard-allow-remote")
			if opts.Dashboard == "" {
				opts.Dashboard = cfg.Dashboard.Listen
			}
			status, err := session.Run(opts)
			if err != nil {
				var se *session.Error
				if errors.As(err, &se) {
					return fail(125, err, se.Hints...)
				}
				return fail(125, err)
			}
			log.Sync()
			run.ReRaise(status)
			return nil
		},
	}
}

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "print the path of clawpatrol's CA certificate (or with --pem, the certificate)",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "pem", Usage: "print the certificate in PEM"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fail(2, fmt.Errorf("ca: unexpected argument %q", c.Args().First()), "usage: clawpatrol ca [--pem]")
			}
			ca, err := tlsca.Load("")
			if err != nil {
				return fail(1, err, tlsca.Hints(err)...)
			}
			if c.Bool("pem") {
				os.Stdout.Write(ca.CertPEM())
				return nil
			}
			fmt.Println(ca.Path())
			return nil
		},
	}
}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this host can run agents; print fixes",
		Flags: []cli.Flag{configFlag()},
		Action: func(c *cli.Context) error {
			problems := 0
			for _, ch := range run.Doctor() {
				if ch.OK {
					fmt.Printf("ok    %s\n", ch.Name)
					continue
				}
				problems++
				fmt.Printf("FAIL  %s: %s\n", ch.Name, ch.Err)
				for _, h := range ch.Hints {
					fmt.Printf("      hint: %s\n", h)
				}
			}
			path := c.String("config")
			if path == "" {
				path = config.Find()
			}
			if path == "" {
				fmt.Println("ok    config: none found, built-in defaults (default-deny, no endpoints)")
			} else if _, err := config.Load(path); err != nil {
				problems++
				fmt.Printf("FAIL  config: %s\n", strings.ReplaceAll(err.Error(), "\n", "\n      "))
			} else {
				fmt.Printf("ok    config: %s\n", path)
			}
			if problems > 0 {
				return fail(1, fmt.Errorf("doctor: %d problem(s) found", problems))
			}
			return nil
		},
	}
}

// newLogger returns the diagnostics logger: plain lines on stderr.
func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey, enc.CallerKey, enc.StacktraceKey = "", "", ""
	enc.NameKey = ""
	enc.EncodeLevel = func(l zapcore.Level, e zapcore.PrimitiveArrayEncoder) {
		e.AppendString("clawpatrol: " + l.String() + ":")
	}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), lvl)
	return zap.New(core), nil
}
