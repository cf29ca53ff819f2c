package apiserver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBuildpackInstallations sets an app's buildpacks through the API and
// checks that a build runs them in order with the app's config vars in
// ENV_DIR, and that the buildpack's default config vars reach the release.
func TestBuildpackInstallations(t *testing.T) {
	e := newEnv(t, 1<<20)
	e.createApp("packs")
	var list []buildpackInstallation
	e.must(200, "GET", "/apps/packs/buildpack-installations", nil, &list)
	if len(list) != 0 {
		t.Fatalf("new app's buildpacks %+v, want none", list)
	}
	e.must(422, "PUT", "/apps/packs/buildpack-installations", map[string]any{"updates": []map[string]string{{"buildpack": "heroku/cobol"}}}, nil)

	pack := map[string]string{
		"bin/detect":  "#!/bin/sh\necho Custom\n",
		"bin/compile": "#!/bin/sh\necho \"       greeting=$(cat \"$3/GREETING\")\"\n",
		"bin/release": "#!/bin/sh\nprintf -- '---\\nconfig_vars:\\n  FROM_BUILDPACK: set\\n  GREETING: ignored\\n'\n",
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range pack {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(buf.Bytes()) }))
	defer srv.Close()
	url := srv.URL + "/custom.tgz"

	e.must(200, "PUT", "/apps/packs/buildpack-installations", map[string]any{"updates": []map[string]string{{"buildpack": "python"}, {"buildpack": url}}}, &list)
	if len(list) != 2 || list[0].Buildpack.URL != "heroku/python" || list[1].Buildpack.URL != url || list[1].Ordinal != 1 {
		t.Fatalf("buildpacks after PUT: %+v", list)
	}
	e.must(200, "PATCH", "/apps/packs/config-vars", map[string]string{"GREETING": "hello"}, nil)
	b, out := e.deploy("packs", tarball(t, goodSource...))
	if b.Status != "succeeded" {
		t.Fatalf("build %s:\n%s", b.Status, out)
	}
	for _, want := range []string{"Using buildpack: heroku/python", "Python app detected", "Custom app detected", "greeting=hello"} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	var config map[string]string
	e.must(200, "GET", "/apps/packs/config-vars", nil, &config)
	if config["FROM_BUILDPACK"] != "set" || config["GREETING"] != "hello" {
		t.Errorf("config vars after the build: %v, want the buildpack's FROM_BUILDPACK and the app's own GREETING", config)
	}
	e.must(200, "PUT", "/apps/packs/buildpack-installations", map[string]any{"updates": []map[string]string{}}, &list)
	if len(list) != 0 {
		t.Errorf("buildpacks after clearing: %+v", list)
	}
}
