package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/approve"
)

// approveCommand lists the pending approvals of this user's running
// sessions, or answers one. It talks to each session over its approval
// socket in the runtime directory, which agents cannot see.
func approveCommand() *cli.Command {
	const usage = "clawpatrol approve [--json] [ID [--deny] [--reason TEXT]]"
	return &cli.Command{
		Name:      "approve",
		Usage:     "list pending approvals, or approve (or --deny) one",
		ArgsUsage: "[ID]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "list as a JSON array"},
			&cli.BoolFlag{Name: "deny", Usage: "deny instead of approving"},
			&cli.StringFlag{Name: "reason", Usage: "say why (`TEXT`), for the audit log and the agent"},
		},
		Action: func(c *cli.Context) error {
			// Flags may also follow the id, as the usage line writes them.
			a := approveArgs{json: c.Bool("json"), deny: c.Bool("deny"), reason: c.String("reason"), reasonSet: c.IsSet("reason")}
			if err := a.parse(c.Args().Slice()); err != nil {
				return fail(2, fmt.Errorf("approve: %w", err), "usage: "+usage)
			}
			dir := approve.RuntimeDir()
			ctx := c.Context
			if a.id == "" {
				if a.deny || a.reasonSet {
					return fail(2, errors.New("approve: --deny and --reason need an ID"), "usage: "+usage)
				}
				return listApprovals(ctx, c.App.Writer, c.App.ErrWriter, dir, a.json)
			}
			if a.json {
				return fail(2, errors.New("approve: --json lists; it takes no ID"), "usage: "+usage)
			}
			verdict, done := action.Allow, "approved"
			if a.deny {
				verdict, done = action.Deny, "denied"
			}
			p, err := approve.ResolveRemote(ctx, dir, a.id, verdict, a.reason)
			switch {
			case errors.Is(err, approve.ErrUnknown):
				return fail(1, fmt.Errorf("approve: no pending approval with id %s", a.id),
					"run `clawpatrol approve` to list the pending approvals of your running sessions")
			case errors.Is(err, approve.ErrAmbiguous):
				return fail(1, fmt.Errorf("approve: %s matches more than one pending approval", a.id), "give more of the id")
			case errors.Is(err, approve.ErrDecided):
				return fail(1, fmt.Errorf("approve: %s was already decided", p.ID))
			case errors.Is(err, approve.ErrNotAsked):
				return fail(1, fmt.Errorf("approve: %s waits for approver %s (type %s), which answers elsewhere", p.ID, p.Approver, p.Type),
					"`clawpatrol approve "+p.ID+" --deny` still denies it")
			case err != nil:
				return fail(1, fmt.Errorf("approve: %w", err))
			}
			fmt.Fprintf(c.App.ErrWriter, "clawpatrol: %s %s: %s\n", done, p.ID, p.Summary)
			return nil
		},
	}
}

// approveArgs are the command's flags and its one optional argument.
type approveArgs struct {
	json, deny, reasonSet bool
	reason, id            string
}

// parse reads what urfave/cli left after the first argument: the id and
// flags written after it.
func (a *approveArgs) parse(args []string) error {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch {
		case arg == "--":
			for _, rest := range args[i+1:] {
				if a.id != "" {
					return fmt.Errorf("unexpected argument %q", rest)
				}
				a.id = rest
			}
			return nil
		case !strings.HasPrefix(arg, "-") || arg == "-":
			if a.id != "" {
				return fmt.Errorf("unexpected argument %q", arg)
			}
			a.id = arg
		case name == "json" && !hasValue:
			a.json = true
		case name == "deny" && !hasValue:
			a.deny = true
		case name == "reason":
			if !hasValue {
				if i+1 >= len(args) {
					return errors.New("--reason needs a value")
				}
				i++
				value = args[i]
			}
			a.reason, a.reasonSet = value, true
		default:
			return fmt.Errorf("unknown flag %s", arg)
		}
	}
	return nil
}

// pendingJSON is one element of `approve --json`.
type pendingJSON struct {
	ID        string    `json:"id"`
	Summary   string    `json:"summary"`
	Rule      string    `json:"rule"`
	Reason    string    `json:"reason"`
	Session   string    `json:"session"`
	Approvers []string  `json:"approvers"`
	Approver  string    `json:"approver"`
	Deadline  time.Time `json:"deadline"`
}

func listApprovals(ctx context.Context, stdout, stderr io.Writer, dir string, asJSON bool) error {
	ps, err := approve.ListRemote(ctx, dir)
	if err != nil {
		return fail(1, fmt.Errorf("approve: %w", err))
	}
	if asJSON {
		out := make([]pendingJSON, 0, len(ps))
		for _, p := range ps {
			out = append(out, pendingJSON{ID: p.ID, Summary: p.Summary, Rule: p.Rule, Reason: p.Reason,
				Session: p.Session, Approvers: p.Approvers, Approver: p.Approver, Deadline: p.Deadline})
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	if len(ps) == 0 {
		fmt.Fprintln(stderr, "clawpatrol: no pending approvals")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tAPPROVER\tLEFT\tSUMMARY\tRULE")
	for _, p := range ps {
		left := time.Until(p.Deadline).Round(time.Second)
		if left < 0 {
			left = 0
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s: %s\n", p.ID, p.Approver, left, p.Summary, p.Rule, p.Reason)
	}
	return w.Flush()
}
