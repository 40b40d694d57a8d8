package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// ErrPortInUse is matched (errors.Is) by the error Serve returns when
// another server already listens on port 67 (or 4011) on the interface.
var ErrPortInUse = errors.New("dhcp: port in use")

// PortInUseError says which port on which interface another server holds.
type PortInUseError struct {
	Port      int
	Interface string
	Proxy     bool
	Err       error // the bind error (EADDRINUSE)
}

func (e *PortInUseError) Error() string {
	switch {
	case e.Port == BootServerPort:
		return fmt.Sprintf("another proxyDHCP server is already listening on port %d (interface %s): stop it", e.Port, e.Interface)
	case e.Proxy:
		return fmt.Sprintf("another DHCP server is already listening on port %d (interface %s): stop it, or run herd's proxyDHCP on another host", e.Port, e.Interface)
	}
	return fmt.Sprintf("another DHCP server is already listening on port %d (interface %s): stop it or use --proxy", e.Port, e.Interface)
}

// Unwrap returns the bind error.
func (e *PortInUseError) Unwrap() error { return e.Err }

// Is matches ErrPortInUse.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// Serve listens on port 67 of Config.Interface (and on port 4011 in proxy
// mode) and answers requests until ctx ends (it then returns nil) or Close
// is called (ErrServerClosed). It may be called once.
//
// Each socket is bound to 0.0.0.0 (broadcasts reach only wildcard
// sockets) and to the interface (SO_BINDTODEVICE), without SO_REUSEADDR or
// SO_REUSEPORT. So the bind fails with EADDRINUSE, and Serve with a
// *PortInUseError, when any other socket already serves that port on that
// interface: one bound to the same interface, or one bound to no interface
// (dnsmasq, ISC dhcpd's fallback socket, server4 with SO_REUSEPORT). A
// second server can then not silently split the traffic, and servers on
// other interfaces do not conflict. A server that only uses packet
// sockets and no UDP socket cannot be seen this way.
//
// Each socket has one read loop; replies go to the relay (giaddr), to
// ciaddr, or to 255.255.255.255:68 out of the interface (RFC 2131 §4.1),
// and on port 4011 back to the sender.
func (s *Server) Serve(ctx context.Context) error {
	first := false
	s.serving.Do(func() { first = true })
	if !first {
		return errors.New("dhcp: Serve called twice")
	}
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("dhcp: interface %s: %w", s.cfg.Interface, err)
	}
	if !hasAddr(ifi, s.serverIP) {
		s.warnf("dhcp: %v is not an address of %s; clients will be sent to it anyway", s.serverIP, ifi.Name)
	}
	ports := []int{ServerPort}
	if s.cfg.Proxy {
		ports = append(ports, BootServerPort)
	}
	var conns []*net.UDPConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for _, port := range ports {
		c, err := listenUDP(ctx, ifi.Name, port)
		if err != nil {
			closeAll()
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.EADDRINUSE) {
				return &PortInUseError{Port: port, Interface: ifi.Name, Proxy: s.cfg.Proxy, Err: err}
			}
			return fmt.Errorf("dhcp: listen on port %d (interface %s): %w", port, ifi.Name, err)
		}
		conns = append(conns, c)
	}
	mode := "DHCP"
	if s.cfg.Proxy {
		mode = "proxyDHCP"
	}
	s.debugf("dhcp: %s server on %s (%v), ports %v", mode, ifi.Name, s.serverIP, ports)
	close(s.listening)

	errc := make(chan error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { errc <- s.serveConn(c, ports[i]) })
	}
	var result error
	select {
	case <-ctx.Done():
	case <-s.done:
		result = ErrServerClosed
	case err := <-errc:
		result = err
	}
	closeAll()
	wg.Wait()
	return result
}

// Close stops Serve, which returns ErrServerClosed. It is safe to call more
// than once, and before Serve.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

// listenUDP opens 0.0.0.0:port bound to iface, with SO_BROADCAST (Go's
// default for UDP) and no address or port reuse.
func listenUDP(ctx context.Context, iface string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.BindToDevice(int(fd), iface)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("bind to device %s: %w", iface, serr)
			}
			return nil
		},
	}
	pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// serveConn is one socket's read loop: read, decode, Handle, send. It
// returns nil when the socket is closed.
func (s *Server) serveConn(c *net.UDPConn, port int) error {
	buf := make([]byte, 1<<16)
	backoff := time.Duration(0)
	for {
		n, peer, err := c.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Transient (e.g. ENOBUFS): log, back off to a cap, go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.warnf("dhcp: read on port %d: %v; retrying in %v", port, err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue // not DHCP, or malformed: nothing to answer
		}
		resp, err := s.handle(req, port)
		if err != nil {
			s.warnf("%v", err)
			continue
		}
		if resp == nil {
			continue
		}
		dst := replyAddr(req, resp, peer, port)
		if _, err := c.WriteToUDP(resp.ToBytes(), dst); err != nil {
			s.warnf("dhcp: send %s to %s (%v): %v", resp.MessageType(), resp.ClientHWAddr, dst, err)
		}
	}
}

// replyAddr is where a reply goes (RFC 2131 §4.1): back to the sender on
// the boot server port; to the relay agent when giaddr is set; broadcast
// for a NAK; to ciaddr when the client has an address; broadcast
// otherwise (a UDP socket cannot unicast to an address the client does
// not have yet, as that needs an ARP entry for chaddr).
func replyAddr(req, resp *dhcpv4.DHCPv4, peer *net.UDPAddr, port int) *net.UDPAddr {
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	if port == BootServerPort {
		if peer == nil || addrOf(peer.IP) == (netip.Addr{}) {
			return bcast
		}
		return peer
	}
	if gi := addrOf(req.GatewayIPAddr); gi.IsValid() {
		return &net.UDPAddr{IP: ip4(gi), Port: ServerPort}
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return bcast
	}
	if ci := addrOf(req.ClientIPAddr); ci.IsValid() {
		return &net.UDPAddr{IP: ip4(ci), Port: ClientPort}
	}
	return bcast
}

// hasAddr reports whether a is one of ifi's addresses.
func hasAddr(ifi *net.Interface, a netip.Addr) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, ad := range addrs {
		if ipn, ok := ad.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(ipn.IP); ok && x.Unmap() == a {
				return true
			}
		}
	}
	return false
}
