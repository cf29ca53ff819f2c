package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// logFlags adds --verbose and --log-format to fs; the returned function
// makes the logger they ask for once fs is parsed. Every role logs with
// the same keys (role, app, dyno, host, err, ...); json suits a log
// shipper, text a terminal.
func logFlags(fs *flag.FlagSet) func(w io.Writer) (*slog.Logger, error) {
	verbose := fs.Bool("verbose", false, "debug logging")
	format := fs.String("log-format", "text", "log format: text (key=value) or json (one object a line)")
	return func(w io.Writer) (*slog.Logger, error) { return newLogger(w, *format, *verbose) }
}

// newLogger makes a structured logger writing to w in format (text or
// json), at debug level when verbose.
func newLogger(w io.Writer, format string, verbose bool) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if verbose {
		opts.Level = slog.LevelDebug
	}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
