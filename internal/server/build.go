package server

import (
	"log/slog"
	"os"

	"github.com/dyno-platform/dyno/internal/build"
	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/store"
)

// buildEnvVars are the server's environment variables that builds inherit:
// where the package registries are, and proxies to reach them.
var buildEnvVars = []string{
	"GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "NPM_CONFIG_REGISTRY", "npm_config_registry",
	"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}

// newBuilder makes the builder of the API server: buildpacks run in build
// containers of the agent's runtime (plain processes when it is not
// isolated), workspaces and caches under DATA/builds and DATA/cache.
func newBuilder(cfg Config, st *store.Store, logs *logplex.Logplex, log *slog.Logger, dataDir string, rt build.Runtime) *build.Builder {
	env := map[string]string{}
	for _, k := range buildEnvVars {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return build.NewWithConfig(build.Config{
		Store: st, Logs: logs, Logger: log, DataDir: dataDir, Runtime: rt, Env: env, Timeout: cfg.BuildTimeout,
	})
}
