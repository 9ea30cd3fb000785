package main

// The commands that work on policies without running an agent: check, eval
// and test. What a command is asked for (check lines, a decision, fixture
// results) goes to stdout; errors follow main.go's rules on stderr.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/fixtures"
	"github.com/clawpatrol/clawpatrol/gate"
	"github.com/clawpatrol/clawpatrol/rego"
)

// policyCommands are the commands that work on policies and fixtures
// without running an agent: check, eval, test.
func policyCommands() []*cli.Command {
	return []*cli.Command{checkCommand(), evalCommand(), testCommand()}
}

func policyFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "policy", Aliases: []string{"p"}, Usage: "Rego file or directory `PATH`; repeatable; replaces policy.paths of the config"}
}

// policyPaths are the -p paths, else the config's policy.paths.
func policyPaths(c *cli.Context, cfg *config.Config) []string {
	if p := c.StringSlice("policy"); len(p) > 0 {
		return p
	}
	return cfg.Policy.Paths
}

// engineFor returns the engine that decides for cfg and -p: the Rego
// policy, or the built-in rule when no policy is configured, as `run` does.
func engineFor(c *cli.Context, cfg *config.Config) (gate.Engine, error) {
	paths := policyPaths(c, cfg)
	if len(paths) == 0 {
		return gate.Builtin{DefaultAllow: cfg.Policy.Default == "allow"}, nil
	}
	eng, err := rego.Load(paths, cfg)
	if err != nil {
		return nil, err
	}
	return eng, nil
}

func noArgs(c *cli.Context, usage string) error {
	if c.NArg() > 0 {
		return fail(2, fmt.Errorf("%s: unexpected argument %q", c.Command.Name, c.Args().First()), "usage: "+usage)
	}
	return nil
}

func checkCommand() *cli.Command {
	const usage = "clawpatrol check [-c FILE] [-p PATH]..."
	return &cli.Command{
		Name:  "check",
		Usage: "validate the config and compile the policies",
		Flags: []cli.Flag{configFlag(), policyFlag()},
		Action: func(c *cli.Context) error {
			if err := noArgs(c, usage); err != nil {
				return err
			}
			problems := 0
			report := func(ok bool, what, text string) {
				if ok {
					fmt.Printf("ok    %s: %s\n", what, text)
					return
				}
				problems++
				fmt.Printf("FAIL  %s: %s\n", what, strings.ReplaceAll(text, "\n", "\n      "))
			}
			cfg, err := loadConfig(c)
			switch {
			case err != nil:
				report(false, "config", err.Error())
				cfg = config.Default()
			case cfg.File == "":
				report(true, "config", "none found, built-in defaults (default-deny, no endpoints)")
			default:
				report(true, "config", cfg.File)
			}
			paths := policyPaths(c, cfg)
			if len(paths) == 0 {
				report(true, "policy", "none; built-in rule: an action to a configured endpoint is allowed, anything else gets policy.default")
			} else if eng, err := rego.Load(paths, cfg); err != nil {
				report(false, "policy", err.Error())
			} else {
				report(true, "policy", fmt.Sprintf("%d file(s), %s", len(eng.Files()), eng.Digest()))
				if t, err := rego.LoadTests(paths); err != nil {
					report(false, "tests", err.Error())
				} else if t.Count() > 0 {
					report(true, "tests", fmt.Sprintf("%d Rego test(s) compile", t.Count()))
				}
			}
			if problems > 0 {
				return fail(1, fmt.Errorf("check: %d problem(s) found", problems))
			}
			return nil
		},
	}
}

func evalCommand() *cli.Command {
	const usage = "clawpatrol eval [-c FILE] [-p PATH]... [--input FILE|-]"
	return &cli.Command{
		Name:  "eval",
		Usage: "decide one action (JSON, or a fixture) and print the decision as JSON",
		Flags: []cli.Flag{configFlag(), policyFlag(),
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Value: "-", Usage: "the action as JSON in `FILE`, or - for standard input"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c, usage); err != nil {
				return err
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return fail(1, err, "run `clawpatrol check` to see every problem in the config")
			}
			eng, err := engineFor(c, cfg)
			if err != nil {
				return fail(1, err)
			}
			a, err := readAction(c.String("input"))
			if err != nil {
				return fail(1, err, "the input is one action as SPEC §5 shows it, or a fixture file")
			}
			d := eng.Decide(c.Context, a)
			out, err := json.MarshalIndent(d, "", "  ")
			if err != nil {
				return fail(1, err)
			}
			fmt.Printf("%s\n", out)
			return nil
		},
	}
}

// readAction reads an action from path ("-": standard input). A fixture
// file works too: its action is taken and its expectation ignored.
func readAction(path string) (*action.Action, error) {
	var data []byte
	var err error
	name := path
	if path == "-" {
		name = "standard input"
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) == nil && probe["action"] != nil && probe["protocol"] == nil {
		f, err := fixtures.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return f.Action, nil
	}
	a, err := fixtures.ParseAction(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

func testCommand() *cli.Command {
	const usage = "clawpatrol test [-c FILE] [-p PATH]... FIXTURE|DIR..."
	return &cli.Command{
		Name:      "test",
		Usage:     "replay fixtures against the policy and run its Rego tests",
		ArgsUsage: "FIXTURE|DIR...",
		Flags:     []cli.Flag{configFlag(), policyFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return fail(2, errors.New("test: no fixtures given"), "usage: "+usage)
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return fail(2, err, "run `clawpatrol check` to see every problem in the config")
			}
			eng, err := engineFor(c, cfg)
			if err != nil {
				return fail(1, err)
			}
			passed, failed := 0, 0
			for _, arg := range c.Args().Slice() {
				p, f, err := fixtures.Run(c.Context, eng, []string{arg}, os.Stdout)
				if err != nil {
					// An unreadable path counts as a failed fixture.
					fmt.Printf("FAIL %s\n    error: %v\n", arg, err)
					f++
				}
				passed, failed = passed+p, failed+f
			}
			skipped := 0
			if paths := policyPaths(c, cfg); len(paths) > 0 {
				tests, err := rego.LoadTests(paths)
				if err != nil {
					return fail(1, err)
				}
				results, err := tests.Run(c.Context)
				if err != nil {
					return fail(1, err)
				}
				for _, r := range results {
					switch {
					case r.Skip:
						fmt.Printf("SKIP %s\n", r)
						skipped++
						continue
					case r.Pass:
						fmt.Printf("ok   %s\n", r)
						passed++
						continue
					}
					failed++
					fmt.Printf("FAIL %s\n    error: %s\n", r, strings.ReplaceAll(r.Detail, "\n", "\n      "))
					if out := strings.TrimRight(r.Output, "\n"); out != "" {
						fmt.Printf("    output:\n      %s\n", strings.ReplaceAll(out, "\n", "\n      "))
					}
				}
			}
			summary := fmt.Sprintf("%d passed, %d failed", passed, failed)
			if skipped > 0 {
				summary += fmt.Sprintf(", %d skipped", skipped)
			}
			fmt.Println(summary)
			if failed > 0 {
				return fail(1, fmt.Errorf("test: %d of %d failed", failed, passed+failed))
			}
			return nil
		},
	}
}
