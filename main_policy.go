package main

import "github.com/urfave/cli/v2"

// policyCommands are the commands that work on policies and fixtures
// without running an agent: check, eval, test.
func policyCommands() []*cli.Command {
	return nil
}
