package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/dyno-platform/dyno/internal/model"
)

// ErrBuildpack marks a build that failed in a buildpack: one that could not
// be fetched, that does not apply, or whose program failed.
var ErrBuildpack = errors.New("buildpack failed")

// maxReleaseOutput bounds what bin/detect and bin/release may print to stdout.
const maxReleaseOutput = 1 << 20

// compiled is what the buildpacks made of the app.
type compiled struct {
	processTypes map[string]string
	configVars   map[string]string
	buildpacks   []string
}

// releaseInfo is the YAML bin/release prints.
type releaseInfo struct {
	Addons              []any             `yaml:"addons"`
	ConfigVars          map[string]any    `yaml:"config_vars"`
	DefaultProcessTypes map[string]string `yaml:"default_process_types"`
}

// compile runs the buildpacks over ws.build: fetches them, fills ENV_DIR,
// restores the cache, detects (or takes the app's list), compiles, reads
// bin/release, saves the cache and works out the process types.
func (b *Builder) compile(ctx context.Context, ws *workspace, out io.Writer, opts Options) (compiled, error) {
	var res compiled
	explicit := len(opts.Buildpacks) > 0
	names := opts.Buildpacks
	if !explicit {
		names = Builtins
	}
	bps := make([]Buildpack, len(names))
	for i, n := range names {
		bp, err := ParseBuildpack(n)
		if err != nil {
			return res, fmt.Errorf("%w: %v (change it with dyno buildpacks:set)", ErrBuildpack, err)
		}
		bps[i] = bp
		if !bp.Builtin() {
			fmt.Fprintf(out, "-----> Fetching buildpack %s\n", bp.URL)
		}
		if err := b.fetch.fetch(ctx, bp, filepath.Join(ws.buildpacks, fmt.Sprint(i))); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("%w: %v", ErrBuildpack, err)
		}
	}
	if err := writeEnvDir(ws.env, opts.ConfigVars); err != nil {
		return res, err
	}
	if err := b.restoreCache(opts.AppID, ws.cache); err != nil {
		return res, err
	}
	sb, done, err := b.sandbox(ws, len(bps), out, opts)
	if err != nil {
		return res, err
	}
	defer done()
	buildDir, cacheDir, envDir := sb.dirs()

	// detect runs bin/detect of buildpack i: whether it applies, and the
	// name it gives itself.
	detect := func(i int) (string, bool, error) {
		var stdout bytes.Buffer
		status, err := sb.run(ctx, []string{sb.buildpackDir(i) + "/bin/detect", buildDir}, &limitedBuffer{b: &stdout, n: maxReleaseOutput}, out)
		if err != nil {
			return "", false, err
		}
		name, _, _ := strings.Cut(strings.TrimSpace(stdout.String()), "\n")
		if name == "" {
			name = bps[i].URL
		}
		return name, status == 0, nil
	}
	type chosen struct {
		i    int
		name string
	}
	var run []chosen
	if explicit {
		for i, bp := range bps {
			fmt.Fprintf(out, "-----> Using buildpack: %s\n", bp.URL)
			name, ok, err := detect(i)
			if err != nil {
				return res, err
			}
			// Explicit buildpacks all run; all but the last must accept
			// the app, so that a wrong list fails with a clear reason.
			if !ok && i < len(bps)-1 {
				return res, fmt.Errorf("%w: app not compatible with buildpack %s (its bin/detect said no): fix the list with dyno buildpacks:set", ErrBuildpack, bp.URL)
			}
			run = append(run, chosen{i, name})
		}
	} else {
		for i := range bps {
			name, ok, err := detect(i)
			if err != nil {
				return res, err
			}
			if ok {
				run = append(run, chosen{i, name})
				break
			}
		}
		if len(run) == 0 {
			return res, fmt.Errorf("%w: no buildpack recognised this app: add a Procfile (or a package.json, go.mod, requirements.txt or index.html), or set one with dyno buildpacks:set URL", ErrInvalidSource)
		}
	}

	res.configVars = map[string]string{}
	defaults := map[string]string{}
	for _, c := range run {
		bp := bps[c.i]
		res.buildpacks = append(res.buildpacks, bp.URL)
		fmt.Fprintf(out, "-----> %s app detected\n", c.name)
		status, err := sb.run(ctx, []string{sb.buildpackDir(c.i) + "/bin/compile", buildDir, cacheDir, envDir}, out, out)
		if err != nil {
			return res, err
		}
		if status != 0 {
			return res, fmt.Errorf("%w: %s: bin/compile exited with status %d; the output above says why", ErrBuildpack, bp.URL, status)
		}
		var stdout bytes.Buffer
		status, err = sb.run(ctx, []string{sb.buildpackDir(c.i) + "/bin/release", buildDir}, &limitedBuffer{b: &stdout, n: maxReleaseOutput}, out)
		if err != nil {
			return res, err
		}
		if status != 0 {
			return res, fmt.Errorf("%w: %s: bin/release exited with status %d", ErrBuildpack, bp.URL, status)
		}
		var info releaseInfo
		if err := yaml.Unmarshal(stdout.Bytes(), &info); err != nil {
			return res, fmt.Errorf("%w: %s: bin/release printed YAML that does not parse: %v", ErrBuildpack, bp.URL, err)
		}
		for k, v := range info.DefaultProcessTypes {
			defaults[k] = v
		}
		for k, v := range info.ConfigVars {
			if err := model.ValidateConfigKey(k); err != nil {
				fmt.Fprintf(out, " !     Ignoring config var %q from %s: %v\n", k, bp.URL, err)
				continue
			}
			res.configVars[k] = fmt.Sprint(v)
		}
		if len(info.Addons) > 0 {
			fmt.Fprintf(out, " !     %s asks for add-ons; Dyno has none, so they are ignored\n", bp.URL)
		}
	}
	if err := b.saveCache(opts.AppID, ws.cache); err != nil {
		b.log.Warn("save build cache", "app", opts.AppID, "err", err)
		fmt.Fprintln(out, " !     The build cache could not be saved; the next build starts cold")
	}
	res.processTypes, err = processTypes(ws.build, defaults, out)
	return res, err
}

// processTypes merges the buildpacks' default process types with the
// app's Procfile, which wins type by type, as on Heroku.
func processTypes(buildDir string, defaults map[string]string, out io.Writer) (map[string]string, error) {
	fmt.Fprintln(out, "-----> Discovering process types")
	types := map[string]string{}
	if len(defaults) > 0 {
		var b strings.Builder
		for _, k := range sortedKeys(defaults) {
			fmt.Fprintf(&b, "%s: %s\n", k, defaults[k])
		}
		parsed, err := model.ParseProcfile([]byte(b.String()))
		if err != nil {
			return nil, fmt.Errorf("%w: the buildpack's default process types are invalid: %v", ErrBuildpack, err)
		}
		types = parsed
	}
	procfile, err := readProcfile(buildDir)
	if err != nil {
		return nil, err
	}
	var declared map[string]string
	if procfile != nil {
		if declared, err = model.ParseProcfile(procfile); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidSource, err)
		}
		fmt.Fprintf(out, "       Procfile declares types -> %s\n", strings.Join(sortedKeys(declared), ", "))
	}
	if extra := sortedKeys(types); len(extra) > 0 {
		fmt.Fprintf(out, "       Default types for buildpack -> %s\n", strings.Join(extra, ", "))
	}
	for k, v := range declared {
		types[k] = v
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("%w: no Procfile found at the root of the source and the buildpack gave no default process types: add one with a line such as \"web: python3 app.py\"", ErrInvalidSource)
	}
	return types, nil
}

// readProcfile reads the compiled app's Procfile without following a link
// (the build made the dir; the server reads it as root). nil: none.
func readProcfile(dir string) ([]byte, error) {
	f, err := os.OpenFile(filepath.Join(dir, "Procfile"), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the Procfile must be a regular file: %v", ErrInvalidSource, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: the Procfile must be a regular file", ErrInvalidSource)
	}
	data, err := io.ReadAll(io.LimitReader(f, model.MaxProcfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read Procfile: %w", err)
	}
	if len(data) > model.MaxProcfileSize {
		return nil, fmt.Errorf("%w: the Procfile is larger than %d bytes", ErrInvalidSource, model.MaxProcfileSize)
	}
	return data, nil
}

// sandbox picks where the buildpacks' programs run: build containers when
// the runtime isolates, else plain processes (with a warning in the output).
// done gives the build user back.
func (b *Builder) sandbox(ws *workspace, packs int, out io.Writer, opts Options) (sandbox, func(), error) {
	if b.cfg.Runtime == nil || !b.cfg.Runtime.Isolated() {
		fmt.Fprintln(out, " !     Warning: buildpacks run WITHOUT isolation, as the server's own user (the server is not root, or runs dynos as plain processes)")
		return &processSandbox{ws: ws, env: buildEnv(b.cfg.Env, ws.home, opts.SourceVersion)}, func() {}, nil
	}
	uid, err := b.cfg.UIDs.Get()
	if err != nil {
		return nil, nil, err
	}
	for _, d := range []string{ws.build, ws.cache, ws.env, ws.buildpacks} {
		if err := chownTree(d, uid); err != nil {
			b.cfg.UIDs.Put(uid)
			return nil, nil, fmt.Errorf("give the build its files: %w", err)
		}
	}
	return &containerSandbox{
		rt: b.cfg.Runtime, ws: ws, uid: uid, memoryMB: b.cfg.MemoryMB, packs: packs,
		env: buildEnv(b.cfg.Env, "/app", opts.SourceVersion),
	}, func() { b.cfg.UIDs.Put(uid) }, nil
}

// writeEnvDir writes one file per config var, named after it, holding its
// value: Heroku's ENV_DIR.
func writeEnvDir(dir string, vars map[string]string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("env dir: %w", err)
	}
	for k, v := range vars {
		if model.ValidateConfigKey(k) != nil {
			continue // cannot be a file name safely, nor a variable
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			return fmt.Errorf("env dir: %w", err)
		}
	}
	return nil
}

// limitedBuffer keeps the first n bytes written and drops the rest, so a
// program cannot make the server hold unbounded output.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
