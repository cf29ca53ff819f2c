package model

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// MaxProcfileSize bounds a Procfile; anything larger is surely not one.
const MaxProcfileSize = 64 << 10

// ParseProcfile reads a Procfile: one "type: command" per line, blank lines
// and #-comments allowed. It names the line of the first mistake it finds.
func ParseProcfile(data []byte) (map[string]string, error) {
	if len(data) > MaxProcfileSize {
		return nil, fmt.Errorf("Procfile is %d bytes; the limit is %d", len(data), MaxProcfileSize)
	}
	types := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxProcfileSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		typ, cmd, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("Procfile line %d: %q is not of the form \"type: command\"", n, line)
		}
		typ, cmd = strings.TrimSpace(typ), strings.TrimSpace(cmd)
		if err := ValidateProcessType(typ); err != nil {
			return nil, fmt.Errorf("Procfile line %d: %w", n, err)
		}
		if cmd == "" {
			return nil, fmt.Errorf("Procfile line %d: process type %q has no command", n, typ)
		}
		if _, dup := types[typ]; dup {
			return nil, fmt.Errorf("Procfile line %d: process type %q is declared twice", n, typ)
		}
		types[typ] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read Procfile: %w", err)
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("Procfile declares no process types: add a line such as \"web: python3 app.py\"")
	}
	return types, nil
}
