package runtime

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetworkConfig configures the network namespaces of dynos.
type NetworkConfig struct {
	// Enabled gives every dyno its own network namespace, reachable from the
	// host only on its PORT, with the internet through NAT. When false dynos
	// share the host's network (and can reach everything on it).
	Enabled bool
	// Subnet is where the dynos' point-to-point links come from, a /30 per
	// dyno ("10.213.0.0/16" when empty: 16384 dynos). Agents on one machine
	// need different subnets.
	Subnet string
	// Table is the name of the runtime's nftables table, family inet ("dyno"
	// when empty). Agents on one machine need different tables.
	Table string
	// DenyNets are IPv4 networks dynos must not reach through the host, in
	// CIDR notation: put the platform's private networks here (the other
	// hosts' NATS, API and agents). 169.254.0.0/16 (link-local, where clouds
	// serve instance metadata and credentials) is always denied.
	DenyNets []string
	// Publish makes every web dyno reachable on the host's own addresses
	// at its PORT (DNAT, publish.go), for routers on other hosts.
	Publish bool
}

const (
	defaultSubnet = "10.213.0.0/16"
	defaultTable  = "dyno"
	netnsDirName  = "netns" // below StateDir: the bind-mounted namespaces
	peerIfName    = "eth0"  // the dyno's side of its veth pair
)

// netRecord is a dyno's network, kept in its dynoRecord so that Cleanup can
// remove it after a crash of the agent.
type netRecord struct {
	Block  int    `json:"block"`   // index of the dyno's /30 in the subnet
	HostIf string `json:"host_if"` // host-side veth name
	Netns  string `json:"netns"`   // bind mount of the namespace
	Port   int    `json:"port,omitempty"`
	IP     string `json:"ip"` // the dyno's address
}

func (r *netRecord) addr() net.IP { return net.ParseIP(r.IP) }

// network owns the address blocks, namespaces and veths of a runtime's dynos.
type network struct {
	subnet *net.IPNet
	dir    string // where namespaces are bind-mounted
	fw     *firewall

	mu   sync.Mutex
	used map[int]bool // allocated /30 blocks
	next int          // where the search for a free block starts
}

func newNetwork(cfg NetworkConfig, stateDir string) (*network, error) {
	if cfg.Subnet == "" {
		cfg.Subnet = defaultSubnet
	}
	if cfg.Table == "" {
		cfg.Table = defaultTable
	}
	_, subnet, err := net.ParseCIDR(cfg.Subnet)
	if err != nil || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("network: subnet %q: want an IPv4 CIDR such as %s", cfg.Subnet, defaultSubnet)
	}
	if ones, _ := subnet.Mask.Size(); ones > 29 {
		return nil, fmt.Errorf("network: subnet %s is too small: give at least a /29", cfg.Subnet)
	}
	subnet.IP = subnet.IP.To4()
	subnet.Mask = net.IPMask(subnet.Mask[len(subnet.Mask)-4:])
	var deny []*net.IPNet
	for _, cidr := range append([]string{"169.254.0.0/16"}, cfg.DenyNets...) {
		_, d, err := net.ParseCIDR(cidr)
		if err != nil || d.IP.To4() == nil {
			return nil, fmt.Errorf("network: denied net %q: want an IPv4 CIDR such as 10.0.0.0/8", cidr)
		}
		d.IP, d.Mask = d.IP.To4(), net.IPMask(d.Mask[len(d.Mask)-4:])
		deny = append(deny, d)
	}
	n := &network{subnet: subnet, dir: filepath.Join(stateDir, netnsDirName), fw: newFirewall(cfg.Table, subnet, deny), used: map[int]bool{}}
	if cfg.Publish {
		n.fw.enablePublish()
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("network: enable ip forwarding: %w", err)
	}
	return n, nil
}

// blocks is the number of /30 blocks in the subnet.
func (n *network) blocks() int {
	ones, bits := n.subnet.Mask.Size()
	return 1 << (bits - ones - 2)
}

// blockAddr is the i-th address of block b.
func (n *network) blockAddr(b, i int) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(n.subnet.IP)+uint32(4*b+i))
	return ip
}

// reserve marks the blocks of dynos found at startup as used.
func (n *network) reserve(recs []*netRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range recs {
		n.used[r.Block] = true
	}
}

// allocate picks a free block and names the dyno's network.
func (n *network) allocate(id string, port int) (*netRecord, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := n.blocks()
	for i := 0; i < total; i++ {
		b := (n.next + i) % total
		if n.used[b] {
			continue
		}
		n.used[b] = true
		n.next = b + 1
		sum := sha256.Sum256([]byte(id))
		return &netRecord{
			Block:  b,
			HostIf: "dy" + hex.EncodeToString(sum[:4]),
			Netns:  filepath.Join(n.dir, id),
			Port:   port,
			IP:     n.blockAddr(b, 2).String(),
		}, nil
	}
	return nil, fmt.Errorf("no free address in %s: %d dynos run already; give the runtime a larger subnet", n.subnet, total)
}

func (n *network) free(r *netRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.used, r.Block)
}

// setup creates the namespace, the veth pair and the firewall entries of a
// dyno. On error the caller runs teardown.
func (n *network) setup(r *netRecord) error {
	if err := createNetns(r.Netns); err != nil {
		return fmt.Errorf("create network namespace: %w", err)
	}
	ns, err := netns.GetFromPath(r.Netns)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer ns.Close()
	hostIP, dynoIP := n.blockAddr(r.Block, 1), n.blockAddr(r.Block, 2)
	mask := net.CIDRMask(30, 32)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: r.HostIf},
		PeerName:      peerIfName,
		PeerNamespace: netlink.NsFd(int(ns)), // created inside at once: never visible on the host
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", r.HostIf, err)
	}
	host, err := netlink.LinkByName(r.HostIf)
	if err != nil {
		return fmt.Errorf("veth %s: %w", r.HostIf, err)
	}
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: &net.IPNet{IP: hostIP, Mask: mask}}); err != nil {
		return fmt.Errorf("address of %s: %w", r.HostIf, err)
	}
	// No IPv6 on the host's side of the link (no link-local address a dyno
	// could reach the host on); the firewall drops it anyway.
	v6 := filepath.Join("/proc/sys/net/ipv6/conf", r.HostIf, "disable_ipv6")
	if err := os.WriteFile(v6, []byte("1\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", r.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", r.HostIf, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the dyno's namespace: %w", err)
	}
	defer h.Close()
	if err := configureInside(h, dynoIP, hostIP, mask); err != nil {
		return err
	}
	if err := n.fw.add(r); err != nil {
		return err
	}
	return nil
}

// configureInside sets up lo and eth0 and the default route inside.
func configureInside(h *netlink.Handle, dynoIP, hostIP net.IP, mask net.IPMask) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	eth, err := h.LinkByName(peerIfName)
	if err != nil {
		return fmt.Errorf("%s: %w", peerIfName, err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: dynoIP, Mask: mask}}); err != nil {
		return fmt.Errorf("address of %s: %w", peerIfName, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up: %w", peerIfName, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: hostIP}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// teardown removes whatever setup created, missing parts included.
func (n *network) teardown(r *netRecord) error {
	var errs []error
	if err := n.fw.remove(r); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetns(r); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		n.free(r)
	}
	return errors.Join(errs...)
}

// removeNetns deletes a dyno's veth pair and namespace, missing parts included.
func removeNetns(r *netRecord) error {
	var errs []error
	if link, err := netlink.LinkByName(r.HostIf); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", r.HostIf, err))
		}
	}
	if err := unix.Unmount(r.Netns, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		errs = append(errs, fmt.Errorf("unmount network namespace: %w", err))
	}
	if err := os.Remove(r.Netns); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove network namespace file: %w", err))
	}
	return errors.Join(errs...)
}

// createNetns creates a network namespace and bind-mounts it at path, where
// libcontainer joins it. The new namespace is entered by a thread of its own
// that is never used again: the goroutine exits with the OS thread locked,
// so Go ends the thread instead of handing it, in the wrong namespace, to
// other goroutines.
func createNetns(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount: %w", err)
			return
		}
		errc <- nil
	}()
	return <-errc
}
