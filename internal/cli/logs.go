package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

func (s *session) logsCommand() *cobra.Command {
	var (
		dyno, ptype, source string
		tail                bool
		lines               int
	)
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "show an app's logs (--tail to follow them)",
		Args:  cobra.NoArgs,
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if source != "" && source != "app" && source != "heroku" {
			return fmt.Errorf("--source %q is unknown: use app or heroku", source)
		}
		if lines < 0 {
			return errors.New("--num must be 0 or more")
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		opts := client.LogSessionOpts{Lines: lines, Tail: tail, Source: source, Dyno: dyno}
		if opts.Dyno == "" {
			opts.Dyno = ptype
		}
		sess, err := c.CreateLogSession(cmd.Context(), name, opts)
		if err != nil {
			return err
		}
		err = c.StreamLogSession(cmd.Context(), sess.LogplexURL, func(line string) error {
			_, err := fmt.Fprintln(s.stdout, line)
			return err
		})
		// Ctrl-C is how a tail ends.
		if tail && errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	f := cmd.Flags()
	f.IntVarP(&lines, "num", "n", 100, "number of lines to show")
	f.BoolVarP(&tail, "tail", "t", false, "keep showing new lines until Ctrl-C")
	f.StringVarP(&dyno, "dyno", "d", "", "only this dyno (web.1) or process type (web)")
	f.StringVar(&dyno, "dyno-name", "", "same as --dyno")
	f.StringVarP(&ptype, "process-type", "p", "", "only this process type")
	f.StringVar(&ptype, "ps", "", "same as --process-type")
	f.StringVarP(&source, "source", "s", "", "only this source: app or heroku")
	// The heroku CLI's other names for the same flags.
	_ = f.MarkHidden("dyno-name")
	_ = f.MarkHidden("ps")
	return cmd
}
