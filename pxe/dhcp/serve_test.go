package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/herdproject/herd/pxe/inventory"
)

// netInventory is the inventory of a test network: node1 (mac1) at .11,
// node2 (mac2) at .12, and the dynamic range .100-.101 when withRange.
func netInventory(tn *testNet, withRange bool) *inventory.Inventory {
	inv := &inventory.Inventory{
		File:   "netns.inventory",
		Subnet: tn.prefix,
		Router: tn.serverIP,
		DNS:    []netip.Addr{tn.serverIP},
		Domain: "herd.test",
		Lease:  30 * time.Minute,
		Nodes: []inventory.Node{
			{MAC: mac1, Name: "node1", IP: tn.addr(11)},
			{MAC: mac2, Name: "node2", IP: tn.addr(12)},
		},
	}
	if withRange {
		inv.RangeStart, inv.RangeEnd = tn.addr(100), tn.addr(101)
	}
	return inv
}

func netConfig(tn *testNet, withRange bool) Config {
	return Config{
		Interface: tn.hostIf,
		ServerIP:  tn.serverIP,
		Inventory: netInventory(tn, withRange),
		HTTPBase:  fmt.Sprintf("http://%v:8080", tn.serverIP),
	}
}

// startServer runs a server until the test ends and waits until it
// listens.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s := newTestServer(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	select {
	case <-s.listening:
	case err := <-errc:
		cancel()
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start listening")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// client returns a DHCP client on the namespace's end of the pair.
func (tn *testNet) client(t *testing.T, opts ...nclient4.ClientOpt) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := tn.ns.Do(func() (err error) {
		c, err = nclient4.New(tn.peerIf, append([]nclient4.ClientOpt{
			nclient4.WithTimeout(time.Second), nclient4.WithRetry(3),
		}, opts...)...)
		return err
	})
	if err != nil {
		t.Fatalf("nclient4.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// quickClient gives up after about a second: for tests that expect no
// answer.
func (tn *testNet) quickClient(t *testing.T, opts ...nclient4.ClientOpt) *nclient4.Client {
	return tn.client(t, append([]nclient4.ClientOpt{nclient4.WithTimeout(300 * time.Millisecond), nclient4.WithRetry(2)}, opts...)...)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServeReservation(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, mac1)
	startServer(t, netConfig(tn, false))
	c := tn.client(t)
	ctx := testContext(t)
	srv := tn.serverIP.String()
	url := fmt.Sprintf("http://%s:8080/boot/52:54:00:00:00:01.ipxe", srv)

	for _, tc := range []struct {
		name      string
		mods      []dhcpv4.Modifier
		file      string
		etherboot []byte
	}{
		{"bios", biosPXE, "undionly.kpxe", nil},
		{"ipxe", ipxeUC, url, []byte{176, 1, 1}},
		{"uefi", uefi7, "snponly.efi", nil},
		{"not pxe", nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease, err := c.Request(ctx, tc.mods...)
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			for _, m := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
				want := &reply{
					Type:      map[bool]string{true: "OFFER", false: "ACK"}[m == lease.Offer],
					YIAddr:    tn.addr(11).String(),
					SIAddr:    srv,
					ServerID:  srv,
					File:      tc.file,
					Opt67:     tc.file,
					Mask:      "255.255.255.0",
					Router:    srv,
					DNS:       srv,
					Domain:    "herd.test",
					Host:      "node1",
					Lease:     30 * time.Minute,
					Etherboot: tc.etherboot,
				}
				if diff := cmp.Diff(want, summarize(m)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", want.Type, diff)
				}
			}
		})
	}
}

func TestServeProxy(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, mac1)
	cfg := netConfig(tn, true) // a range must not matter in proxy mode
	cfg.Proxy = true
	startServer(t, cfg)
	ctx := testContext(t)
	srv := tn.serverIP.String()

	t.Run("pxe offer on 67", func(t *testing.T) {
		offer, err := tn.client(t).DiscoverOffer(ctx, biosPXE...)
		if err != nil {
			t.Fatalf("DiscoverOffer: %v", err)
		}
		want := &reply{Type: "OFFER", SIAddr: srv, ServerID: srv, File: "undionly.kpxe", Opt67: "undionly.kpxe",
			Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}}
		if diff := cmp.Diff(want, summarize(offer)); diff != "" {
			t.Errorf("proxy offer (-want +got):\n%s", diff)
		}
	})
	t.Run("no offer to non-pxe", func(t *testing.T) {
		offer, err := tn.quickClient(t).DiscoverOffer(ctx)
		if !errors.Is(err, nclient4.ErrNoResponse) {
			t.Fatalf("DiscoverOffer = %v, %v; want no response", offer, err)
		}
	})
	t.Run("request on 4011", func(t *testing.T) {
		// By now the network's DHCP server gave the client an address.
		client := tn.addr(50)
		tn.addPeerAddr(client)
		var conn *net.UDPConn
		if err := tn.ns.Do(func() (err error) {
			conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: client.AsSlice(), Port: ClientPort})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := message(t, dhcpv4.MessageTypeRequest, mac1, with(ipxeUC, dhcpv4.WithClientIP(client.AsSlice()))...)
		if _, err := conn.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: tn.serverIP.AsSlice(), Port: BootServerPort}); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer on port %d: %v", BootServerPort, err)
		}
		if from.Port != BootServerPort || !from.IP.Equal(tn.serverIP.AsSlice()) {
			t.Errorf("answer from %v, want %v:%d", from, srv, BootServerPort)
		}
		ack, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("http://%s:8080/boot/52:54:00:00:00:01.ipxe", srv)
		want := &reply{Type: "ACK", SIAddr: srv, CIAddr: client.String(), ServerID: srv, File: url, Opt67: url,
			Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}}
		if diff := cmp.Diff(want, summarize(ack)); diff != "" {
			t.Errorf("proxy ack (-want +got):\n%s", diff)
		}
	})
}

func TestServeDynamic(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, macUnknown)
	startServer(t, netConfig(tn, true))
	ctx := testContext(t)

	lease, err := tn.client(t).Request(ctx, biosPXE...)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	want := &reply{
		Type: "ACK", YIAddr: tn.addr(100).String(), SIAddr: tn.serverIP.String(), ServerID: tn.serverIP.String(),
		File: "undionly.kpxe", Opt67: "undionly.kpxe", Mask: "255.255.255.0", Router: tn.serverIP.String(),
		DNS: tn.serverIP.String(), Domain: "herd.test", Lease: 30 * time.Minute,
	}
	if diff := cmp.Diff(want, summarize(lease.ACK)); diff != "" {
		t.Errorf("dynamic lease (-want +got):\n%s", diff)
	}

	other := tn.client(t, nclient4.WithHWAddr(macOther))
	lease2, err := other.Request(ctx)
	if err != nil {
		t.Fatalf("second client: %v", err)
	}
	if got := lease2.ACK.YourIPAddr.String(); got != tn.addr(101).String() {
		t.Errorf("second client got %s, want %v", got, tn.addr(101))
	}
	// The range is exhausted; a released address goes to the next client.
	third := mustMAC("52:54:00:aa:bb:ee")
	if _, err := tn.quickClient(t, nclient4.WithHWAddr(third)).Request(ctx); !errors.Is(err, nclient4.ErrNoResponse) {
		t.Fatalf("third client in an exhausted range: %v, want no response", err)
	}
	// RELEASE is unicast from the client's address (RFC 2131 §4.4.6);
	// nclient4's raw socket would send it from 0.0.0.0, which the kernel
	// drops as a martian, so send it from a UDP socket on that address.
	release, err := dhcpv4.NewReleaseFromACK(lease2.ACK)
	if err != nil {
		t.Fatal(err)
	}
	tn.sendFrom(t, tn.addr(101), release)
	lease3, err := tn.client(t, nclient4.WithHWAddr(third)).Request(ctx)
	if err != nil {
		t.Fatalf("third client after release: %v", err)
	}
	if got := lease3.ACK.YourIPAddr.String(); got != tn.addr(101).String() {
		t.Errorf("third client got %s, want the released %v", got, tn.addr(101))
	}
}

func TestServeUnknownWithoutRange(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, macUnknown)
	startServer(t, netConfig(tn, false))
	lease, err := tn.quickClient(t).Request(testContext(t), biosPXE...)
	if !errors.Is(err, nclient4.ErrNoResponse) {
		t.Fatalf("unknown MAC without range: lease %v, err %v; want no response", lease, err)
	}
}

func TestServeRefusesSecondServer(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, mac1)
	wantMsg := fmt.Sprintf("another DHCP server is already listening on port 67 (interface %s): stop it or use --proxy", tn.hostIf)

	checkRefused := func(t *testing.T, cfg Config, msg string) {
		t.Helper()
		s := newTestServer(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.Serve(ctx)
		if !errors.Is(err, ErrPortInUse) {
			t.Fatalf("second server: Serve = %v, want ErrPortInUse", err)
		}
		if err.Error() != msg {
			t.Errorf("error %q, want %q", err, msg)
		}
	}

	t.Run("herd twice", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		first := newTestServer(t, netConfig(tn, false))
		errc := make(chan error, 1)
		go func() { errc <- first.Serve(ctx) }()
		select {
		case <-first.listening:
		case err := <-errc:
			t.Fatalf("first Serve: %v", err)
		}
		checkRefused(t, netConfig(tn, false), wantMsg)
		proxy := netConfig(tn, false)
		proxy.Proxy = true
		checkRefused(t, proxy, fmt.Sprintf("another DHCP server is already listening on port 67 (interface %s): stop it, or run herd's proxyDHCP on another host", tn.hostIf))
		// The first one still works.
		if _, err := tn.client(t).Request(testContext(t)); err != nil {
			t.Errorf("first server after the refusal: %v", err)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("first Serve: %v", err)
		}
		// Once it stopped, the port is free again.
		startServer(t, netConfig(tn, false))
	})

	t.Run("server4 with SO_REUSEPORT", func(t *testing.T) {
		tn := newTestNet(t, mac1)
		conn, err := server4.NewIPv4UDPConn(tn.hostIf, &net.UDPAddr{Port: ServerPort})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		checkRefused(t, netConfig(tn, false), fmt.Sprintf("another DHCP server is already listening on port 67 (interface %s): stop it or use --proxy", tn.hostIf))
	})

	t.Run("port 4011", func(t *testing.T) {
		tn := newTestNet(t, mac1)
		conn, err := server4.NewIPv4UDPConn(tn.hostIf, &net.UDPAddr{Port: BootServerPort})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cfg := netConfig(tn, false)
		cfg.Proxy = true
		checkRefused(t, cfg, fmt.Sprintf("another proxyDHCP server is already listening on port 4011 (interface %s): stop it", tn.hostIf))
	})

	t.Run("wildcard socket on no interface", func(t *testing.T) {
		// Like dnsmasq: 0.0.0.0:67 bound to no device. That would
		// conflict with every interface of the namespace, so it runs in
		// the test namespace, and so does the server.
		tn := newTestNet(t, mac1)
		cfg := netConfig(tn, false)
		cfg.Interface = tn.peerIf
		var serveErr error
		if err := tn.ns.Do(func() error {
			other, err := net.ListenPacket("udp4", "0.0.0.0:67")
			if err != nil {
				return err
			}
			defer other.Close()
			s, err := New(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			serveErr = s.Serve(ctx)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(serveErr, ErrPortInUse) {
			t.Fatalf("Serve = %v, want ErrPortInUse", serveErr)
		}
	})
}

// TestServeOnePerInterface: servers on two interfaces do not conflict.
func TestServeOnePerInterface(t *testing.T) {
	t.Parallel()
	a, b := newTestNet(t, mac1), newTestNet(t, mac2)
	startServer(t, netConfig(a, false))
	startServer(t, netConfig(b, false))
	for _, tc := range []struct {
		tn   *testNet
		want netip.Addr
	}{{a, a.addr(11)}, {b, b.addr(12)}} {
		lease, err := tc.tn.client(t).Request(testContext(t))
		if err != nil {
			t.Fatalf("%s: %v", tc.tn.hostIf, err)
		}
		if got := lease.ACK.YourIPAddr.String(); got != tc.want.String() {
			t.Errorf("%s: got %s, want %v", tc.tn.hostIf, got, tc.want)
		}
	}
}

func TestServeClose(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, mac1)
	s := newTestServer(t, netConfig(tn, false))
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background()) }()
	<-s.listening
	s.Close()
	s.Close()
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Fatal("second Serve succeeded")
	}
}

func TestServeNoInterface(t *testing.T) {
	cfg := testConfig(false)
	cfg.Interface = "herd-no-such0"
	err := newTestServer(t, cfg).Serve(context.Background())
	if err == nil {
		t.Fatal("Serve on a missing interface succeeded")
	}
}

// sendFrom gives the namespace's end the address src and sends m from
// src:68 to the server's port 67.
func (tn *testNet) sendFrom(t *testing.T, src netip.Addr, m *dhcpv4.DHCPv4) {
	t.Helper()
	tn.addPeerAddr(src)
	if err := tn.ns.Do(func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.AsSlice(), Port: ClientPort})
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.WriteToUDP(m.ToBytes(), &net.UDPAddr{IP: tn.serverIP.AsSlice(), Port: ServerPort})
		return err
	}); err != nil {
		t.Fatalf("send %s from %v: %v", m.MessageType(), src, err)
	}
}
