package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNetwork is the network of test runtimes: its own table and subnet, so
// that tests do not touch an agent's "dyno" table on the same machine.
var testNetwork = NetworkConfig{Enabled: true, Subnet: "10.214.0.0/24", Table: "dynotest"}

func newNetRuntime(t testing.TB) *ContainerRuntime {
	t.Helper()
	needRoot(t)
	rt, err := NewContainerRuntime(ContainerConfig{StateDir: t.TempDir(), CgroupParent: "dyno-test", Network: testNetwork})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return rt
}

// startDyno starts a dyno whose output is collected; Close runs at the end
// of the test.
func startDyno(t *testing.T, rt Runtime, spec Spec) (Dyno, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	spec.Stdout, spec.Stderr = out, out
	d, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, out
}

// pyServe serves HTTP on each port (the first in the foreground) and says
// "ready" once all listen.
func pyServe(ports ...int) string {
	return fmt.Sprintf(`python3 -c '
import http.server, socketserver, threading, sys
servers = [socketserver.TCPServer(("0.0.0.0", p), http.server.SimpleHTTPRequestHandler) for p in %s]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
servers[0].serve_forever()
'`, strings.ReplaceAll(fmt.Sprint(ports), " ", ","))
}

// pyConnect tries a TCP connection from inside a dyno and prints
// "connected" or "blocked".
func pyConnect(addr string, port int) string {
	return fmt.Sprintf(`python3 -c '
import socket
try:
    socket.create_connection(("%s", %d), timeout=1).close(); print("connected")
except OSError as e:
    print("blocked", e)
'`, addr, port)
}

func httpGet(addr string, port int) error {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/", net.JoinHostPort(addr, fmt.Sprint(port))))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func TestNetworkReachability(t *testing.T) {
	rt := newNetRuntime(t)
	slug := newTestSlug(t)

	// B: a web dyno on PORT 5000 that also listens on 5001.
	specB := testSpec(t, slug, pyServe(5000, 5001))
	specB.Port = 5000
	b, outB := startDyno(t, rt, specB)
	waitFor(t, func() bool { return strings.Contains(outB.String(), "ready") })
	if b.Addr() == "127.0.0.1" || net.ParseIP(b.Addr()) == nil {
		t.Fatalf("Addr %q, want the dyno's own address", b.Addr())
	}
	gateway := b.(*containerDyno).rt.net.blockAddr(b.(*containerDyno).net.Block, 1).String()

	// Host listeners a dyno must not reach: loopback, the veth's host side
	// and the host's other addresses.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hostPort := ln.Addr().(*net.TCPAddr).Port
	targets := []string{"127.0.0.1", gateway}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() && !strings.HasPrefix(ip.IP.String(), "10.214.") {
				targets = append(targets, ip.IP.String())
				break
			}
		}
	}

	t.Run("host reaches PORT", func(t *testing.T) {
		if err := httpGet(b.Addr(), 5000); err != nil {
			t.Fatalf("GET dyno's PORT: %v", err)
		}
	})
	t.Run("host does not reach another port", func(t *testing.T) {
		if err := httpGet(b.Addr(), 5001); err == nil {
			t.Fatal("host reached the dyno on a port other than PORT")
		}
	})
	for _, target := range targets {
		t.Run("dyno does not reach host "+target, func(t *testing.T) {
			out, _, _ := runDyno(t, rt, testSpec(t, slug, pyConnect(target, hostPort)))
			if !strings.HasPrefix(out, "blocked") {
				t.Fatalf("dyno connecting to the host at %s:%d: %q", target, hostPort, out)
			}
		})
	}
	t.Run("dyno does not reach another dyno", func(t *testing.T) {
		out, _, _ := runDyno(t, rt, testSpec(t, slug, pyConnect(b.Addr(), 5000)))
		if !strings.HasPrefix(out, "blocked") {
			t.Fatalf("dyno connecting to another dyno's PORT: %q", out)
		}
	})
	t.Run("dyno reaches itself", func(t *testing.T) {
		cmd := pyServe(5000) + " & " + `sleep 0.3; ` + pyConnect("127.0.0.1", 5000) + `; kill %1`
		out, _, _ := runDyno(t, rt, testSpec(t, slug, cmd))
		if !strings.Contains(out, "connected") {
			t.Fatalf("dyno connecting to its own port: %q", out)
		}
	})
	// Controls: without their firewall entries the same connections work, so
	// the rules are what blocked them above.
	t.Run("control: host reaches other ports without the rules", func(t *testing.T) {
		fw := rt.net.fw
		rec := b.(*containerDyno).net
		if err := fw.remove(rec); err != nil {
			t.Fatal(err)
		}
		defer fw.add(rec)
		if err := httpGet(b.Addr(), 5001); err != nil {
			t.Fatalf("GET port 5001 without the rules: %v", err)
		}
	})
	t.Run("control: dyno reaches the host without the rules", func(t *testing.T) {
		d, out := startDyno(t, rt, testSpec(t, slug, "sleep 0.3; "+pyConnect(gateway, hostPort)))
		if err := rt.net.fw.remove(d.(*containerDyno).net); err != nil {
			t.Fatal(err)
		}
		d.Wait()
		if !strings.Contains(out.String(), "connected") {
			t.Fatalf("dyno connecting to the host without the rules: %q", out.String())
		}
	})
	t.Run("interfaces inside", func(t *testing.T) {
		out, _, _ := runDyno(t, rt, testSpec(t, slug, "cat /proc/net/route | awk 'NR>1 {print $1, $2}'; ls /sys/class/net | tr '\\n' ' '"))
		if !strings.Contains(out, "eth0 00000000") || !strings.Contains(out, "eth0 lo") {
			t.Fatalf("routes and interfaces inside: %q", out)
		}
	})
}

func TestNetworkCloseRemovesEverything(t *testing.T) {
	rt := newNetRuntime(t)
	slug := newTestSlug(t)
	spec := testSpec(t, slug, "sleep 60")
	spec.Port = 5000
	d, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	rec := *d.(*containerDyno).net
	link, err := netlink.LinkByName(rec.HostIf)
	if err != nil {
		t.Fatalf("veth %s: %v", rec.HostIf, err)
	}
	if v6, _ := netlink.AddrList(link, netlink.FAMILY_V6); len(v6) != 0 {
		t.Errorf("host side of the veth has IPv6 addresses %v, want none", v6)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertNetGone(t, rt, &rec)

	// A crashed agent's dyno is removed by Cleanup, network included.
	spec = testSpec(t, slug, "sleep 60")
	spec.Port = 5000
	d, err = rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rec = *d.(*containerDyno).net
	rt2, err := NewContainerRuntime(ContainerConfig{StateDir: rt.stateDir, CgroupParent: rt.cgroupParent, Network: testNetwork})
	if err != nil {
		t.Fatal(err)
	}
	if !rt2.net.used[rec.Block] {
		t.Error("a new runtime would hand out the running dyno's addresses again")
	}
	if err := rt2.Shutdown(context.Background()); err == nil {
		t.Error("Shutdown with a dyno left succeeded, want an error")
	}
	if err := rt2.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNetGone(t, rt2, &rec)
}

func assertNetGone(t *testing.T, rt *ContainerRuntime, rec *netRecord) {
	t.Helper()
	if _, err := netlink.LinkByName(rec.HostIf); err == nil {
		t.Errorf("veth %s left", rec.HostIf)
	}
	if _, err := os.Stat(rec.Netns); err == nil {
		t.Errorf("netns file %s left", rec.Netns)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), rec.Netns) {
		t.Errorf("netns mount %s left", rec.Netns)
	}
	if rt.net.used[rec.Block] {
		t.Errorf("address block %d not freed", rec.Block)
	}
}

// outsideHost is a network namespace standing for the internet: a veth from
// the host to it and a TCP listener inside that answers with the address it
// sees the connection come from.
func outsideHost(t *testing.T) (addr string, port int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outside")
	if err := createNetns(path); err != nil {
		t.Fatal(err)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	const hostIf = "dyntest-out"
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(hostIf); err == nil {
			netlink.LinkDel(l)
		}
		ns.Close()
		unix.Unmount(path, unix.MNT_DETACH)
	})
	mask := net.CIDRMask(30, 32)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostIf}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		t.Fatal(err)
	}
	host, err := netlink.LinkByName(hostIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 215, 0, 2), Mask: mask}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	// No route back to the dynos' subnet: only masqueraded traffic gets answers.
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 215, 0, 1), Mask: mask}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	// A socket belongs to the namespace of the thread that made it.
	lnc := make(chan net.Listener, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			lnc <- nil
			return
		}
		ln, err := net.Listen("tcp4", "10.215.0.1:0")
		if err != nil {
			ln = nil
		}
		lnc <- ln
	}()
	ln := <-lnc
	if ln == nil {
		t.Fatal("cannot listen in the outside namespace")
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			c.Write([]byte(host + "\n"))
			c.Close()
		}
	}()
	return "10.215.0.1", ln.Addr().(*net.TCPAddr).Port
}

func TestNetworkOutboundThroughNAT(t *testing.T) {
	needRoot(t)
	addr, port := outsideHost(t)
	slug := newTestSlug(t)
	cmd := fmt.Sprintf(`python3 -c '
import socket
try:
    s = socket.create_connection(("%s", %d), timeout=1); print("seen as", s.recv(100).decode().strip())
except OSError as e:
    print("blocked", e)
'`, addr, port)
	tests := []struct {
		name string
		deny []string
		want string
	}{
		{"allowed and masqueraded", nil, "seen as 10.215.0.2"},
		{"denied net", []string{"192.0.2.0/24", "10.215.0.0/30"}, "blocked timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testNetwork
			cfg.DenyNets = tt.deny
			rt, err := NewContainerRuntime(ContainerConfig{StateDir: t.TempDir(), CgroupParent: "dyno-test", Network: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Shutdown(context.Background())
			out, errOut, _ := runDyno(t, rt, testSpec(t, slug, cmd))
			if strings.TrimSpace(out) != tt.want {
				t.Fatalf("dyno connecting out: %q (stderr %q), want %q", out, errOut, tt.want)
			}
		})
	}
}

func TestDynoResolvConf(t *testing.T) {
	_, systemd := os.Stat("/run/systemd/resolve/resolv.conf")
	tests := []struct {
		name, host      string
		want, wantNot   []string
		needsNoResolved bool
	}{
		{"keeps remote servers", "search example.com\nnameserver 10.255.255.53\n", []string{"search example.com", "nameserver 10.255.255.53"}, []string{"8.8.8.8"}, false},
		{"drops loopback servers", "nameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\n", []string{"nameserver 192.0.2.1"}, []string{"127.0.0.53", "::1"}, false},
		{"falls back to public servers", "nameserver 127.0.0.53\noptions edns0\n", []string{"options edns0", "nameserver 8.8.8.8"}, []string{"127.0.0.53"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsNoResolved && systemd == nil {
				t.Skip("this host has systemd-resolved's upstream list, which is used instead")
			}
			got := string(dynoResolvConf([]byte(tt.host)))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("resolv.conf %q lacks %q", got, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("resolv.conf %q has %q", got, w)
				}
			}
		})
	}
}
