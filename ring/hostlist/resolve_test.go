package hostlist

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Tests resolve only literal addresses and "localhost": no DNS traffic.

func TestResolveLiterals(t *testing.T) {
	tests := []struct {
		name    string
		hosts   []string
		network string
		want    []Resolved
	}{
		{
			name:    "ipv4",
			hosts:   []string{"127.0.0.2", "127.0.0.3", "10.0.0.1"},
			network: "ip4",
			want: []Resolved{
				{"127.0.0.2", netip.MustParseAddr("127.0.0.2")},
				{"127.0.0.3", netip.MustParseAddr("127.0.0.3")},
				{"10.0.0.1", netip.MustParseAddr("10.0.0.1")},
			},
		},
		{
			name:    "mapped ipv4 is unmapped",
			hosts:   []string{"::ffff:127.0.0.2"},
			network: "ip4",
			want:    []Resolved{{"::ffff:127.0.0.2", netip.MustParseAddr("127.0.0.2")}},
		},
		{
			name:    "ipv6",
			hosts:   []string{"::1", "fd00::2"},
			network: "ip6",
			want: []Resolved{
				{"::1", netip.MustParseAddr("::1")},
				{"fd00::2", netip.MustParseAddr("fd00::2")},
			},
		},
		{
			name:    "default network is ip4",
			hosts:   []string{"127.0.0.1"},
			network: "",
			want:    []Resolved{{"127.0.0.1", netip.MustParseAddr("127.0.0.1")}},
		},
		{
			name:    "either",
			hosts:   []string{"::1", "127.0.0.1"},
			network: "ip",
			want: []Resolved{
				{"::1", netip.MustParseAddr("::1")},
				{"127.0.0.1", netip.MustParseAddr("127.0.0.1")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(context.Background(), nil, tt.hosts, tt.network)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveLocalhost(t *testing.T) {
	got, err := Resolve(context.Background(), net.DefaultResolver, []string{"localhost", "127.0.0.2"}, "ip4")
	if err != nil {
		var dnsErr *net.DNSError
		if errors.Is(err, ErrNoSuchHost) || errors.As(err, &dnsErr) {
			t.Skipf("localhost does not resolve here: %v", err)
		}
		t.Fatal(err)
	}
	if got[0].Name != "localhost" || !got[0].Addr.IsLoopback() || !got[0].Addr.Is4() {
		t.Errorf("localhost resolved to %v, want an IPv4 loopback address", got[0])
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name    string
		hosts   []string
		network string
		want    string
		is      error
	}{
		{
			name:    "same address",
			hosts:   []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "::ffff:10.0.0.3"},
			network: "ip4",
			want:    "hosts 3 (10.0.0.3) and 7 (::ffff:10.0.0.3) are the same address 10.0.0.3",
			is:      ErrDuplicate,
		},
		{
			name:    "same name",
			hosts:   []string{"127.0.0.1", "localhost", "LOCALHOST"},
			network: "ip4",
			want:    "hosts 2 (localhost) and 3 (LOCALHOST) are the same host",
			is:      ErrDuplicate,
		},
		{
			name:    "localhost and its address",
			hosts:   []string{"localhost", "127.0.0.1"},
			network: "ip4",
			want:    "hosts 1 (localhost) and 2 (127.0.0.1) are the same address 127.0.0.1",
			is:      ErrDuplicate,
		},
		{
			name:    "ipv6 literal with ip4",
			hosts:   []string{"::1"},
			network: "ip4",
			want:    "host ::1: an IPv6 address",
		},
		{
			name:    "ipv4 literal with ip6",
			hosts:   []string{"127.0.0.1"},
			network: "ip6",
			want:    "host 127.0.0.1: an IPv4 address",
		},
		{
			name:    "bad network",
			hosts:   []string{"127.0.0.1"},
			network: "tcp",
			want:    `network "tcp"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(context.Background(), nil, tt.hosts, tt.network)
			if err == nil {
				t.Fatalf("got %v, want an error", got)
			}
			if errors.Is(err, ErrNoSuchHost) && strings.Contains(strings.Join(tt.hosts, ","), "localhost") {
				t.Skipf("localhost does not resolve here: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not match %v", err, tt.is)
			}
		})
	}
}

// TestResolveNotFound uses a resolver whose DNS is a local stub that
// answers NXDOMAIN to everything, so that no query leaves the machine.
func TestResolveNotFound(t *testing.T) {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			// A net.Pipe is not a PacketConn, so the resolver speaks
			// DNS over it in the stream (TCP) framing whatever network.
			c1, c2 := net.Pipe()
			go nxdomainServer(c2)
			return c1, nil
		},
	}
	_, err := Resolve(context.Background(), r, []string{"127.0.0.1", "nodex.invalid"}, "ip4")
	if !errors.Is(err, ErrNoSuchHost) {
		t.Fatalf("got %v, want ErrNoSuchHost", err)
	}
	want := "host nodex.invalid: no such host: check -H or the configuration file"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

// nxdomainServer answers every DNS query on c (stream framing: a 2-byte
// length before each message) with NXDOMAIN.
func nxdomainServer(c net.Conn) {
	defer c.Close()
	for {
		var l [2]byte
		if _, err := readFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, int(l[0])<<8|int(l[1]))
		if _, err := readFull(c, msg); err != nil || len(msg) < 12 {
			return
		}
		// Keep the header and the question; QR=1, RD copied, RA=1,
		// RCODE=3 (NXDOMAIN); no answer, authority or additional records.
		q := 12
		for q < len(msg) && msg[q] != 0 {
			q += int(msg[q]) + 1
		}
		q += 5 // the root label, QTYPE, QCLASS
		if q > len(msg) {
			return
		}
		resp := append([]byte{0, 0}, msg[:q]...)
		resp[0], resp[1] = byte(q>>8), byte(q)
		h := resp[2:]
		h[2] = 0x80 | (msg[2] & 0x01)
		h[3] = 0x80 | 3
		clear(h[6:12])
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
