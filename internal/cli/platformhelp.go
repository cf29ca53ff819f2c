package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// platformCommand only documents one of the dyno binary's own verbs (agent,
// router) in the help, as serverCommand does for `dyno server`: the binary
// runs them before the CLI sees its arguments, with the standard library's
// flags, so this entry is reached only through the CLI package itself.
func platformCommand(verb, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:                verb + " [flags]",
		Short:              short,
		Long:               long,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("`dyno " + verb + "` is run by the dyno binary itself, not by the CLI: start it with the dyno command")
		},
	}
}

// platformCommands are the help entries of `dyno agent` and `dyno router`.
func platformCommands() []*cobra.Command {
	return []*cobra.Command{
		platformCommand("agent",
			"join this machine to a platform as a dyno host (`dyno agent --help` lists its flags)",
			"dyno agent runs a host agent that joins the control plane of a `dyno server` elsewhere and\n"+
				"runs dynos on this machine. It needs the join file that server wrote (DATA/agent-credentials)\n"+
				"and the address routers reach this host at:\n\n"+
				"  dyno agent --credentials agent-credentials --advertise 10.0.0.5\n\n"+
				"`dyno agent --help` lists all its flags."),
		platformCommand("router",
			"run an extra HTTP router that follows a platform through NATS (`dyno router --help` lists its flags)",
			"dyno router runs a stateless HTTP router for apps, apart from the one in `dyno server`: it\n"+
				"follows the platform's route table through NATS, so any number may run.\n\n"+
				"  dyno router --nats-url nats://10.0.0.1:4222 --credentials nats-password --domain example.com\n\n"+
				"`dyno router --help` lists all its flags."),
	}
}
