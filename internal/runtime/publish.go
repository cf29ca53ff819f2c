package runtime

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Publishing makes web dynos reachable from other hosts: with
// NetworkConfig.Publish, a TCP connection to any of the host's own
// addresses on a dyno's PORT is DNATed to (dyno ip, PORT). The agent's
// port pool already makes every PORT unique on the host, so the host port
// is the PORT itself and one map, port -> dyno ip, drives the rules:
//
//	prerouting (nat): fib daddr type local, tcp dport in @published -> dnat
//	output (nat):     the same for the host's own connections, except to
//	                  127.0.0.0/8 (loopback cannot be routed to a veth
//	                  without route_localnet; dial a non-loopback address)
//	forward (filter): into a dyno, DNATed, to (ip . PORT) of @ports: accept
//
// A dyno's element is added and removed with the dyno (firewall.change),
// and Cleanup/NewContainerRuntime rebuild the map from the records.

const publishedSetName = "published"

// ipsDstNAT is the conntrack status bit of DNATed connections
// (IPS_DST_NAT in linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// enablePublish makes the firewall publish dynos' ports on the host.
func (f *firewall) enablePublish() {
	f.published = &nftables.Set{
		Table: f.table, Name: publishedSetName, IsMap: true,
		KeyType: nftables.TypeInetService, DataType: nftables.TypeIPAddr,
	}
}

// publishedElement maps a dyno's port to its address.
func publishedElement(d *netRecord) nftables.SetElement {
	key := make([]byte, 2)
	binary.BigEndian.PutUint16(key, uint16(d.Port))
	return nftables.SetElement{Key: key, Val: []byte(d.addr().To4())}
}

// addPublishedSet creates the map with the given dynos in it (install).
func (f *firewall) addPublishedSet(c *nftables.Conn, dynos []*netRecord) error {
	if f.published == nil {
		return nil
	}
	var elems []nftables.SetElement
	for _, d := range dynos {
		if d.Port > 0 && d.addr().To4() != nil {
			elems = append(elems, publishedElement(d))
		}
	}
	if err := c.AddSet(f.published, elems); err != nil {
		return fmt.Errorf("nftables map %s: %w", publishedSetName, err)
	}
	return nil
}

// changePublished adds or removes a dyno's element (firewall.change).
func (f *firewall) changePublished(op func(*nftables.Set, []nftables.SetElement) error, d *netRecord) error {
	if f.published == nil || d.Port <= 0 || d.addr().To4() == nil {
		return nil
	}
	return op(f.published, []nftables.SetElement{publishedElement(d)})
}

// publishForward accepts new connections into a dyno that were DNATed to
// its PORT; it must come before the forward chain's drop into dynos.
func (f *firewall) publishForward(c *nftables.Conn, fwd *nftables.Chain) {
	if f.published == nil {
		return
	}
	var exprs []expr.Any
	exprs = append(exprs, f.lookupIf(expr.MetaKeyOIFNAME, false)...)
	exprs = append(exprs,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	)
	exprs = append(exprs, f.toDynoPort()...)
	exprs = append(exprs, &expr.Verdict{Kind: expr.VerdictAccept})
	c.AddRule(&nftables.Rule{Table: f.table, Chain: fwd, Exprs: exprs})
}

// addPublishChains adds the DNAT chains (install).
func (f *firewall) addPublishChains(c *nftables.Conn) {
	if f.published == nil {
		return
	}
	accept := nftables.ChainPolicyAccept
	for _, hook := range []struct {
		name     string
		hook     *nftables.ChainHook
		loopback bool // skip 127.0.0.0/8 destinations
	}{{"publish-prerouting", nftables.ChainHookPrerouting, false}, {"publish-output", nftables.ChainHookOutput, true}} {
		ch := c.AddChain(&nftables.Chain{Name: hook.name, Table: f.table, Type: nftables.ChainTypeNAT,
			Hooknum: hook.hook, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
		exprs := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		}
		if hook.loopback {
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127}},
			)
		}
		exprs = append(exprs,
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: f.published.Name, SetID: f.published.ID},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
		)
		c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: exprs})
	}
}
