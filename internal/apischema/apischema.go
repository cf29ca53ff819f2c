// Package apischema checks Platform API responses against Dyno's schema
// (apiserver.Schema, served at GET /schema): a body is valid when it
// matches the definition of its resource (every property the definition
// requires present, each of the right type and format) and every timestamp
// in it is RFC 3339 in UTC. Tests use it to hold the API to Heroku's
// shapes.
package apischema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURL is where the schema is registered with the compiler; it is
// never fetched.
const schemaURL = "https://dyno.invalid/schema.json"

// Validator validates bodies against one schema's definitions.
type Validator struct {
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

// New reads a schema (Dyno's, or Heroku's). The documents are draft-04
// hyper-schemas; their $schema names a meta-schema nobody can fetch, so it
// is dropped and draft 4 assumed.
func New(schema []byte) (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("read schema: not a JSON object")
	}
	delete(root, "id") // a relative id would move the base URL
	dropMetaSchemas(root)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	c.AssertFormat()
	c.UseRegexpEngine(compileRegexp)
	if err := c.AddResource(schemaURL, root); err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	return &Validator{compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
}

// dropMetaSchemas removes "$schema" from every schema object.
func dropMetaSchemas(v any) {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "$schema")
		for _, e := range x {
			dropMetaSchemas(e)
		}
	case []any:
		for _, e := range x {
			dropMetaSchemas(e)
		}
	}
}

func (v *Validator) definition(resource string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.compiled[resource]; ok {
		return s, nil
	}
	s, err := v.compiler.Compile(schemaURL + "#/definitions/" + resource)
	if err != nil {
		return nil, fmt.Errorf("compile definition %q: %w", resource, err)
	}
	v.compiled[resource] = s
	return s, nil
}

// Validate checks body, a JSON object or an array of objects, against the
// schema's definitions/<resource>.
func (v *Validator) Validate(resource string, body []byte) error {
	s, err := v.definition(resource)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: body is not JSON: %w", resource, err)
	}
	items := []any{doc}
	if list, ok := doc.([]any); ok {
		items = list
	}
	for i, item := range items {
		if err := s.Validate(item); err != nil {
			return fmt.Errorf("%s[%d] does not match the schema: %w\nbody: %s", resource, i, err, compact(body))
		}
		if err := utcOnly(item, ""); err != nil {
			return fmt.Errorf("%s[%d]: %w", resource, i, err)
		}
	}
	return nil
}

// compileRegexp is Go's regexp, except for patterns it cannot parse
// (Heroku's space name uses a lookahead, "-(?!-)"): those match anything,
// so the property goes unchecked. Dyno never sends a space.
func compileRegexp(pattern string) (jsonschema.Regexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return anything(pattern), nil
	}
	return re, nil
}

type anything string

func (a anything) String() string          { return string(a) }
func (a anything) MatchString(string) bool { return true }

var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`)

// utcOnly reports a timestamp that is not written in UTC ("...Z").
func utcOnly(v any, path string) error {
	switch x := v.(type) {
	case string:
		if timestampRE.MatchString(x) && x[len(x)-1] != 'Z' {
			return fmt.Errorf("%s: timestamp %q is not in UTC", path, x)
		}
	case map[string]any:
		for k, e := range x {
			if err := utcOnly(e, path+"/"+k); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := utcOnly(e, fmt.Sprintf("%s/%d", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func compact(body []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, body) != nil {
		return string(body)
	}
	if b.Len() > 2000 {
		return b.String()[:2000] + "..."
	}
	return b.String()
}
