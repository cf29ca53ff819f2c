# Shared by Dyno's built-in buildpacks: sourced from bin/compile and
# bin/release, copied next to them when a build runs.

# export_env_dir exports the app's config vars from ENV_DIR, as Heroku's
# buildpacks do, except those that would change how the build itself runs.
export_env_dir() {
  local env_dir=$1 f name
  [ -d "$env_dir" ] || return 0
  for f in "$env_dir"/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    case "$name" in
      PATH|GIT_DIR|CPATH|CPPATH|LD_PRELOAD|LIBRARY_PATH|LD_LIBRARY_PATH|HOME) continue ;;
    esac
    export "$name=$(cat "$f")"
  done
}

# indent prefixes every line with the 7 spaces of Heroku's build output.
indent() {
  sed -u '/^[[:space:]]*$/d; s/^/       /'
}

topic() {
  echo "-----> $*"
}
