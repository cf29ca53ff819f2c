// Command schemagen writes Dyno's Platform API schema (served at GET
// /schema) from Heroku's: the definitions of the resources Dyno serves,
// copied as they are, with only the links Dyno serves and a "required"
// list naming every property (Dyno always sends them all); the
// definitions those reference, without links; and Dyno's own resources
// from dyno.json. Run it with `go generate ./internal/apiserver/`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
)

// served names, for each of Heroku's resources Dyno serves, the titles of
// its links that Dyno serves too.
var served = map[string][]string{
	"account":                {"Info"},
	"app":                    {"Create", "Delete", "Info", "List", "List Owned and Collaborated", "Update"},
	"build":                  {"Create", "Info", "List"},
	"buildpack-installation": {"Update", "List"},
	"collaborator":           {"Create", "Delete", "Info", "List"},
	"config-var":             {"Info for App", "Info for App Release", "Update"},
	"domain":                 {"Create", "Delete", "Info", "List"},
	"dyno":                   {"Create", "Restart", "Restart formation", "Restart all", "Stop", "Stop formation", "Info", "List"},
	"dyno-size":              {"Info", "List"},
	"formation":              {"Info", "List", "Batch Update", "Update"},
	"log-drain":              {"Create", "Delete", "Info", "List"},
	"log-session":            {"Create"},
	"oauth-authorization":    {"Create", "Delete", "Info", "List"},
	"rate-limit":             {"Info"},
	"release":                {"Info", "List", "Rollback"},
	"slug":                   {"Info"},
	"source":                 {"Create", "Create - Deprecated"},
	"sni-endpoint":           {"Create", "Delete", "Info", "List", "Update"},
}

func main() {
	in := flag.String("heroku", "", "Heroku's schema.json")
	extra := flag.String("dyno", "schemagen/dyno.json", "Dyno's own definitions")
	out := flag.String("out", "schema.json", "where to write Dyno's schema")
	flag.Parse()
	if err := run(*in, *extra, *out); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

type object = map[string]any

// fixups correct known typos in Heroku's schema: a $ref that points
// nowhere (formation's dyno_size identity).
var fixups = strings.NewReplacer(`"#/definitions/dyno_size/`, `"#/definitions/dyno-size/`)

func readJSON(path string) (object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	data = []byte(fixups.Replace(string(data)))
	var v object
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func run(in, extra, out string) error {
	heroku, err := readJSON(in)
	if err != nil {
		return err
	}
	dyno, err := readJSON(extra)
	if err != nil {
		return err
	}
	defs := heroku["definitions"].(object)
	outDefs := object{}
	for name, titles := range served {
		def, ok := defs[name].(object)
		if !ok {
			return fmt.Errorf("heroku's schema has no definition %q", name)
		}
		def = maps.Clone(def)
		var links []any
		for _, l := range def["links"].([]any) {
			if slices.Contains(titles, l.(object)["title"].(string)) {
				links = append(links, l)
			}
		}
		if len(links) != len(titles) {
			return fmt.Errorf("definition %q: found %d of the links %q", name, len(links), titles)
		}
		def["links"] = links
		if props, ok := def["properties"].(object); ok && len(props) > 0 {
			def["required"] = slices.Sorted(maps.Keys(props))
		}
		outDefs[name] = def
	}
	// The definitions the served ones refer to, without their links.
	for queue := slices.Sorted(maps.Keys(outDefs)); len(queue) > 0; {
		name := queue[0]
		queue = queue[1:]
		for _, ref := range refs(outDefs[name], nil) {
			target, ok := strings.CutPrefix(ref, "#/definitions/")
			if !ok {
				return fmt.Errorf("definition %q: unexpected $ref %q", name, ref)
			}
			target, _, _ = strings.Cut(target, "/")
			if _, done := outDefs[target]; done {
				continue
			}
			def, ok := defs[target].(object)
			if !ok {
				return fmt.Errorf("definition %q refers to missing %q", name, target)
			}
			def = maps.Clone(def)
			delete(def, "links")
			outDefs[target] = def
			queue = append(queue, target)
		}
	}
	// Keywords Dyno cannot meet for a reason of its own, dropped and listed.
	relaxed, _ := dyno["relax"].([]any)
	for _, r := range relaxed {
		ptr := r.(object)["pointer"].(string)
		if err := drop(object{"definitions": outDefs}, ptr); err != nil {
			return err
		}
	}
	for name, def := range dyno["definitions"].(object) {
		if _, clash := outDefs[name]; clash {
			return fmt.Errorf("dyno.json redefines %q", name)
		}
		outDefs[name] = def
	}
	props := object{}
	for name := range outDefs {
		props[name] = object{"$ref": "#/definitions/" + name}
	}
	var rootLinks []any
	for _, l := range heroku["links"].([]any) {
		if l.(object)["href"] == "/schema" {
			rootLinks = append(rootLinks, l)
		}
	}
	schema := object{
		"$schema":     heroku["$schema"],
		"id":          "dyno-platform-api#",
		"title":       "Dyno Platform API",
		"description": dyno["description"],
		"type":        []any{"object"},
		"definitions": outDefs,
		"properties":  props,
		"links":       rootLinks,
		// Not a JSON Schema keyword: what Dyno's definitions drop of Heroku's.
		"x-dyno-relaxed": relaxed,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(schema); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// drop deletes the keyword at a JSON pointer ("/definitions/app/...").
func drop(doc object, ptr string) error {
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	cur := doc
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(object)
		if !ok {
			return fmt.Errorf("relax %s: no %q", ptr, p)
		}
		cur = next
	}
	last := parts[len(parts)-1]
	if _, ok := cur[last]; !ok {
		return fmt.Errorf("relax %s: no %q", ptr, last)
	}
	delete(cur, last)
	return nil
}

// refs appends every $ref under v to acc.
func refs(v any, acc []string) []string {
	switch x := v.(type) {
	case object:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := x[k].(string); ok && k == "$ref" {
				acc = append(acc, s)
				continue
			}
			acc = refs(x[k], acc)
		}
	case []any:
		for _, e := range x {
			acc = refs(e, acc)
		}
	}
	return acc
}
