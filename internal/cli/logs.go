package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

func (s *session) logsCommand() *cobra.Command {
	var (
		dyno, ptype, source string
		tail, asJSON        bool
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
		enc := json.NewEncoder(s.stdout)
		err = c.StreamLogSession(cmd.Context(), sess.LogplexURL, func(line string) error {
			if asJSON {
				return enc.Encode(parseLogLine(line))
			}
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
	f.BoolVar(&asJSON, "json", false, "one JSON object per line: time, source, dyno, message")
	// The heroku CLI's other names for the same flags.
	_ = f.MarkHidden("dyno-name")
	_ = f.MarkHidden("ps")
	return cmd
}

// logLineJSON is a log line as --json prints it.
type logLineJSON struct {
	Time    string `json:"time"`
	Source  string `json:"source"`
	Dyno    string `json:"dyno,omitempty"`
	Message string `json:"message"`
}

// parseLogLine splits logplex's "TIME SOURCE[DYNO]: MESSAGE"; a line of
// another shape is all message.
func parseLogLine(line string) logLineJSON {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return logLineJSON{Message: line}
	}
	head, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return logLineJSON{Message: line}
	}
	out := logLineJSON{Time: ts, Source: head, Message: msg}
	if i := strings.IndexByte(head, '['); i > 0 && strings.HasSuffix(head, "]") {
		out.Source, out.Dyno = head[:i], head[i+1:len(head)-1]
	}
	return out
}
