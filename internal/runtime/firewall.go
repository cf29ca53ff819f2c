package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// firewall is the runtime's own nftables table (family inet). It keeps dynos
// away from the host and from each other:
//
//	input:       from a dyno interface: replies only (no NATS, API, agent...)
//	forward:     dyno -> dyno and dyno -> denied nets dropped; into a dyno:
//	             replies only; dyno -> elsewhere allowed
//	output:      host -> dyno: new connections only to (dyno ip . PORT)
//	postrouting: dyno -> out masqueraded
//
// Two named sets drive the rules, so starting a dyno adds two elements and
// changes no rule: "ifs" (host-side veth names) and "ports" (ip . port).
type firewall struct {
	mu     sync.Mutex // one nftables transaction at a time
	table  *nftables.Table
	ifs    *nftables.Set
	ports  *nftables.Set
	subnet *net.IPNet
	deny   []*net.IPNet // destinations dynos must not reach through the host
	// published maps a PORT to its dyno's ip for DNAT from the host's
	// addresses (publish.go); nil unless NetworkConfig.Publish.
	published *nftables.Set
}

func newFirewall(table string, subnet *net.IPNet, deny []*net.IPNet) *firewall {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	return &firewall{
		table:  t,
		ifs:    &nftables.Set{Table: t, Name: "ifs", KeyType: nftables.TypeIFName},
		ports:  &nftables.Set{Table: t, Name: "ports", KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService), Concatenation: true},
		subnet: subnet,
		deny:   deny,
	}
}

// install (re)creates the table from scratch with the given dynos in its sets.
// Deleting and adding happen in one transaction: there is no moment without
// rules for dynos that are still running.
func (f *firewall) install(dynos []*netRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err == nil {
		for _, t := range tables {
			if t.Name == f.table.Name {
				c.DelTable(f.table)
			}
		}
	}
	c.AddTable(f.table)
	var ifs, ports []nftables.SetElement
	for _, d := range dynos {
		ifs = append(ifs, ifElement(d.HostIf))
		if d.Port > 0 {
			ports = append(ports, portElement(d.addr(), d.Port))
		}
	}
	if err := c.AddSet(f.ifs, ifs); err != nil {
		return fmt.Errorf("nftables set: %w", err)
	}
	if err := c.AddSet(f.ports, ports); err != nil {
		return fmt.Errorf("nftables set: %w", err)
	}
	if err := f.addPublishedSet(c, dynos); err != nil {
		return err
	}
	f.addChains(c)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", f.table.Name, err)
	}
	return nil
}

func (f *firewall) addChains(c *nftables.Conn) {
	accept := nftables.ChainPolicyAccept
	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: f.table, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept})
	}
	rule := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: all})
	}
	drop, acc := verdict(expr.VerdictDrop), verdict(expr.VerdictAccept)
	fromDyno := f.lookupIf(expr.MetaKeyIIFNAME, false)
	toDyno := f.lookupIf(expr.MetaKeyOIFNAME, false)

	in := chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	rule(in, fromDyno, ctReply(), acc)
	rule(in, fromDyno, drop)

	fwd := chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	rule(fwd, fromDyno, toDyno, drop)
	for _, n := range f.deny {
		rule(fwd, fromDyno, ipIn(16, n), drop)
	}
	rule(fwd, toDyno, ctReply(), acc)
	f.publishForward(c, fwd)
	rule(fwd, toDyno, drop)

	out := chain("output", nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriorityFilter)
	rule(out, toDyno, ctReply(), acc)
	rule(out, toDyno, f.toDynoPort(), acc)
	rule(out, toDyno, drop)

	post := chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	rule(post, f.fromSubnet(), f.lookupIf(expr.MetaKeyOIFNAME, true), []expr.Any{&expr.Masq{}})
	f.addPublishChains(c)
}

// add puts a dyno into the sets.
func (f *firewall) add(d *netRecord) error {
	return f.change(d, true)
}

// remove takes a dyno out of the sets; a missing table or element is fine.
func (f *firewall) remove(d *netRecord) error {
	return f.change(d, false)
}

func (f *firewall) change(d *netRecord, add bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	op := c.SetAddElements
	if !add {
		op = c.SetDeleteElements
	}
	if err := op(f.ifs, []nftables.SetElement{ifElement(d.HostIf)}); err != nil {
		return err
	}
	if d.Port > 0 {
		if err := op(f.ports, []nftables.SetElement{portElement(d.addr(), d.Port)}); err != nil {
			return err
		}
	}
	if err := f.changePublished(op, d); err != nil {
		return err
	}
	err = c.Flush()
	if err != nil && !add && errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nftables table inet %s: update sets for %s: %w", f.table.Name, d.HostIf, err)
	}
	return nil
}

// uninstall deletes the table (no error if it is absent).
func (f *firewall) uninstall() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == f.table.Name {
			c.DelTable(f.table)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("delete nftables table inet %s: %w", f.table.Name, err)
			}
		}
	}
	return nil
}

// lookupIf matches when the input or output interface is (or, inverted, is
// not) a dyno's host-side veth.
func (f *firewall) lookupIf(key expr.MetaKey, invert bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: f.ifs.Name, SetID: f.ifs.ID, Invert: invert},
	}
}

// toDynoPort matches TCP to a (dyno ip . PORT) of the ports set.
func (f *firewall) toDynoPort() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		// ip daddr into the first 32-bit register of reg 1, tcp dport into
		// the next one (9): the layout of a concatenated key.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: f.ports.Name, SetID: f.ports.ID},
	}
}

// fromSubnet matches IPv4 packets from the dynos' subnet.
func (f *firewall) fromSubnet() []expr.Any { return ipIn(12, f.subnet) }

// ipIn matches IPv4 packets whose source (offset 12) or destination (16)
// address is in n.
func ipIn(offset uint32, n *net.IPNet) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte(n.Mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(n.IP.To4())},
	}
}

// ctReply matches packets of connections already accepted (ct state
// established,related).
func ctReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// ifElement is an interface name as the kernel compares it: IFNAMSIZ bytes,
// zero-padded.
func ifElement(name string) nftables.SetElement {
	key := make([]byte, unix.IFNAMSIZ)
	copy(key, name)
	return nftables.SetElement{Key: key}
}

// portElement is an ip . port key, each part padded to 4 bytes.
func portElement(ip net.IP, port int) nftables.SetElement {
	key := make([]byte, 8)
	copy(key, ip.To4())
	binary.BigEndian.PutUint16(key[4:], uint16(port))
	return nftables.SetElement{Key: key}
}
