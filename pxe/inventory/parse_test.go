package inventory

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var cmpAddrs = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

const full = `# the example cluster
subnet 10.0.0.0/24
router 10.0.0.1
dns 10.0.0.1 10.0.0.2   # two resolvers
domain cluster.example
lease 1h
range 10.0.0.100 10.0.0.199

node 52:54:00:00:00:01 node1 10.0.0.11 plan=compute.ks profile=compute
node 52-54-00-00-00-0A Node2 10.0.0.12	profile=login bmc=ipmi://admin@10.0.1.12:6230
node 52:54:00:AA:bb:CC node3.cluster.example 10.0.0.200 plan=sub/dir.ks rack=r-01.b_2
`

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Inventory
	}{
		{
			name: "full",
			in:   full,
			want: &Inventory{
				File:       "inv",
				Subnet:     netip.MustParsePrefix("10.0.0.0/24"),
				Router:     ip("10.0.0.1"),
				DNS:        []netip.Addr{ip("10.0.0.1"), ip("10.0.0.2")},
				Domain:     "cluster.example",
				Lease:      time.Hour,
				RangeStart: ip("10.0.0.100"),
				RangeEnd:   ip("10.0.0.199"),
				Nodes: []Node{
					{MAC: mac("52:54:00:00:00:01"), Name: "node1", IP: ip("10.0.0.11"), Plan: "compute.ks", Profile: "compute", Line: 9},
					{MAC: mac("52:54:00:00:00:0a"), Name: "Node2", IP: ip("10.0.0.12"), Profile: "login", BMC: "ipmi://admin@10.0.1.12:6230", Line: 10},
					{MAC: mac("52:54:00:aa:bb:cc"), Name: "node3.cluster.example", IP: ip("10.0.0.200"), Plan: "sub/dir.ks", Rack: "r-01.b_2", Line: 11},
				},
			},
		},
		{name: "empty", in: "", want: &Inventory{File: "inv"}},
		{name: "comments only", in: "# nothing\n\n   # here\n", want: &Inventory{File: "inv"}},
		{
			name: "globals after nodes, CRLF, lease in seconds",
			in:   "node 52:54:00:00:00:01 n1 192.168.1.2\r\nlease 600\r\nsubnet 192.168.1.0/30\r\n",
			want: &Inventory{
				File:   "inv",
				Subnet: netip.MustParsePrefix("192.168.1.0/30"),
				Lease:  10 * time.Minute,
				Nodes:  []Node{{MAC: mac("52:54:00:00:00:01"), Name: "n1", IP: ip("192.168.1.2"), Line: 1}},
			},
		},
		{
			name: "one-address range, range without nodes",
			in:   "subnet 10.1.0.0/16\nrange 10.1.2.3 10.1.2.3\n",
			want: &Inventory{
				File:       "inv",
				Subnet:     netip.MustParsePrefix("10.1.0.0/16"),
				RangeStart: ip("10.1.2.3"),
				RangeEnd:   ip("10.1.2.3"),
			},
		},
		{
			name: "dns and domain without a subnet",
			in:   "dns 8.8.8.8\ndomain example\n",
			want: &Inventory{File: "inv", DNS: []netip.Addr{ip("8.8.8.8")}, Domain: "example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("inv", strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddrs); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "subnet 10.0.0.0/24\nrange 10.0.0.100 10.0.0.199\nrouter 10.0.0.1\n" // lines 1-3
	tests := []struct {
		name string
		in   string
		line int
		want string // in the message
	}{
		{"unknown keyword", "subnet 10.0.0.0/24\nhost x\n", 2, `unknown keyword "host"`},
		{"keyword case", "Subnet 10.0.0.0/24\n", 1, `unknown keyword "Subnet"`},
		{"subnet twice", head + "subnet 10.0.1.0/24\n", 4, "subnet given twice (first on line 1)"},
		{"dns twice", "dns 1.1.1.1\ndns 1.0.0.1\n", 2, "dns given twice (first on line 1)"},
		{"lease twice", "lease 1h\n\nlease 2h\n", 3, "lease given twice (first on line 1)"},
		{"subnet missing prefix", "subnet\n", 1, "want subnet PREFIX"},
		{"subnet not a prefix", "subnet 10.0.0.0\n", 1, "want an IPv4 prefix"},
		{"subnet ipv6", "subnet fd00::/64\n", 1, "want an IPv4 prefix"},
		{"subnet host bits", "subnet 10.0.0.5/24\n", 1, "host bits set: want 10.0.0.0/24"},
		{"subnet too small", "subnet 10.0.0.0/31\n", 1, "no room for nodes"},
		{"router two", "router 10.0.0.1 10.0.0.2\n", 1, "want router ADDRESS"},
		{"router bad", "router ten\n", 1, `"ten" is not an IPv4 address`},
		{"router outside", "subnet 10.0.0.0/24\nrouter 10.0.1.1\n", 2, "router 10.0.1.1 is outside subnet 10.0.0.0/24 (line 1)"},
		{"router broadcast", "subnet 10.0.0.0/24\nrouter 10.0.0.255\n", 2, "broadcast address"},
		{"router without subnet", "router 10.0.0.1\n", 1, "router needs a subnet line"},
		{"router in range", "subnet 10.0.0.0/24\nrouter 10.0.0.150\nrange 10.0.0.100 10.0.0.199\n", 3, "holds the router's address 10.0.0.150 (line 2)"},
		{"dns empty", "dns\n", 1, "want dns ADDRESS"},
		{"dns repeated", "dns 10.0.0.1 10.0.0.1\n", 1, "10.0.0.1 given twice"},
		{"dns ipv4-mapped", "dns ::ffff:10.0.0.1\n", 1, "not an IPv4 address"},
		{"domain bad", "domain under_score.example\n", 1, `'_' is not allowed`},
		{"domain trailing dot", "domain example.\n", 1, "trailing dot"},
		{"lease bad", "lease soon\n", 1, "want a duration"},
		{"lease zero", "lease 0\n", 1, "at least 1s"},
		{"lease negative", "lease -1h\n", 1, "at least 1s"},
		{"lease fraction", "lease 1.5s\n", 1, "whole seconds"},
		{"lease too long", "lease 4294967295\n", 1, "longest DHCP lease"},
		{"range reversed", "subnet 10.0.0.0/24\nrange 10.0.0.9 10.0.0.2\n", 2, "reversed: want range 10.0.0.2 10.0.0.9"},
		{"range one address", "subnet 10.0.0.0/24\nrange 10.0.0.9\n", 2, "want range START END"},
		{"range outside", "subnet 10.0.0.0/24\nrange 10.0.0.100 10.0.1.10\n", 2, "range end 10.0.1.10 is outside subnet"},
		{"range network", "subnet 10.0.0.0/24\nrange 10.0.0.0 10.0.0.10\n", 2, "range start 10.0.0.0 is the network address"},
		{"range without subnet", "range 10.0.0.1 10.0.0.2\n", 1, "range needs a subnet line"},
		{"node short", head + "node 52:54:00:00:00:01 n1\n", 4, "want node MAC NAME IP"},
		{"node mac short", head + "node 52:54:00:00:01 n1 10.0.0.2\n", 4, `MAC "52:54:00:00:01": want six hex pairs`},
		{"node mac mixed", head + "node 52:54-00:00:00:01 n1 10.0.0.2\n", 4, "one kind of separator"},
		{"node mac dots", head + "node 5254.0000.0001 n1 10.0.0.2\n", 4, "want six hex pairs"},
		{"node mac hex", head + "node 52:54:00:00:00:0g n1 10.0.0.2\n", 4, "hexadecimal"},
		{"node mac multicast", head + "node 01:00:5e:00:00:01 n1 10.0.0.2\n", 4, "multicast"},
		{"node mac broadcast", head + "node ff:ff:ff:ff:ff:ff n1 10.0.0.2\n", 4, "multicast/broadcast"},
		{"node mac zero", head + "node 00:00:00:00:00:00 n1 10.0.0.2\n", 4, "all-zero"},
		{"node mac 8 bytes", head + "node 52:54:00:00:00:01:02:03 n1 10.0.0.2\n", 4, "want six hex pairs"},
		{"duplicate mac", head + "node 52:54:00:00:00:01 n1 10.0.0.2\nnode 52-54-00-00-00-01 n2 10.0.0.3\n", 5, "duplicate MAC 52:54:00:00:00:01 (first on line 4)"},
		{"duplicate name", head + "node 52:54:00:00:00:01 n1 10.0.0.2\nnode 52:54:00:00:00:02 N1 10.0.0.3\n", 5, "duplicate name N1 (first on line 4 as n1"},
		{"duplicate name same case", head + "node 52:54:00:00:00:01 n1 10.0.0.2\nnode 52:54:00:00:00:02 n1 10.0.0.3\n", 5, "duplicate name n1 (first on line 4)"},
		{"duplicate ip", head + "node 52:54:00:00:00:01 n1 10.0.0.2\n\nnode 52:54:00:00:00:02 n2 10.0.0.2\n", 6, "duplicate IP 10.0.0.2 (first on line 4)"},
		{"name underscore", head + "node 52:54:00:00:00:01 n_1 10.0.0.2\n", 4, `node name "n_1"`},
		{"name hyphen", head + "node 52:54:00:00:00:01 -n1 10.0.0.2\n", 4, "starts or ends with '-'"},
		{"name empty label", head + "node 52:54:00:00:00:01 a..b 10.0.0.2\n", 4, "empty label"},
		{"name long label", head + "node 52:54:00:00:00:01 " + strings.Repeat("a", 64) + " 10.0.0.2\n", 4, "longer than 63"},
		{"name an address", head + "node 52:54:00:00:00:01 10.0.0.2 10.0.0.2\n", 4, "an address, not a host name"},
		{"name slash", head + "node 52:54:00:00:00:01 etc/x 10.0.0.2\n", 4, `'/' is not allowed`},
		{"name dotdot", head + "node 52:54:00:00:00:01 ../etc 10.0.0.2\n", 4, "empty label"},
		{"ip bad", head + "node 52:54:00:00:00:01 n1 10.0.0\n", 4, "node n1: \"10.0.0\" is not an IPv4 address"},
		{"ip outside", head + "node 52:54:00:00:00:01 n1 10.0.1.2\n", 4, "node n1: 10.0.1.2 is outside subnet 10.0.0.0/24"},
		{"ip network", head + "node 52:54:00:00:00:01 n1 10.0.0.0\n", 4, "network address"},
		{"ip broadcast", head + "node 52:54:00:00:00:01 n1 10.0.0.255\n", 4, "broadcast address"},
		{"ip in range", head + "node 52:54:00:00:00:01 n1 10.0.0.150\n", 4, "inside the dynamic range 10.0.0.100-10.0.0.199 (line 2)"},
		{"ip range edge", head + "node 52:54:00:00:00:01 n1 10.0.0.199\n", 4, "inside the dynamic range"},
		{"ip router", head + "node 52:54:00:00:00:01 n1 10.0.0.1\n", 4, "the router's address (line 3)"},
		{"no subnet", "\nnode 52:54:00:00:00:01 n1 10.0.0.2\n", 2, "node needs a subnet line"},
		{"unknown option", head + "node 52:54:00:00:00:01 n1 10.0.0.2 disk=sda\n", 4, `unknown node option "disk=sda"`},
		{"bare option", head + "node 52:54:00:00:00:01 n1 10.0.0.2 extra\n", 4, `unknown node option "extra"`},
		{"empty plan", head + "node 52:54:00:00:00:01 n1 10.0.0.2 plan=\n", 4, "plan= is empty"},
		{"plan twice", head + "node 52:54:00:00:00:01 n1 10.0.0.2 plan=a plan=b\n", 4, "plan= given twice"},
		{"bmc twice", head + "node 52:54:00:00:00:01 n1 10.0.0.2 bmc=ipmi://a@b bmc=ipmi://a@c\n", 4, "bmc= given twice"},
		{"bmc with a password", head + "node 52:54:00:00:00:01 n1 10.0.0.2 bmc=ipmi://admin:hunter2@10.0.1.2\n", 4, "node n1: BMC ipmi://admin@10.0.1.2: the password does not go in the BMC URL"},
		{"bmc without user", head + "node 52:54:00:00:00:01 n1 10.0.0.2 bmc=ipmi://10.0.1.2\n", 4, "node n1: BMC \"ipmi://10.0.1.2\": no user"},
		{"bmc scheme", head + "node 52:54:00:00:00:01 n1 10.0.0.2 bmc=http://admin@10.0.1.2\n", 4, "want ipmi://USER@HOST or redfish://USER@HOST"},
		{"plan escapes", head + "node 52:54:00:00:00:01 n1 10.0.0.2 plan=../x.ks\n", 4, "relative path inside the plan directory"},
		{"plan absolute", head + "node 52:54:00:00:00:01 n1 10.0.0.2 plan=/etc/x.ks\n", 4, "relative path"},
		{"rack twice", head + "node 52:54:00:00:00:01 n1 10.0.0.2 rack=a rack=b\n", 4, "rack= given twice"},
		{"rack empty", head + "node 52:54:00:00:00:01 n1 10.0.0.2 rack=\n", 4, "node option rack= is empty"},
		{"rack bad character", head + "node 52:54:00:00:00:01 n1 10.0.0.2 rack=r/1\n", 4, "node n1: rack=r/1: character '/'"},
		{"rack too long", head + "node 52:54:00:00:00:01 n1 10.0.0.2 rack=" + strings.Repeat("r", 64) + "\n", 4, "longer than 63 characters"},
		{"profile twice", head + "node 52:54:00:00:00:01 n1 10.0.0.2 profile=a profile=b\n", 4, "profile= given twice"},
		{
			// Line-order reporting: the subnet comes last, the earliest
			// problem is named.
			"earliest subnet problem", "node 52:54:00:00:00:01 n1 10.9.0.2\nrouter 10.9.0.1\nsubnet 10.0.0.0/24\n", 1, "node n1: 10.9.0.2 is outside subnet 10.0.0.0/24 (line 3)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse("inv", strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("accepted: %+v", inv)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *ParseError", err, err)
			}
			if pe.File != "inv" || pe.Line != tt.line || !strings.Contains(pe.Msg, tt.want) {
				t.Errorf("got %q, want inv:%d: ...%s...", err, tt.line, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "inv:") {
				t.Errorf("%q does not start with FILE:LINE", err)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory")
	if err := os.WriteFile(path, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if inv.File != path || len(inv.Nodes) != 3 {
		t.Errorf("File %q, %d nodes", inv.File, len(inv.Nodes))
	}
	if n, ok := inv.ByMAC(mac("52:54:00:aa:bb:cc")); !ok || n.Name != "node3.cluster.example" {
		t.Errorf("ByMAC: %v %v", n, ok)
	}
	if _, err := ParseFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("subnet 10.0.0.0/24\nnode x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("bad file: %v", err)
	}
}

func TestNodeString(t *testing.T) {
	inv, err := Parse("inv", strings.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, n := range inv.Nodes {
		lines = append(lines, n.String())
	}
	want := []string{
		"node 52:54:00:00:00:01 node1 10.0.0.11 plan=compute.ks profile=compute",
		"node 52:54:00:00:00:0a Node2 10.0.0.12 profile=login bmc=ipmi://admin@10.0.1.12:6230",
		"node 52:54:00:aa:bb:cc node3.cluster.example 10.0.0.200 plan=sub/dir.ks rack=r-01.b_2",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestBroadcast(t *testing.T) {
	for pfx, want := range map[string]string{
		"10.0.0.0/24":    "10.0.0.255",
		"10.0.0.0/8":     "10.255.255.255",
		"192.168.4.0/30": "192.168.4.3",
		"0.0.0.0/0":      "255.255.255.255",
		"10.0.0.7/32":    "10.0.0.7",
	} {
		if got := broadcast(netip.MustParsePrefix(pfx)); got != ip(want) {
			t.Errorf("%s: %s, want %s", pfx, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	for _, s := range []string{
		"subnet 10.0.0.0/24\nnode 52:54:00:00:00:01 a 10.0.0.1\nnode 52:54:00:00:00:02 b 10.0.0.2\n",
		"subnet 10.0.0.0/30\nrange 10.0.0.1 10.0.0.1\nnode 02:00:00:00:00:01 x 10.0.0.2 plan=a profile=b rack=r1\n",
		"node 52-54-00-00-00-01 A 1.2.3.4\nsubnet 1.2.3.0/24\nnode 52:54:00:00:00:01 b 1.2.3.5",
		"lease 4294967294\ndns 1.1.1.1 ::1\n#", "subnet 0.0.0.0/0\nrouter 0.0.0.1", "node\x00", "range 1.1.1.1 1.1.1.0",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("fuzz", strings.NewReader(string(data)))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *ParseError", err, err)
			}
			if pe.Line < 1 {
				t.Fatalf("error %v has line %d", err, pe.Line)
			}
			return
		}
		if len(inv.Nodes) > 0 && !inv.Subnet.IsValid() {
			t.Fatal("nodes without a subnet")
		}
		bc := broadcast(inv.Subnet)
		macs, names, ips := map[string]bool{}, map[string]bool{}, map[netip.Addr]bool{}
		for _, n := range inv.Nodes {
			if len(n.MAC) != 6 || n.MAC[0]&1 != 0 {
				t.Fatalf("bad MAC %v", n.MAC)
			}
			if macs[string(n.MAC)] || names[strings.ToLower(n.Name)] || ips[n.IP] {
				t.Fatalf("duplicate in %v", n)
			}
			macs[string(n.MAC)], names[strings.ToLower(n.Name)], ips[n.IP] = true, true, true
			if !n.IP.Is4() || !inv.Subnet.Contains(n.IP) || n.IP == inv.Subnet.Addr() || n.IP == bc {
				t.Fatalf("node %s: %s not a host of %s", n.Name, n.IP, inv.Subnet)
			}
			if inv.RangeStart.IsValid() && !n.IP.Less(inv.RangeStart) && !inv.RangeEnd.Less(n.IP) {
				t.Fatalf("node %s: %s in the range", n.Name, n.IP)
			}
			if checkHostname(n.Name) != nil {
				t.Fatalf("bad name %q", n.Name)
			}
			// A node's line parses back to the same node.
			back, err := Parse("back", strings.NewReader("subnet "+inv.Subnet.String()+"\n"+n.String()))
			if err != nil {
				t.Fatalf("%q does not parse back: %v", n.String(), err)
			}
			n.Line = 2
			if diff := cmp.Diff(n, back.Nodes[0], cmpAddrs); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		}
		if inv.Router.IsValid() && (!inv.Subnet.Contains(inv.Router) || ips[inv.Router]) {
			t.Fatalf("router %s", inv.Router)
		}
		if inv.RangeStart.IsValid() && (inv.RangeEnd.Less(inv.RangeStart) || !inv.Subnet.Contains(inv.RangeStart) || !inv.Subnet.Contains(inv.RangeEnd)) {
			t.Fatalf("range %s-%s in %s", inv.RangeStart, inv.RangeEnd, inv.Subnet)
		}
	})
}
