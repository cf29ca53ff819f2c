//go:build seccomp

package runtime

import lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"

// SeccompEnabled reports whether containers get a seccomp filter (Docker's
// default profile). It is true only in binaries built with the "seccomp"
// build tag, cgo and libseccomp: without them libcontainer cannot load a
// filter and dynos run without one. Servers should warn loudly when false.
func SeccompEnabled() bool { return lcseccomp.Enabled }
