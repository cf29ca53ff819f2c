//go:build !seccomp

package runtime

// SeccompEnabled reports whether containers get a seccomp filter (Docker's
// default profile). This binary was built without the "seccomp" build tag,
// so dynos run WITHOUT a seccomp filter: build with `-tags seccomp` (needs
// libseccomp-dev) for production.
func SeccompEnabled() bool { return false }
