package runtime

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

// Layout of a dyno's WorkDir.
const (
	rootfsDirName = "rootfs" // the container's / : mount points and the generated /etc
	upperDirName  = "upper"  // overlay upper dir: the dyno's writes to /app
	ovlWorkName   = "work"   // overlay work dir
)

// Read-only binds of the host's system directories. A host path that is a
// symlink (Debian: /bin -> usr/bin) becomes the same symlink in the rootfs.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// Read-only binds from the host's /etc: the parts programs need that do not
// reveal anything about the host's users.
var etcBinds = []string{
	"/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/ld.so.cache",
	"/etc/localtime", "/etc/services", "/etc/protocols", "/etc/mime.types",
}

// Paths Docker hides (masked) and makes read-only inside containers.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// validateSpec rejects specs the container cannot be built from.
func validateSpec(s *Spec) error {
	switch {
	case s.ID == "" || strings.ContainsAny(s.ID, "/\\ ") || s.ID == "." || s.ID == "..":
		return fmt.Errorf("invalid dyno id %q: use a uuid", s.ID)
	case s.Command == "":
		return fmt.Errorf("empty command: the process type needs a command in the Procfile")
	case !filepath.IsAbs(s.SlugDir) || !filepath.IsAbs(s.WorkDir):
		return fmt.Errorf("slug dir %q and work dir %q must be absolute paths", s.SlugDir, s.WorkDir)
	case strings.ContainsAny(s.SlugDir+s.WorkDir, ",:"):
		// overlayfs options use ',' and ':' as separators.
		return fmt.Errorf("slug dir %q and work dir %q must not contain ',' or ':'", s.SlugDir, s.WorkDir)
	case s.UID <= 0 || s.GID <= 0:
		return fmt.Errorf("dyno %s: uid %d / gid %d: dynos must run as an unprivileged user", s.ID, s.UID, s.GID)
	case slices.ContainsFunc(s.AdditionalGroups, func(g int) bool { return g <= 0 }):
		return fmt.Errorf("dyno %s: additional groups %v: root's group is not allowed", s.ID, s.AdditionalGroups)
	case s.Port < 0 || s.Port > 65535:
		return fmt.Errorf("dyno %s: port %d out of range", s.ID, s.Port)
	case s.MemoryMB <= 0:
		return fmt.Errorf("dyno %s: memory limit must be positive, got %d MB", s.ID, s.MemoryMB)
	}
	if fi, err := os.Stat(s.SlugDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("slug dir %q is not a directory: unpack the slug first", s.SlugDir)
	}
	for _, m := range s.Mounts {
		if err := validateMount(m); err != nil {
			return fmt.Errorf("dyno %s: %w", s.ID, err)
		}
	}
	return nil
}

// validateMount refuses binds that would hide or replace the parts of the
// container the runtime relies on (its system dirs, /etc, /proc, /sys,
// /dev, /app itself) and sources that are not directories.
func validateMount(m Mount) error {
	dst := filepath.Clean(m.Destination)
	if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) || dst == "/" || dst == "/app" || dst == "/tmp" {
		return fmt.Errorf("mount %q -> %q: use absolute paths and a destination below /tmp or /app, or a new top-level directory", m.Source, m.Destination)
	}
	reserved := append([]string{"/etc", "/proc", "/sys", "/dev"}, systemDirs...)
	for _, r := range reserved {
		if dst == r || strings.HasPrefix(dst, r+"/") {
			return fmt.Errorf("mount %q -> %q: %s belongs to the container's system", m.Source, m.Destination, r)
		}
	}
	if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount source %q is not a directory", m.Source)
	}
	return nil
}

// prepareWorkDir creates the rootfs skeleton, the generated /etc and the
// overlay dirs inside spec.WorkDir. ownNet tells whether the dyno has a
// network namespace of its own (where the host's loopback is not reachable).
func prepareWorkDir(s *Spec, ownNet bool) error {
	rootfs := filepath.Join(s.WorkDir, rootfsDirName)
	upper := filepath.Join(s.WorkDir, upperDirName)
	for _, d := range []string{rootfs, filepath.Join(rootfs, "etc"), upper, filepath.Join(s.WorkDir, ovlWorkName)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// The upper dir's owner becomes the owner of /app, so the dyno can write there.
	if err := os.Chown(upper, s.UID, s.GID); err != nil {
		return err
	}
	for _, d := range systemDirs {
		target, err := os.Readlink(d)
		if err != nil {
			continue // a real directory (bound below) or absent
		}
		if err := os.Symlink(target, filepath.Join(rootfs, d)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if target, err := os.Readlink("/etc/localtime"); err == nil && strings.HasPrefix(target, "/usr/") {
		// Keep it a symlink: the zoneinfo file is visible through /usr.
		_ = os.Symlink(target, filepath.Join(rootfs, "etc/localtime"))
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = []byte("nameserver 127.0.0.53\n")
	}
	if ownNet {
		resolv = dynoResolvConf(resolv)
	}
	files := map[string]string{
		"passwd": fmt.Sprintf("root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"+
			"dyno:x:%d:%d:dyno:/app:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", s.UID, s.GID),
		"group":         groupFile(s),
		"hostname":      s.Hostname + "\n",
		"hosts":         fmt.Sprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", s.Hostname),
		"resolv.conf":   string(resolv),
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, "etc", name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// dynoResolvConf is the host's resolv.conf for a dyno in its own network
// namespace: loopback nameservers (systemd-resolved's 127.0.0.53, a local
// dnsmasq) are unreachable from there and the host's input is closed to
// dynos anyway, so they are dropped, and when none is left the upstream
// servers systemd-resolved uses are taken, else public ones (what Docker does).
func dynoResolvConf(host []byte) []byte {
	var kept []string
	servers := 0
	for _, line := range strings.Split(string(host), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip == nil || ip.IsLoopback() {
				continue
			}
			servers++
		}
		kept = append(kept, line)
	}
	if servers > 0 {
		return []byte(strings.Join(kept, "\n"))
	}
	if b, err := os.ReadFile("/run/systemd/resolve/resolv.conf"); err == nil && !bytes.Equal(b, host) {
		return dynoResolvConf(b)
	}
	return []byte(strings.TrimRight(strings.Join(kept, "\n"), "\n") + "\nnameserver 8.8.8.8\nnameserver 1.1.1.1\n")
}

// groupFile is /etc/group: the dyno's group and its supplementary ones
// ("slug" for the first, the slug group) with the dyno as member.
func groupFile(s *Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "root:x:0:\ndyno:x:%d:\n", s.GID)
	for i, g := range s.AdditionalGroups {
		if g == s.GID || g == 65534 {
			continue
		}
		name := "slug"
		if i > 0 {
			name = fmt.Sprintf("group%d", g)
		}
		fmt.Fprintf(&b, "%s:x:%d:dyno\n", name, g)
	}
	b.WriteString("nogroup:x:65534:\n")
	return b.String()
}

// containerConfig builds the libcontainer configuration of a dyno.
func containerConfig(s *Spec, cgroupParent string) *configs.Config {
	const noexec = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	roBind := func(src string) *configs.Mount {
		return &configs.Mount{
			Source: src, Destination: src, Device: "bind",
			Flags:   unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV,
			RecAttr: &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV},
		}
	}
	var mounts []*configs.Mount
	for _, d := range systemDirs {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			mounts = append(mounts, roBind(d))
		}
	}
	for _, p := range etcBinds {
		fi, err := os.Lstat(p)
		if err != nil || (p == "/etc/localtime" && fi.Mode()&os.ModeSymlink != 0) {
			continue // absent, or recreated as a symlink by prepareWorkDir
		}
		mounts = append(mounts, roBind(p))
	}
	tmpSize := s.MemoryMB // tmpfs pages are charged to the dyno's memory cgroup anyway
	mounts = append(mounts,
		&configs.Mount{Source: "proc", Destination: "/proc", Device: "proc", Flags: noexec},
		&configs.Mount{Source: "tmpfs", Destination: "/dev", Device: "tmpfs",
			Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		&configs.Mount{Source: "devpts", Destination: "/dev/pts", Device: "devpts",
			Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620"},
		&configs.Mount{Source: "shm", Destination: "/dev/shm", Device: "tmpfs",
			Flags: noexec, Data: "mode=1777,size=65536k"},
		&configs.Mount{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: noexec},
		&configs.Mount{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: noexec | unix.MS_RDONLY},
		&configs.Mount{Source: "tmpfs", Destination: "/tmp", Device: "tmpfs",
			Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: fmt.Sprintf("mode=1777,size=%dm", tmpSize)},
		// /app: the shared, read-only slug below this dyno's private writable
		// layer. The overlay lives only in the container's mount namespace, so
		// it disappears with the dyno's last process.
		&configs.Mount{Source: "overlay", Destination: "/app", Device: "overlay",
			Flags: unix.MS_NOSUID | unix.MS_NODEV,
			Data: fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", s.SlugDir,
				filepath.Join(s.WorkDir, upperDirName), filepath.Join(s.WorkDir, ovlWorkName))},
	)
	// Extra binds come last: their mount points may be inside /tmp or /app.
	for _, m := range s.Mounts {
		b := &configs.Mount{
			Source: m.Source, Destination: filepath.Clean(m.Destination), Device: "bind",
			Flags:   unix.MS_BIND | unix.MS_REC | unix.MS_NOSUID | unix.MS_NODEV,
			RecAttr: &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV},
		}
		if m.ReadOnly {
			b.Flags |= unix.MS_RDONLY
			b.RecAttr.Attr_set |= unix.MOUNT_ATTR_RDONLY
		}
		mounts = append(mounts, b)
	}

	var rules []*devconfig.Rule
	for _, d := range specconv.AllowedDevices {
		rules = append(rules, &d.Rule)
	}
	mem := int64(s.MemoryMB) << 20
	pids := int64(s.PidsLimit)
	res := &cgroups.Resources{
		Devices:    rules, // without them init cannot reopen /dev/null
		Memory:     mem,
		MemorySwap: mem, // memory+swap == memory: the dyno cannot swap
		CpuShares:  uint64(s.CPUShares),
	}
	if pids > 0 {
		res.PidsLimit = &pids
	}
	return &configs.Config{
		Rootfs:     filepath.Join(s.WorkDir, rootfsDirName),
		Readonlyfs: true,
		Hostname:   s.Hostname,
		// NEWNET is added by the runtime when the network is enabled.
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS}, {Type: configs.NEWPID}, {Type: configs.NEWUTS}, {Type: configs.NEWIPC},
		},
		Capabilities:    &configs.Capabilities{}, // none at all
		NoNewPrivileges: true,
		Cgroups:         &cgroups.Cgroup{Name: s.ID, Parent: cgroupParent, Resources: res},
		Devices:         specconv.AllowedDevices,
		Mounts:          mounts,
		MaskPaths:       maskedPaths,
		ReadonlyPaths:   readonlyPaths,
		Rlimits:         []configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Hard: 10000, Soft: 10000}},
		// ParentDeathSignal stays unset on purpose: it is per OS thread and
		// would kill dynos when the goroutine that started them exits.
	}
}

// commandShell is the shell that runs Procfile commands. Heroku runs them
// with bash, which replaces itself with a lone command: the app is then the
// process the shell started, gets SIGTERM itself, and its own exit status
// is the dyno's. dash keeps a shell in between that dies at once on SIGTERM
// and would cut the app's 30 s of grace short.
func commandShell() string {
	if _, err := os.Stat("/bin/bash"); err == nil {
		return "/bin/bash"
	}
	return "/bin/sh"
}

// shellArgs runs the command under a shell that stays PID 1 of the
// container: PID 1 ignores signals it has no handler for, so a command exec'd
// as PID 1 would not stop on SIGTERM. The command runs as a foreground child
// ("; exit $?" defeats the exec), gets normal signal dispositions, and its
// exit status (128+signal when killed) becomes the dyno's. The shell also
// reaps orphans while it waits. Its own notes ("Terminated") go nowhere; the
// command keeps the dyno's stderr.
func shellArgs(command string) []string {
	return []string{"/bin/sh", "-c", `exec 3>&2 2>/dev/null; "$1" -c "$2" 2>&3 3>&-; exit $?`, "dyno", commandShell(), command}
}
