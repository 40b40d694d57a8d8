package hostlist

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestFindSelf(t *testing.T) {
	loopRing := []Resolved{
		{"127.0.0.2", netip.MustParseAddr("127.0.0.2")},
		{"127.0.0.3", netip.MustParseAddr("127.0.0.3")},
		{"127.0.0.4", netip.MustParseAddr("127.0.0.4")},
	}
	named := []Resolved{
		{"node1", netip.MustParseAddr("10.0.0.1")},
		{"node2", netip.MustParseAddr("10.0.0.2")},
		{"node3", netip.MustParseAddr("10.0.0.3")},
	}
	giga := []Resolved{
		{"node11-giga", netip.MustParseAddr("10.1.0.11")},
		{"node12-giga", netip.MustParseAddr("10.1.0.12")},
	}
	hyphenated := []Resolved{
		{"cluster-1-giga", netip.MustParseAddr("10.2.0.1")},
		{"cluster-2-giga", netip.MustParseAddr("10.2.0.2")},
	}
	unresolved := []Resolved{{Name: "n001.kek.jp"}, {Name: "n002.kek.jp"}}
	lo := addrs("127.0.0.1", "::1")

	type want struct {
		Index int
		How   string
	}
	tests := []struct {
		name      string
		hosts     []Resolved
		preferred []netip.Addr
		iface     []netip.Addr
		env       func(string) string
		hostname  string
		hyphen    bool
		want      want
	}{
		{
			name:      "preferred address among loopback clients",
			hosts:     loopRing,
			preferred: addrs("127.0.0.3"),
			iface:     lo,
			hostname:  "box",
			want:      want{1, "preferred address 127.0.0.3"},
		},
		{
			name:      "preferred address, mapped",
			hosts:     loopRing,
			preferred: addrs("::ffff:127.0.0.4"),
			want:      want{2, "preferred address ::ffff:127.0.0.4"},
		},
		{
			name:  "interface address",
			hosts: named,
			iface: addrs("127.0.0.1", "10.0.0.2", "fe80::1"),
			want:  want{1, "interface address 10.0.0.2"},
		},
		{
			name:      "preferred matching nothing falls back to interfaces",
			hosts:     named,
			preferred: addrs("192.168.1.1"),
			iface:     addrs("10.0.0.3"),
			want:      want{2, "interface address 10.0.0.3"},
		},
		{
			name:  "loopback interface does not match another loopback host",
			hosts: loopRing,
			iface: lo,
			env:   env("MYNODENAME", "127.0.0.4"),
			want:  want{2, "MYNODENAME=127.0.0.4"},
		},
		{
			name:  "several interface matches are skipped for a name",
			hosts: loopRing,
			iface: addrs("127.0.0.2", "127.0.0.3", "127.0.0.4"),
			env:   env("HOSTNAME", "127.0.0.3"),
			want:  want{1, "HOSTNAME=127.0.0.3"},
		},
		{
			name:     "MYNODENAME before HOSTNAME, HOST and hostname",
			hosts:    named,
			env:      env("MYNODENAME", "node3", "HOSTNAME", "node1", "HOST", "node2"),
			hostname: "node1",
			want:     want{2, "MYNODENAME=node3"},
		},
		{
			name:     "MYNODENAME not in the list: HOSTNAME",
			hosts:    named,
			env:      env("MYNODENAME", "other", "HOSTNAME", "node1", "HOST", "node2"),
			hostname: "node3",
			want:     want{0, "HOSTNAME=node1"},
		},
		{
			name:     "HOST",
			hosts:    named,
			env:      env("HOST", "node2"),
			hostname: "node3",
			want:     want{1, "HOST=node2"},
		},
		{
			name:     "hostname, case-insensitive",
			hosts:    named,
			hostname: "NODE2",
			want:     want{1, "hostname NODE2"},
		},
		{
			name:     "hostname with domain",
			hosts:    named,
			hostname: "node2.cluster.example",
			want:     want{1, "hostname node2.cluster.example"},
		},
		{
			name:     "short hostname, FQDN list",
			hosts:    unresolved,
			hostname: "n002",
			want:     want{1, "hostname n002"},
		},
		{
			name:     "interface suffix",
			hosts:    giga,
			hostname: "node12",
			want:     want{1, "hostname node12"},
		},
		{
			name:     "interface suffix on a hyphenated name",
			hosts:    hyphenated,
			hostname: "cluster-2",
			want:     want{1, "hostname cluster-2"},
		},
		{
			name:     "dolly's base name rule",
			hosts:    giga,
			hostname: "node11-fast",
			want:     want{0, "hostname node11-fast"},
		},
		{
			name:     "exact match wins over suffixes",
			hosts:    []Resolved{{Name: "node1-giga"}, {Name: "node1"}},
			hostname: "node1",
			want:     want{1, "hostname node1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, how, err := FindSelf(tt.hosts, tt.preferred, tt.iface, tt.env, tt.hostname, tt.hyphen)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, want{i, how}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFindSelfErrors(t *testing.T) {
	loopRing := []Resolved{
		{"127.0.0.2", netip.MustParseAddr("127.0.0.2")},
		{"127.0.0.3", netip.MustParseAddr("127.0.0.3")},
	}
	giga := []Resolved{
		{"node11-giga", netip.MustParseAddr("10.1.0.11")},
		{"node12-giga", netip.MustParseAddr("10.1.0.12")},
	}
	tests := []struct {
		name     string
		hosts    []Resolved
		iface    []netip.Addr
		env      func(string) string
		hostname string
		hyphen   bool
		is       error
		want     string
	}{
		{
			name:     "several clients on one machine",
			hosts:    loopRing,
			iface:    addrs("127.0.0.1", "127.0.0.2", "127.0.0.3"),
			hostname: "box",
			is:       ErrAmbiguous,
			want:     "the interface addresses match hosts 1 (127.0.0.2), 2 (127.0.0.3); give this client the address to listen on",
		},
		{
			name:     "loopback only",
			hosts:    loopRing,
			iface:    addrs("127.0.0.1"),
			hostname: "box",
			is:       ErrNotInList,
			want:     "none of interface addresses 127.0.0.1, hostname box matches",
		},
		{
			name:     "hyphennormal turns the suffix rule off",
			hosts:    giga,
			hostname: "node12",
			hyphen:   true,
			is:       ErrNotInList,
		},
		{
			name:     "the base name rule can be ambiguous",
			hosts:    []Resolved{{Name: "cluster-1-giga"}, {Name: "cluster-2-giga"}},
			hostname: "cluster-3",
			is:       ErrAmbiguous,
			want:     "hostname cluster-3 matches hosts 1 (cluster-1-giga), 2 (cluster-2-giga)",
		},
		{
			name:  "nothing to compare",
			hosts: giga,
			is:    ErrNotInList,
			want:  "nothing to compare",
		},
		{
			name: "empty list",
			want: "the host list is empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, how, err := FindSelf(tt.hosts, nil, tt.iface, tt.env, tt.hostname, tt.hyphen)
			if err == nil {
				t.Fatalf("got %d (%s), want an error", i, how)
			}
			if i != -1 {
				t.Errorf("index %d with an error, want -1", i)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not match %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestInterfaceAddrs(t *testing.T) {
	got, err := InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses here: %v", err)
	}
	for _, a := range got {
		if a.Is4In6() {
			t.Errorf("%v is IPv4-mapped", a)
		}
	}
}
