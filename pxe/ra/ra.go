// Package ra answers IPv6 Router Solicitations on the boot network with a
// Router Advertisement that announces no router: router lifetime 0, no
// prefix, neither the M nor the O flag (RFC 4861 §4.2, §6.2.6).
//
// iPXE configures IPv6 alongside IPv4 and, on a network without a router,
// waits for an advertisement until it gives up (about 16 seconds per
// boot). An advertisement that says "no default router, nothing to
// configure" ends that wait at once, and changes nothing for any host: a
// lifetime of 0 only says this host is not a default router, and without
// prefix information or M/O flags nobody configures an address or asks
// DHCPv6.
//
// Replies go unicast to the soliciting host's address (allowed by RFC 4861
// §6.2.6), so many nodes booting at once are each answered at once; a
// solicitation from the unspecified address is answered to all-nodes, at
// most once a second.
package ra

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ICMPv6 and neighbor discovery constants (RFC 4861 §4.1, §4.2, §4.6).
const (
	protoICMPv6      = 58
	ndpHopLimit      = 255 // every ND message is sent with, and must arrive with, 255
	optSourceLLAddr  = 1
	raHeaderLen      = 16 // type, code, checksum, hop limit, flags, lifetime, reachable, retrans
	rsHeaderLen      = 8  // type, code, checksum, reserved
	multicastMinGap  = time.Second
	sendErrorLogEach = 10 * time.Second
)

var (
	allNodes   = net.ParseIP("ff02::1")
	allRouters = net.ParseIP("ff02::2")
)

// Serve answers Router Solicitations received on iface until ctx ends, and
// then returns nil. When IPv6 is disabled on iface (or absent from the
// kernel) it logs so and returns nil at once. log may be nil.
func Serve(ctx context.Context, iface string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("ra: interface %s: %w", iface, err)
	}
	if why := ipv6Disabled(ifi.Name); why != "" {
		log.Debug(fmt.Sprintf("ra: IPv6 is disabled on %s (%s): not answering router solicitations", ifi.Name, why))
		return nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifi.Name) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.EAFNOSUPPORT) {
			log.Debug(fmt.Sprintf("ra: no IPv6 in this kernel: not answering router solicitations on %s", ifi.Name))
			return nil
		}
		return fmt.Errorf("ra: listen for ICMPv6 on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	p := ipv6.NewPacketConn(c)
	if err := setup(p, ifi); err != nil {
		return fmt.Errorf("ra: set up ICMPv6 socket on %s: %w", ifi.Name, err)
	}
	log.Debug(fmt.Sprintf("ra: answering router solicitations on %s with \"no router here\"", ifi.Name))

	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	ra, err := routerAdvertisement(ifi.HardwareAddr)
	if err != nil {
		return err
	}
	var lastMulticast, lastErrLog time.Time
	buf := make([]byte, 1500)
	backoff := time.Duration(0)
	for {
		n, cm, src, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("ra: read on %s: %w", ifi.Name, err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn(fmt.Sprintf("ra: read on %s: %v; retrying in %v", ifi.Name, err, backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		srcIP := ipOf(src)
		if !validSolicitation(buf[:n], cm, srcIP, ifi.Index) {
			continue
		}
		dst := &net.IPAddr{IP: srcIP, Zone: ifi.Name}
		if srcIP.IsUnspecified() {
			now := time.Now()
			if now.Sub(lastMulticast) < multicastMinGap {
				continue
			}
			lastMulticast = now
			dst = &net.IPAddr{IP: allNodes, Zone: ifi.Name}
		}
		wcm := &ipv6.ControlMessage{HopLimit: ndpHopLimit, IfIndex: ifi.Index}
		if _, err := p.WriteTo(ra, wcm, dst); err != nil && ctx.Err() == nil {
			if now := time.Now(); now.Sub(lastErrLog) >= sendErrorLogEach {
				lastErrLog = now
				log.Debug(fmt.Sprintf("ra: send router advertisement to %v on %s: %v", dst.IP, ifi.Name, err))
			}
		}
	}
}

// setup filters for Router Solicitations, joins all-routers (where they
// are sent) and makes replies leave iface with hop limit 255.
func setup(p *ipv6.PacketConn, ifi *net.Interface) error {
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := p.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("ICMPv6 filter: %w", err)
	}
	if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface|ipv6.FlagDst, true); err != nil {
		return fmt.Errorf("control messages: %w", err)
	}
	if err := p.JoinGroup(ifi, &net.IPAddr{IP: allRouters}); err != nil {
		return fmt.Errorf("join %v: %w", allRouters, err)
	}
	if err := p.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("multicast interface: %w", err)
	}
	if err := p.SetMulticastHopLimit(ndpHopLimit); err != nil {
		return fmt.Errorf("multicast hop limit: %w", err)
	}
	if err := p.SetHopLimit(ndpHopLimit); err != nil {
		return fmt.Errorf("hop limit: %w", err)
	}
	if err := p.SetMulticastLoopback(false); err != nil {
		return fmt.Errorf("multicast loopback: %w", err)
	}
	return nil
}

// ipv6Disabled says why IPv6 is off on iface, "" when it is on (or when
// that cannot be told: then Serve tries).
func ipv6Disabled(iface string) string {
	if _, err := os.Stat("/proc/sys/net/ipv6"); errors.Is(err, fs.ErrNotExist) {
		return "no IPv6 in this kernel"
	}
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + iface + "/disable_ipv6")
	if err != nil {
		return ""
	}
	if strings.TrimSpace(string(b)) == "1" {
		return "net.ipv6.conf." + iface + ".disable_ipv6 = 1"
	}
	return ""
}

// validSolicitation checks a received ICMPv6 message as RFC 4861 §6.1.1
// asks of a Router Solicitation: hop limit 255, code 0, at least 8 bytes,
// every option of non-zero length, and no source link-layer address option
// when the source is unspecified. cm may be nil (then hop limit and
// interface cannot be checked, and are not).
func validSolicitation(b []byte, cm *ipv6.ControlMessage, src net.IP, ifIndex int) bool {
	if src == nil {
		return false
	}
	if cm != nil {
		if cm.HopLimit != ndpHopLimit || (cm.IfIndex != 0 && cm.IfIndex != ifIndex) {
			return false
		}
	}
	m, err := icmp.ParseMessage(protoICMPv6, b)
	if err != nil || m.Type != ipv6.ICMPTypeRouterSolicitation || m.Code != 0 || len(b) < rsHeaderLen {
		return false
	}
	opts := b[rsHeaderLen:]
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return false
		}
		if opts[0] == optSourceLLAddr && src.IsUnspecified() {
			return false
		}
		opts = opts[int(opts[1])*8:]
	}
	return true
}

// routerAdvertisement builds the ICMPv6 Router Advertisement (RFC 4861
// §4.2) with current hop limit 0 (unspecified), M = O = 0, router lifetime
// 0, reachable time 0, retransmission timer 0, and a source link-layer
// address option when mac is Ethernet. The kernel fills in the checksum.
func routerAdvertisement(mac net.HardwareAddr) ([]byte, error) {
	// After type, code and checksum: hop limit, flags, router lifetime
	// (2 bytes), reachable time (4), retransmission timer (4); all zero.
	body := make([]byte, raHeaderLen-4)
	if len(mac) == 6 {
		body = append(body, optSourceLLAddr, 1)
		body = append(body, mac...)
	}
	m := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Code: 0, Body: &icmp.RawBody{Data: body}}
	b, err := m.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("ra: build router advertisement: %w", err)
	}
	return b, nil
}

func ipOf(a net.Addr) net.IP {
	if ia, ok := a.(*net.IPAddr); ok {
		return ia.IP
	}
	return nil
}
