package hostlist

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		name string
		list string
		want []string
	}{
		{"one name", "node1", []string{"node1"}},
		{"names", "node1,node2,node3", []string{"node1", "node2", "node3"}},
		{"spaces around items", " node1 , node2 ", []string{"node1", "node2"}},
		{"suse example", "sle152,sle153,sle154,sle155", []string{"sle152", "sle153", "sle154", "sle155"}},
		{"hyphen names are not ranges", "node-12,cluster-1-giga,a-1", []string{"node-12", "cluster-1-giga", "a-1"}},
		{"digits with hyphen are a name", "1-2", []string{"1-2"}},
		{"fqdn", "n001.kek.jp,max5.paris.", []string{"n001.kek.jp", "max5.paris."}},
		{"addresses", "10.0.0.1,::1,fe80::1%eth0", []string{"10.0.0.1", "::1", "fe80::1%eth0"}},
		{"last octet range", "10.0.1.45-48", []string{"10.0.1.45", "10.0.1.46", "10.0.1.47", "10.0.1.48"}},
		{"full range", "10.0.1.45-10.0.1.47", []string{"10.0.1.45", "10.0.1.46", "10.0.1.47"}},
		{"one-address range", "10.0.1.7-7", []string{"10.0.1.7"}},
		{"range to 255", "10.0.1.254-255", []string{"10.0.1.254", "10.0.1.255"}},
		{"range and names", "master,127.0.0.2-3,node9", []string{"master", "127.0.0.2", "127.0.0.3", "node9"}},
		{"bracket padded", "node[08-11]", []string{"node08", "node09", "node10", "node11"}},
		{"bracket unpadded", "node[9-11]", []string{"node9", "node10", "node11"}},
		{"bracket list", "node[1-3,7]", []string{"node1", "node2", "node3", "node7"}},
		{"bracket suffix", "n[1-2]-giga", []string{"n1-giga", "n2-giga"}},
		{"bracket product", "rack[1-2]-n[1-2]", []string{"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"}},
		{"bracket with commas among items", "a,node[1-2,5],b", []string{"a", "node1", "node2", "node5", "b"}},
		{"bracket address", "10.0.0.[1-2]", []string{"10.0.0.1", "10.0.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.list)
			if err != nil {
				t.Fatalf("Expand(%q): %v", tt.list, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Expand(%q) (-want +got):\n%s", tt.list, diff)
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	tests := []struct {
		list string
		want string // substring of the error
	}{
		{"", "empty host list"},
		{"  ", "empty host list"},
		{"a,,b", "item 2 is empty"},
		{"a,b,", "item 3 is empty"},
		{",a", "item 1 is empty"},
		{"10.0.1.80-45", `item 1 "10.0.1.80-45": range 10.0.1.80-45 is reversed`},
		{"10.0.1.45-256", "octet 256 > 255"},
		{"10.0.1.300", "octet 300 > 255"},
		{"a,10.0.300.1-5", `item 2 "10.0.300.1-5"`},
		{"10.0.1.45-10.0.2.80", "one /24"},
		{"10.0.1.45-10.0.1", "not an IPv4 address"},
		{"10.0.1.45-80-90", "FIRST-LAST"},
		{"10.0.1.045", "leading zero"},
		{"1.2.3", "not an IPv4 address"},
		{"128", "a number, not a host name"},
		{"node[3-1]", `"3-1" is reversed`},
		{"node[1-3", "'[' without ']'"},
		{"node1-3]", "']' without '['"},
		{"node[]", "empty brackets"},
		{"node[a-b]", "expected N or N-M"},
		{"node[1-99999999999]", "too large"},
		{"node[0-70000]", "more than 65536 hosts"},
		{"n[0-300]x[0-300]", "more than 65536 hosts"},
		{"node 1", "not allowed"},
		{"-H", "starts with '-'"},
		{"a..b", "empty label"},
		{"no:de", "not a host name or an IPv6 address"},
		{"node/1", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := Expand(tt.list)
			if err == nil {
				t.Fatalf("Expand(%q) = %q, want an error with %q", tt.list, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Expand(%q) error %q, want it to contain %q", tt.list, err, tt.want)
			}
		})
	}
}

func TestExpandLimit(t *testing.T) {
	got, err := Expand(fmt.Sprintf("n[1-%d]", MaxHosts))
	if err != nil || len(got) != MaxHosts {
		t.Fatalf("Expand of exactly MaxHosts: %d hosts, %v", len(got), err)
	}
	if _, err := Expand(fmt.Sprintf("a,n[1-%d]", MaxHosts)); err == nil {
		t.Fatalf("Expand of MaxHosts+1: no error")
	}
}

func TestCheckDuplicates(t *testing.T) {
	if err := CheckDuplicates([]string{"a", "b", "c"}); err != nil {
		t.Fatalf("no duplicates: %v", err)
	}
	err := CheckDuplicates([]string{"a", "node2", "c", "NODE2"})
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("got %v, want ErrDuplicate", err)
	}
	want := "hosts 2 (node2) and 4 (NODE2) are the same host: list every node once"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"node1,node2", "10.0.1.45-80", "10.0.1.45-10.0.1.80", "node[01-16]", "node[1-3,7]",
		"rack[1-2]-n[01-03],x", "cluster-1-giga", "a,,b", "10.0.1.300", "[", "]", "n[1-2",
		"::1,fe80::1%eth0", "10.0.0.[1-3]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		hosts, err := Expand(list)
		if err != nil {
			return
		}
		if len(hosts) == 0 || len(hosts) > MaxHosts {
			t.Fatalf("Expand(%q): %d hosts without error", list, len(hosts))
		}
		for _, h := range hosts {
			if err := CheckName(h); err != nil {
				t.Fatalf("Expand(%q) gave %q: %v", list, h, err)
			}
			if strings.ContainsAny(h, ",[] \t") {
				t.Fatalf("Expand(%q) gave %q", list, h)
			}
		}
	})
}
