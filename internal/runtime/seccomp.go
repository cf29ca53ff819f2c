package runtime

import (
	"fmt"

	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// seccompProfile converts Docker's default seccomp profile for a process
// without any capability: the syscalls Docker allows only with a capability
// (mount, unshare, ptrace on old kernels, init_module, sethostname, ...) are
// denied with EPERM. It returns nil when the binary was built without the
// seccomp tag, so that containers still start (without a filter).
func seccompProfile() (*configs.Seccomp, error) {
	if !SeccompEnabled() {
		return nil, nil
	}
	// The profile's conditional rules look at the bounding set: empty here.
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	oci, err := mobyseccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("docker's default seccomp profile: %w", err)
	}
	// Only the native architecture: the filter is compiled at every dyno
	// start, and each extra one (x86, x32 beside x86_64) costs as much again.
	// Syscalls of other architectures are then refused (the stack holds
	// 64-bit programs only), which also closes the 32-bit syscall surface.
	if len(oci.Architectures) > 0 {
		oci.Architectures = oci.Architectures[:1]
	}
	cfg, err := specconv.SetupSeccomp(oci)
	if err != nil {
		return nil, fmt.Errorf("convert seccomp profile: %w", err)
	}
	return cfg, nil
}
