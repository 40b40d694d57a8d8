package ra

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/logging"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

func TestRouterAdvertisement(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	b, err := routerAdvertisement(mac)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		134, 0, 0, 0, // type RA, code 0, checksum (kernel)
		0, 0, 0, 0, // hop limit, M/O flags, router lifetime 0
		0, 0, 0, 0, // reachable time
		0, 0, 0, 0, // retransmission timer
		1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, // source link-layer address
	}
	if !bytes.Equal(b, want) {
		t.Errorf("RA = % x\nwant % x", b, want)
	}
	b, err = routerAdvertisement(nil)
	if err != nil || len(b) != raHeaderLen {
		t.Errorf("RA without MAC: % x, %v; want %d bytes", b, err, raHeaderLen)
	}
}

func TestValidSolicitation(t *testing.T) {
	ll := net.ParseIP("fe80::1")
	slla := []byte{1, 1, 2, 0, 0, 0, 0, 1}
	rs := func(opts ...byte) []byte { return append([]byte{133, 0, 0, 0, 0, 0, 0, 0}, opts...) }
	cm := func(hop, ifIndex int) *ipv6.ControlMessage {
		return &ipv6.ControlMessage{HopLimit: hop, IfIndex: ifIndex}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		cm   *ipv6.ControlMessage
		src  net.IP
		want bool
	}{
		{"plain", rs(), cm(255, 3), ll, true},
		{"with slla", rs(slla...), cm(255, 3), ll, true},
		{"no control message", rs(slla...), nil, ll, true},
		{"unspecified source", rs(), cm(255, 3), net.IPv6unspecified, true},
		{"unspecified source with slla", rs(slla...), cm(255, 3), net.IPv6unspecified, false},
		{"hop limit 64 (forwarded)", rs(), cm(64, 3), ll, false},
		{"other interface", rs(), cm(255, 4), ll, false},
		{"code 1", []byte{133, 1, 0, 0, 0, 0, 0, 0}, cm(255, 3), ll, false},
		{"short", []byte{133, 0, 0, 0, 0, 0}, cm(255, 3), ll, false},
		{"zero-length option", rs(1, 0, 0, 0, 0, 0, 0, 0), cm(255, 3), ll, false},
		{"truncated option", rs(1, 2, 0, 0, 0, 0, 0, 0), cm(255, 3), ll, false},
		{"odd option bytes", rs(1), cm(255, 3), ll, false},
		{"not an RS", []byte{134, 0, 0, 0, 0, 0, 0, 0}, cm(255, 3), ll, false},
		{"no source", rs(), cm(255, 3), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := validSolicitation(tc.b, tc.cm, tc.src, 3); got != tc.want {
				t.Errorf("validSolicitation = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzValidSolicitation(f *testing.F) {
	f.Add([]byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1}, true)
	f.Add([]byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, unspecified bool) {
		src := net.ParseIP("fe80::1")
		if unspecified {
			src = net.IPv6unspecified
		}
		validSolicitation(b, &ipv6.ControlMessage{HopLimit: 255, IfIndex: 1}, src, 1)
	})
}

func TestServeMissingInterface(t *testing.T) {
	if err := Serve(context.Background(), "herd-no-such0", nil); err == nil {
		t.Fatal("Serve on a missing interface succeeded")
	}
}

// logger collects log lines.
type logger struct {
	mu    sync.Mutex
	lines []string
}

func (l *logger) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// logger is a slog.Logger (every level) that collects into l.
func (l *logger) logger() *slog.Logger { return logging.Func(l.add) }

func (l *logger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestServeIPv6Disabled(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t)
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+tn.hostIf+"/disable_ipv6", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	var l logger
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Serve(ctx, tn.hostIf, l.logger()); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Serve waited for the context instead of returning")
	}
	if !strings.Contains(l.String(), "IPv6 is disabled on "+tn.hostIf) {
		t.Errorf("log %q does not say IPv6 is disabled", l.String())
	}
}

// TestServe solicits from the namespace end, as iPXE does (from its
// link-local address, to all-routers, with its MAC), and checks the
// advertisement.
func TestServe(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t)
	host, err := net.InterfaceByName(tn.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	var l logger
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, tn.hostIf, l.logger()) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
		t.Logf("log:\n%s", l.String())
	}()

	// The solicitor: a raw ICMPv6 socket on the namespace end.
	var p *ipv6.PacketConn
	var peer *net.Interface
	if err := tn.ns.Do(func() error {
		var err error
		if peer, err = net.InterfaceByName(tn.peerIf); err != nil {
			return err
		}
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), tn.peerIf) }); err != nil {
				return err
			}
			return serr
		}}
		c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		p = ipv6.NewPacketConn(c)
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeRouterAdvertisement)
		for _, err := range []error{
			p.SetICMPFilter(&f),
			p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true),
			p.SetMulticastInterface(peer),
			p.SetMulticastHopLimit(255),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("solicitor socket: %v", err)
	}
	defer p.Close()

	rs, err := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{
		Data: append([]byte{0, 0, 0, 0, 1, 1}, peer.HardwareAddr...),
	}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The zone by index: the net package resolves zone names through a
	// process-wide cache filled in the test's namespace, where a device
	// of that name may be another one.
	dst := &net.IPAddr{IP: allRouters, Zone: strconv.Itoa(peer.Index)}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// Serve may not listen yet: solicit again until answered.
		if _, err := p.WriteTo(rs, &ipv6.ControlMessage{HopLimit: 255}, dst); err != nil {
			t.Fatalf("send RS: %v", err)
		}
		p.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, cm, src, err := p.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			t.Fatalf("read: %v", err)
		}
		srcIP := src.(*net.IPAddr).IP
		if !srcIP.IsLinkLocalUnicast() {
			t.Errorf("RA from %v, want a link-local source", srcIP)
		}
		if cm == nil || cm.HopLimit != 255 {
			t.Errorf("RA control message %v, want hop limit 255", cm)
		}
		if cm != nil && !cm.Dst.IsLinkLocalUnicast() {
			t.Errorf("RA to %v, want unicast to the solicitor's link-local address", cm.Dst)
		}
		want := append([]byte{134, 0}, buf[2:4]...) // checksum as received
		want = append(want, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1)
		want = append(want, host.HardwareAddr...)
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("RA = % x\nwant % x", buf[:n], want)
		}
		return
	}
	t.Fatal("no router advertisement within 10 s")
}
