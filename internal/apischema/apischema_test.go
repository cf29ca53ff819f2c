package apischema

import (
	"strings"
	"testing"
)

// schema is a small hyper-schema in Heroku's style: a definition whose
// properties refer to its own definitions, a format, a lookahead pattern.
const schema = `{
  "$schema": "http://interagent.github.io/interagent-hyper-schema",
  "id": "relative#",
  "definitions": {
    "thing": {
      "$schema": "http://json-schema.org/draft-04/hyper-schema",
      "type": ["object"],
      "definitions": {
        "id": {"type": ["string"], "format": "uuid"},
        "name": {"type": ["string"], "pattern": "^[a-z](?:[a-z]|-(?!-))+$"},
        "created_at": {"type": ["string"], "format": "date-time"},
        "team": {"type": ["null", "object"]}
      },
      "properties": {
        "id": {"$ref": "#/definitions/thing/definitions/id"},
        "name": {"$ref": "#/definitions/thing/definitions/name"},
        "created_at": {"$ref": "#/definitions/thing/definitions/created_at"},
        "team": {"$ref": "#/definitions/thing/definitions/team"}
      },
      "required": ["id", "name", "created_at", "team"]
    }
  }
}`

func TestValidate(t *testing.T) {
	v, err := New([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	const good = `{"id":"01234567-89ab-cdef-0123-456789abcdef","name":"a-b","created_at":"2026-01-02T03:04:05Z","team":null}`
	tests := []struct {
		name, body, wantErr string
	}{
		{"object", good, ""},
		{"array", "[" + good + "," + good + "]", ""},
		{"empty array", "[]", ""},
		{"missing property", `{"id":"01234567-89ab-cdef-0123-456789abcdef","name":"a","created_at":"2026-01-02T03:04:05Z"}`, "team"},
		{"bad uuid", strings.Replace(good, "01234567-89ab", "nope", 1), "uuid"},
		{"wrong type", strings.Replace(good, `"team":null`, `"team":"x"`, 1), "team"},
		{"bad timestamp", strings.Replace(good, "2026-01-02T03:04:05Z", "yesterday", 1), "date-time"},
		{"not UTC", strings.Replace(good, "05Z", "05+01:00", 1), "UTC"},
		{"second item bad", "[" + good + `,{}]`, "thing[1]"},
		{"not JSON", "{", "not JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Validate("thing", []byte(tc.body))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	if err := v.Validate("nothing", []byte(good)); err == nil {
		t.Error("an unknown definition validated")
	}
}
