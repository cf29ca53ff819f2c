package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/apischema"
	"github.com/dyno-platform/dyno/internal/certs"
	"github.com/dyno-platform/dyno/internal/model"
)

// herokuSchemaPath is Heroku's schema in the shared reference, beside the
// repository (as CI lays it out); tests that compare with it skip without it.
var herokuSchemaPath = filepath.Join("..", "..", "..", "shared", "reference", "heroku-platform-api-schema.json")

// linkKeys lists a schema's links as "METHOD /path/{}/..." with every
// variable written {}.
func linkKeys(t *testing.T, schema []byte) []string {
	t.Helper()
	var doc struct {
		Definitions map[string]struct {
			Links []struct{ Href, Method string }
		}
		Links []struct{ Href, Method string }
	}
	if err := json.Unmarshal(schema, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	add := func(method, href string) { out = append(out, method+" "+placeholders(href)) }
	for _, d := range doc.Definitions {
		for _, l := range d.Links {
			add(l.Method, l.Href)
		}
	}
	for _, l := range doc.Links {
		add(l.Method, l.Href)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var variableRE = regexp.MustCompile(`\{[^}]*\}`)

func placeholders(path string) string { return variableRE.ReplaceAllString(path, "{}") }

// TestSchemaListsEveryRoute: every API route the server registers is a
// link of GET /schema, and every link is a route.
func TestSchemaListsEveryRoute(t *testing.T) {
	e := newEnv(t, 0)
	resp := e.raw("GET", "/schema", nil) // public, as Heroku's
	defer resp.Body.Close()
	var served json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&served); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /schema: %d %v", resp.StatusCode, err)
	}
	links := linkKeys(t, served)
	var routes []string
	for _, p := range e.srv.Routes() {
		routes = append(routes, placeholders(p))
	}
	slices.Sort(routes)
	routes = slices.Compact(routes)
	for _, r := range routes {
		if _, found := slices.BinarySearch(links, r); !found {
			t.Errorf("route %s is not in /schema: add its link to schemagen (served or dyno.json) and go generate", r)
		}
	}
	for _, l := range links {
		if _, found := slices.BinarySearch(routes, l); !found {
			t.Errorf("/schema has %s but the server has no such route", l)
		}
	}
}

// TestSchemaDefinitionsAreHerokus: the served resources' definitions are
// Heroku's, but for their links and the required list schemagen adds.
func TestSchemaDefinitionsAreHerokus(t *testing.T) {
	data, err := os.ReadFile(herokuSchemaPath)
	if err != nil {
		t.Skipf("Heroku's schema is not beside the repository (%v)", err)
	}
	var heroku, dyno struct {
		Definitions map[string]map[string]any
		Relaxed     []struct{ Pointer string } `json:"x-dyno-relaxed"`
	}
	if err := json.Unmarshal(data, &heroku); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(Schema(), &dyno); err != nil {
		t.Fatal(err)
	}
	for _, r := range dyno.Relaxed { // the keywords Dyno's schema says it drops
		parts := strings.Split(strings.TrimPrefix(r.Pointer, "/definitions/"), "/")
		cur := heroku.Definitions[parts[0]] // parsed afresh: changed in place
		for _, p := range parts[1 : len(parts)-1] {
			cur, _ = cur[p].(map[string]any)
		}
		if _, ok := cur[parts[len(parts)-1]]; !ok {
			t.Fatalf("relaxed %s is not in Heroku's schema", r.Pointer)
		}
		delete(cur, parts[len(parts)-1])
	}
	for name, def := range dyno.Definitions {
		if strings.HasPrefix(name, "dyno-") {
			continue
		}
		h, ok := heroku.Definitions[name]
		if !ok {
			t.Errorf("definition %s is not Heroku's: name Dyno's own dyno-*", name)
			continue
		}
		d := maps.Clone(def)
		h = maps.Clone(h)
		delete(d, "links")
		delete(h, "links")
		delete(d, "required") // schemagen requires every property...
		delete(h, "required") // ...of which Heroku's list is a part
		// schemagen corrects Heroku's one dangling $ref.
		hb, _ := json.Marshal(h)
		hb = []byte(strings.ReplaceAll(string(hb), `"#/definitions/dyno_size/`, `"#/definitions/dyno-size/`))
		db, _ := json.Marshal(d)
		var hv, dv any
		json.Unmarshal(hb, &hv)
		json.Unmarshal(db, &dv)
		if !reflect.DeepEqual(hv, dv) {
			t.Errorf("definition %s differs from Heroku's: run go generate ./internal/apiserver/", name)
		}
	}
}

// TestAcceptVersions: version 3 and its variants, a missing Accept or
// other media types pass; another version is 406.
func TestAcceptVersions(t *testing.T) {
	e := newEnv(t, 0)
	for _, tc := range []struct {
		accept string
		want   int
	}{
		{"", 200},
		{"application/vnd.heroku+json; version=3", 200},
		{"application/vnd.heroku+json; version=3.sdk", 200},
		{"application/vnd.heroku+json; version=3.run-inside", 200},
		{"application/vnd.heroku+json; version=3.account-quotas", 200},
		{"application/vnd.heroku+json;version=3", 200},
		{"application/json", 200},
		{"*/*", 200},
		{"application/vnd.heroku+json; version=2", 406},
		{"application/vnd.heroku+json; version=4", 406},
		{"application/vnd.heroku+json; version=30", 406},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			resp := e.raw("GET", "/apps", nil, "Authorization", "Bearer "+testKey, "Accept", tc.accept, "Request-Id", "req-"+tc.accept)
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if got := resp.Header.Get("Request-Id"); got != "req-"+tc.accept {
				t.Errorf("Request-Id %q not echoed", got)
			}
			if tc.want == 406 {
				var body struct{ ID, Message string }
				if json.NewDecoder(resp.Body).Decode(&body); body.ID != "not_acceptable" || body.Message == "" {
					t.Errorf("406 body %+v, want {id: not_acceptable, message}", body)
				}
			}
		})
	}
}

// TestListPaging: every list pages with Range, 206 and Next-Range, in both
// orders, over each of its fields.
func TestListPaging(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("pga")
	e.deploy("pga", tarball(t, file{"Procfile", "web: a\nworker: b\nclock: c\n"}))
	e.must(200, "PATCH", "/apps/pga/config-vars", map[string]string{"A": "1"}, nil)
	e.must(200, "PATCH", "/apps/pga/config-vars", map[string]string{"B": "2"}, nil)
	for _, n := range []string{"pgb", "pgc"} {
		e.createApp(n)
	}
	for range 2 {
		e.advance(time.Second) // builds are ranged by created_at: distinct
		e.deploy("pga", tarball(t, file{"Procfile", "web: a\nworker: b\nclock: c\n"}))
	}
	for _, h := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		e.must(201, "POST", "/apps/pga/domains", map[string]any{"hostname": h, "sni_endpoint": nil}, nil)
	}
	for _, u := range []string{"syslog://a.example.com:514", "syslog://b.example.com:514", "syslog://c.example.com:514"} {
		e.advance(time.Second)
		e.must(201, "POST", "/apps/pga/log-drains", map[string]any{"url": u}, nil)
	}
	for _, u := range []string{"bob@example.com", "carol@example.com"} {
		e.newUser(u)
		e.advance(time.Second)
		e.must(201, "POST", "/apps/pga/collaborators", map[string]any{"user": u}, nil)
	}
	app := mustApp(t, e, "pga")
	now := e.clock()
	for i, name := range []string{"web.1", "web.2", "web.10"} {
		st := model.DynoStatus{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), AppID: app.ID, Type: "web", Name: name, Release: 1, State: model.StateUp, StartedAt: now, UpdatedAt: now}
		if _, err := e.st.Statuses.Put(context.Background(), model.StatusKey(app.ID, st.ID), st); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		e.advance(time.Second)
		e.must(201, "POST", "/oauth/authorizations", map[string]any{"description": fmt.Sprint("key ", i)}, nil)
	}

	tests := []struct {
		path, field, key string // key: the JSON field the values come from
		all              []string
	}{
		{"/apps", "name", "name", []string{"pga", "pgb", "pgc"}},
		{"/users/~/apps", "name", "name", []string{"pga", "pgb", "pgc"}},
		{"/apps/pga/releases", "version", "version", []string{"1", "2", "3", "4", "5"}},
		{"/apps/pga/formation", "type", "type", []string{"clock", "web", "worker"}},
		{"/apps/pga/dynos", "name", "name", []string{"web.1", "web.2", "web.10"}},
		{"/apps/pga/builds", "created_at", "", nil},
		{"/apps/pga/domains", "hostname", "hostname", []string{"a.example.com", "b.example.com", "c.example.com"}},
		{"/apps/pga/log-drains", "url", "url", []string{"syslog://a.example.com:514", "syslog://b.example.com:514", "syslog://c.example.com:514"}},
		{"/apps/pga/collaborators", "email", "", nil},
		{"/oauth/authorizations", "created_at", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			var full []map[string]any
			e.must(200, "GET", tc.path, nil, &full)
			if len(full) < 2 {
				t.Fatalf("%s has %d items: the test needs 2 or more", tc.path, len(full))
			}
			values := func(items []map[string]any, key string) []string {
				var out []string
				for _, it := range items {
					out = append(out, fmt.Sprint(it[key]))
				}
				return out
			}
			if tc.all != nil && !slices.Equal(values(full, tc.key), tc.all) {
				t.Errorf("default order %q, want %q", values(full, tc.key), tc.all)
			}
			for _, desc := range []bool{false, true} {
				for _, field := range []string{tc.field, "id", ""} {
					order := "asc"
					want := slices.Clone(full)
					if field == "id" {
						slices.SortFunc(want, func(a, b map[string]any) int { return strings.Compare(a["id"].(string), b["id"].(string)) })
					}
					if desc {
						order = "desc"
						slices.Reverse(want)
					}
					rng := fmt.Sprintf("%s ..; max=1, order=%s", field, order)
					if field == "" {
						rng = fmt.Sprintf("..; max=1,order=%s", order) // as heroku-go sends it
					}
					var got []map[string]any
					for page := 0; rng != ""; page++ {
						resp := e.raw("GET", tc.path, nil, "Authorization", "Bearer "+testKey, "Range", rng)
						var items []map[string]any
						err := json.NewDecoder(resp.Body).Decode(&items)
						resp.Body.Close()
						if err != nil || len(items) != 1 {
							t.Fatalf("Range %q: %d items, %v", rng, len(items), err)
						}
						got = append(got, items...)
						next := resp.Header.Get("Next-Range")
						last := len(got) == len(want)
						if last != (resp.StatusCode == 200) || last != (next == "") {
							t.Fatalf("Range %q, page %d of %d: status %d, Next-Range %q", rng, page+1, len(want), resp.StatusCode, next)
						}
						if resp.Header.Get("Accept-Ranges") == "" || resp.Header.Get("Content-Range") == "" {
							t.Errorf("Range %q: no Accept-Ranges or Content-Range", rng)
						}
						rng = next
					}
					if !slices.Equal(values(got, "id"), values(want, "id")) {
						t.Errorf("field %q %s: pages give %q, want %q", field, order, values(got, "id"), values(want, "id"))
					}
				}
			}
		})
	}
	e.must(400, "GET", "/apps", nil, nil, "Range", "version ..")
	e.must(400, "GET", "/apps/pga/releases", nil, nil, "Range", "version a..")
	e.must(400, "GET", "/apps/pga/releases", nil, nil, "Range", "version ..; max=0")
	var page []releaseJSON
	e.must(206, "GET", "/apps/pga/releases", nil, &page, "Range", "version 2..4; max=2")
	e.must(200, "GET", "/apps/pga/releases", nil, &page, "Range", "version ]3..4; max=2")
	if len(page) != 1 || page[0].Version != 4 {
		t.Errorf("version ]3..4 gave %+v", page)
	}
}

// TestShapesMatchSchema drives every resource and validates each answer
// against Dyno's schema (definitions as Heroku's, all properties required).
func TestShapesMatchSchema(t *testing.T) {
	v, err := apischema.New(Schema())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 0)
	check := func(want int, resource, method, path string, body any) []byte {
		t.Helper()
		status, data := e.call(method, path, body)
		if status != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, data)
		}
		if err := v.Validate(resource, data); err != nil {
			t.Errorf("%s %s: %v", method, path, err)
		}
		return data
	}
	check(201, "app", "POST", "/apps", map[string]string{"name": "shape"})
	check(200, "app", "GET", "/apps/shape", nil)
	check(200, "app", "PATCH", "/apps/shape", map[string]any{"maintenance": false})
	check(200, "app", "GET", "/apps", nil)
	check(200, "app", "GET", "/users/~/apps", nil)
	check(201, "source", "POST", "/sources", nil)
	b, _ := e.deploy("shape", tarball(t, goodSource...))
	check(200, "build", "GET", "/apps/shape/builds/"+b.ID, nil)
	check(200, "build", "GET", "/apps/shape/builds", nil)
	var rel releaseJSON
	json.Unmarshal(check(200, "release", "GET", "/apps/shape/releases/1", nil), &rel)
	check(200, "release", "GET", "/apps/shape/releases", nil)
	data := check(200, "slug", "GET", "/apps/shape/slugs/"+rel.Slug.ID, nil)
	var slug slugJSON
	json.Unmarshal(data, &slug)
	if slug.ProcessTypes["web"] == "" || slug.Checksum == nil || slug.Size == nil || slug.Stack.Name != "dyno" {
		t.Errorf("slug %s", data)
	}
	if resp := e.raw("GET", slug.Blob.URL, nil); resp.StatusCode != 200 || resp.ContentLength == 0 {
		t.Errorf("slug blob: %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	check(200, "config-var", "PATCH", "/apps/shape/config-vars", map[string]any{"A": "1"})
	check(200, "config-var", "GET", "/apps/shape/config-vars", nil)
	check(200, "config-var", "GET", "/apps/shape/releases/2/config-vars", nil)
	check(201, "release", "POST", "/apps/shape/releases", map[string]any{"release": "1"})
	check(200, "formation", "GET", "/apps/shape/formation", nil)
	check(200, "formation", "PATCH", "/apps/shape/formation", map[string]any{"updates": []map[string]any{{"type": "worker", "quantity": "+1", "size": "standard-2X"}}})
	check(200, "formation", "PATCH", "/apps/shape/formation/web", map[string]any{"quantity": 2})
	check(200, "formation", "GET", "/apps/shape/formation/web", nil)
	app := mustApp(t, e, "shape")
	now := e.clock()
	st := model.DynoStatus{ID: newID(), AppID: app.ID, Type: "web", Name: "web.1", Release: 1, Size: "standard-1X", Command: "x", State: model.StateUp, StartedAt: now, UpdatedAt: now}
	if _, err := e.st.Statuses.Put(context.Background(), model.StatusKey(app.ID, st.ID), st); err != nil {
		t.Fatal(err)
	}
	check(200, "dyno", "GET", "/apps/shape/dynos", nil)
	check(200, "dyno", "GET", "/apps/shape/dynos/web.1", nil)
	check(201, "dyno", "POST", "/apps/shape/dynos", map[string]any{"command": "echo hi", "attach": false})
	check(201, "log-session", "POST", "/apps/shape/log-sessions", map[string]any{"dyno": "web.1", "lines": 10})
	var drain drainJSON
	json.Unmarshal(check(201, "log-drain", "POST", "/apps/shape/log-drains", map[string]any{"url": "syslog://logs.example.com:514"}), &drain)
	check(200, "log-drain", "GET", "/apps/shape/log-drains", nil)
	check(200, "log-drain", "GET", "/apps/shape/log-drains/"+drain.Token, nil)
	check(201, "domain", "POST", "/apps/shape/domains", map[string]any{"hostname": "www.example.com", "sni_endpoint": nil})
	check(200, "domain", "GET", "/apps/shape/domains", nil)
	check(200, "domain", "GET", "/apps/shape/domains/www.example.com", nil)
	chain, key, err := certs.SelfSigned([]string{"www.example.com"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	check(201, "sni-endpoint", "POST", "/apps/shape/sni-endpoints", map[string]any{"certificate_chain": chain, "private_key": key})
	check(200, "sni-endpoint", "GET", "/apps/shape/sni-endpoints", nil)
	check(200, "account", "GET", "/account", nil)
	check(200, "rate-limit", "GET", "/account/rate-limits", nil)
	check(200, "dyno-size", "GET", "/dyno-sizes", nil)
	check(200, "dyno-size", "GET", "/dyno-sizes/standard-1x", nil)
	e.newUser("dave@example.com")
	check(201, "collaborator", "POST", "/apps/shape/collaborators", map[string]any{"user": "dave@example.com"})
	check(200, "collaborator", "GET", "/apps/shape/collaborators", nil)
	check(201, "oauth-authorization", "POST", "/oauth/authorizations", map[string]any{"description": "ci"})
	check(200, "oauth-authorization", "GET", "/oauth/authorizations", nil)
	check(200, "buildpack-installation", "GET", "/apps/shape/buildpack-installations", nil)
	check(200, "app", "DELETE", "/apps/shape", nil)
}
