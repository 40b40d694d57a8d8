package dhcp

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/herdproject/herd/pxe/inventory"
)

// pool is the dynamic range's in-memory lease table, keyed by MAC. It is
// not safe for concurrent use: the Server locks around it. Its size is
// bounded by the range: every entry holds a distinct address of it.
type pool struct {
	first, last netip.Addr
	excluded    map[netip.Addr]bool // reservations, server, router, DNS, network, broadcast
	byMAC       map[string]*lease
	byAddr      map[netip.Addr]*lease
	declined    map[netip.Addr]time.Time // address → when it may be used again
}

type lease struct {
	mac    string // string(net.HardwareAddr)
	addr   netip.Addr
	expiry time.Time
	bound  bool // ACKed, not merely offered
}

// newPool returns the pool for inv's dynamic range, nil when it has none.
func newPool(inv *inventory.Inventory, server netip.Addr) (*pool, error) {
	first, last := inv.RangeStart.Unmap(), inv.RangeEnd.Unmap()
	if !first.IsValid() && !last.IsValid() {
		return nil, nil
	}
	if !first.IsValid() || !last.IsValid() || !first.Is4() || !last.Is4() {
		return nil, fmt.Errorf("dhcp: inventory %s: dynamic range %v-%v: want two IPv4 addresses", inv.File, inv.RangeStart, inv.RangeEnd)
	}
	if last.Less(first) {
		return nil, fmt.Errorf("dhcp: inventory %s: dynamic range %v-%v ends before it starts", inv.File, first, last)
	}
	subnet := netip.PrefixFrom(inv.Subnet.Addr().Unmap(), inv.Subnet.Bits()).Masked()
	if !subnet.Contains(first) || !subnet.Contains(last) {
		return nil, fmt.Errorf("dhcp: inventory %s: dynamic range %v-%v is not inside subnet %v", inv.File, first, last, subnet)
	}
	p := &pool{
		first:    first,
		last:     last,
		excluded: make(map[netip.Addr]bool),
		byMAC:    make(map[string]*lease),
		byAddr:   make(map[netip.Addr]*lease),
		declined: make(map[netip.Addr]time.Time),
	}
	p.excluded[server] = true
	p.excluded[subnet.Addr()] = true
	p.excluded[broadcastAddr(subnet)] = true
	if inv.Router.IsValid() {
		p.excluded[inv.Router.Unmap()] = true
	}
	for _, a := range inv.DNS {
		p.excluded[a.Unmap()] = true
	}
	for _, n := range inv.Nodes {
		p.excluded[n.IP.Unmap()] = true
	}
	return p, nil
}

// broadcastAddr is the last address of an IPv4 prefix.
func broadcastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := range 4 {
		for b := range 8 {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	return netip.AddrFrom4(a)
}

func (p *pool) contains(a netip.Addr) bool {
	return a.Is4() && p.first.Compare(a) <= 0 && a.Compare(p.last) <= 0
}

// usable reports whether a may be leased at all (to anyone).
func (p *pool) usable(a netip.Addr, now time.Time) bool {
	if !p.contains(a) || p.excluded[a] {
		return false
	}
	if until, ok := p.declined[a]; ok {
		if now.Before(until) {
			return false
		}
		delete(p.declined, a)
	}
	return true
}

func (p *pool) add(mac string, a netip.Addr, expiry time.Time, bound bool) {
	l := &lease{mac: mac, addr: a, expiry: expiry, bound: bound}
	p.byMAC[mac] = l
	p.byAddr[a] = l
}

func (p *pool) remove(l *lease) {
	if p.byMAC[l.mac] == l {
		delete(p.byMAC, l.mac)
	}
	if p.byAddr[l.addr] == l {
		delete(p.byAddr, l.addr)
	}
}

// offer returns the address for mac's DISCOVER: its current (or expired
// but not reused) lease, else the first never-leased free address, else
// the address of the lease that expired longest ago. The address is held
// for hold unless the client already has a longer lease. ok is false when
// the range is exhausted.
func (p *pool) offer(mac string, now time.Time, hold time.Duration) (netip.Addr, bool) {
	if l := p.byMAC[mac]; l != nil {
		if p.usable(l.addr, now) {
			if l.expiry.Before(now) {
				l.bound = false // expired: merely offered again
			}
			if l.expiry.Before(now.Add(hold)) {
				l.expiry = now.Add(hold)
			}
			return l.addr, true
		}
		p.remove(l)
	}
	var oldest *lease
	for a := p.first; a.IsValid() && a.Compare(p.last) <= 0; a = a.Next() {
		if !p.usable(a, now) {
			continue
		}
		l := p.byAddr[a]
		if l == nil {
			p.add(mac, a, now.Add(hold), false)
			return a, true
		}
		if l.expiry.Before(now) && (oldest == nil || l.expiry.Before(oldest.expiry)) {
			oldest = l
		}
	}
	if oldest == nil {
		return netip.Addr{}, false
	}
	p.remove(oldest)
	p.add(mac, oldest.addr, now.Add(hold), false)
	return oldest.addr, true
}

// request binds a to mac for d (RFC 2131 §4.3.2) and reports whether it
// could: a must be in the range, usable and not leased to another MAC.
// A client that asks for another free address than the one it holds gets
// it (and loses the old one); so does a client the table forgot (herd
// restarted).
func (p *pool) request(mac string, a netip.Addr, now time.Time, d time.Duration) bool {
	if !p.usable(a, now) {
		return false
	}
	if l := p.byAddr[a]; l != nil && l.mac != mac {
		if !l.expiry.Before(now) {
			return false
		}
		p.remove(l)
	}
	if l := p.byMAC[mac]; l != nil && l.addr != a {
		p.remove(l)
	}
	p.add(mac, a, now.Add(d), true)
	return true
}

// release frees mac's lease of a (RFC 2131 §4.4.6).
func (p *pool) release(mac string, a netip.Addr) bool {
	l := p.byMAC[mac]
	if l == nil || l.addr != a {
		return false
	}
	p.remove(l)
	return true
}

// decline frees mac's lease of a and keeps a out of use for d: another host
// answers ARP for it (RFC 2131 §4.3.3).
func (p *pool) decline(mac string, a netip.Addr, now time.Time, d time.Duration) bool {
	l := p.byMAC[mac]
	if l == nil || l.addr != a {
		return false
	}
	p.remove(l)
	p.declined[a] = now.Add(d)
	return true
}

// forgetOffer drops mac's lease when it was only offered: the client chose
// another server (RFC 2131 §4.3.2, SELECTING with another server id).
func (p *pool) forgetOffer(mac string) {
	if l := p.byMAC[mac]; l != nil && !l.bound {
		p.remove(l)
	}
}
