package goldeninit

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRoot(t *testing.T) {
	tests := []struct {
		cmdline string
		want    rootSpec
		wantErr string
	}{
		{"initrd=initrd.img root=UUID=ABCD-0123-4567 rw console=ttyS0 quiet",
			rootSpec{uuid: "abcd-0123-4567", fstype: "ext4"}, ""},
		{"root=/dev/vda2 ro", rootSpec{path: "/dev/vda2", fstype: "ext4", readOnly: true}, ""},
		{"ro root=/dev/vda2 rw rootfstype=xfs", rootSpec{path: "/dev/vda2", fstype: "xfs"}, ""},
		{"root=/dev/sda1 root=UUID=x", rootSpec{uuid: "x", fstype: "ext4"}, ""}, // the last wins
		{"console=ttyS0", rootSpec{}, "no root="},
		{"root=LABEL=golden", rootSpec{}, "want root=UUID="},
	}
	for _, tt := range tests {
		got, err := parseRoot(strings.Fields(tt.cmdline))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRoot(%q): err %v, want %q", tt.cmdline, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRoot(%q) = %+v, %v; want %+v", tt.cmdline, got, err, tt.want)
		}
	}
}

func TestReadIdentity(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	id, err := ReadIdentity(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.BootedLine(), "herd-booted host=none ip=none machine-id=none"; got != want {
		t.Errorf("empty root: %q, want %q", got, want)
	}
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("node1\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	id, err = ReadIdentity(root)
	if err != nil {
		t.Fatal(err)
	}
	id.IP = "10.0.2.15"
	if got, want := id.BootedLine(), "herd-booted host=node1 ip=10.0.2.15 machine-id=0123456789abcdef0123456789abcdef"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A directory where a file should be is an error, not "none".
	os.Remove(filepath.Join(root, "etc", "hostname"))
	os.Mkdir(filepath.Join(root, "etc", "hostname"), 0o755)
	if _, err := ReadIdentity(root); err == nil {
		t.Error("hostname is a directory: no error")
	}
}

// herdNetwork is what agent/customize writes for a clone.
const herdNetwork = `# Written by herd for node1 on 2026-01-01T00:00:00Z: this node's own network
# configuration (clones of one image differ here).
[Match]
MACAddress=52:54:00:00:00:01

[Network]
DHCP=yes

[DHCPv4]
ClientIdentifier=mac
`

const staticNetwork = `[Match]
MACAddress=52:54:00:00:00:02

[Network]
Address=10.0.0.12/24
Gateway=10.0.0.1
DNS=10.0.0.1
`

const wired = `[Match]
Name=en* eth*

[Network]
DHCP=yes
`

func TestParseNetConfig(t *testing.T) {
	mac1, _ := net.ParseMAC("52:54:00:00:00:01")
	mac2, _ := net.ParseMAC("52:54:00:00:00:02")
	tests := []struct {
		name, text string
		want       NetConfig
		wantErr    string
	}{
		{"10-herd.network", herdNetwork, NetConfig{File: "10-herd.network", MACs: []net.HardwareAddr{mac1}, DHCP: true}, ""},
		{"10-herd.network", staticNetwork, NetConfig{File: "10-herd.network", MACs: []net.HardwareAddr{mac2},
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.12/24")}, Gateway: netip.MustParseAddr("10.0.0.1")}, ""},
		{"50-wired.network", wired, NetConfig{File: "50-wired.network", Names: []string{"en*", "eth*"}, DHCP: true}, ""},
		{"x.network", "[Match]\nName=eth0\nName=\nName=eth1\n[Network]\nDHCP=no\n", NetConfig{File: "x.network", Names: []string{"eth1"}}, ""},
		{"x.network", "[Network]\nDHCP=ipv6\n", NetConfig{File: "x.network"}, ""},
		{"bad.network", "[Match]\nMACAddress=zz\n", NetConfig{}, "MACAddress=zz"},
		{"bad.network", "[Network]\nAddress=10.0.0.1\n", NetConfig{}, "ADDRESS/PREFIX"},
		{"bad.network", "[Network]\nGateway=nope\n", NetConfig{}, "Gateway=nope"},
		{"bad.network", "[Match]\njunk\n", NetConfig{}, "line 2"},
	}
	for _, tt := range tests {
		got, err := ParseNetConfig(tt.name, []byte(tt.text))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want %q", tt.text, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.text, err)
			continue
		}
		if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
			t.Errorf("%q (-want +got):\n%s", tt.text, d)
		}
	}
}

func TestChoose(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	parse := func(name, text string) NetConfig {
		c, err := ParseNetConfig(name, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	herd := parse("10-herd.network", herdNetwork)
	static := parse("10-herd.network", staticNetwork)
	w := parse("50-wired.network", wired)
	notLo := parse("60-x.network", "[Match]\nName=!lo eth0\n")
	eth0 := Iface{"eth0", mac("52:54:00:00:00:09")}
	eth1 := Iface{"eth1", mac("52:54:00:00:00:01")}
	ib0 := Iface{"ib0", mac("52:54:00:00:00:07")}
	tests := []struct {
		name      string
		ifaces    []Iface
		cfgs      []NetConfig
		wantIface string
		wantFile  string // "" = no configuration
		ok        bool
	}{
		{"golden image, one NIC", []Iface{eth0}, []NetConfig{w}, "eth0", "50-wired.network", true},
		{"clone: its MAC wins over the first NIC", []Iface{eth0, eth1}, []NetConfig{herd, w}, "eth1", "10-herd.network", true},
		{"file order, not interface order", []Iface{eth0, eth1}, []NetConfig{w, herd}, "eth0", "50-wired.network", true},
		{"clone: only herd's file", []Iface{eth0, eth1}, []NetConfig{herd}, "eth1", "10-herd.network", true},
		{"static clone", []Iface{{"eth0", mac("52:54:00:00:00:02")}}, []NetConfig{static, w}, "eth0", "10-herd.network", true},
		{"no match: first NIC, DHCP", []Iface{ib0}, []NetConfig{w}, "ib0", "", true},
		{"negated names", []Iface{ib0}, []NetConfig{notLo}, "ib0", "60-x.network", true},
		{"no interfaces", nil, []NetConfig{w}, "", "", false},
	}
	for _, tt := range tests {
		ifi, cfg, ok := Choose(tt.ifaces, tt.cfgs)
		file := ""
		if cfg != nil {
			file = cfg.File
		}
		if ok != tt.ok || ifi.Name != tt.wantIface || file != tt.wantFile {
			t.Errorf("%s: got %s %q %v, want %s %q %v", tt.name, ifi.Name, file, ok, tt.wantIface, tt.wantFile, tt.ok)
		}
	}
}

func TestLoadNetConfigs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "50-wired.network"), []byte(wired), 0o644)
	os.WriteFile(filepath.Join(dir, "10-herd.network"), []byte(herdNetwork), 0o644)
	os.WriteFile(filepath.Join(dir, "20-bad.network"), []byte("[Match]\nMACAddress=x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a .network file"), 0o644)
	cfgs, err := LoadNetConfigs(dir)
	if err == nil || !strings.Contains(err.Error(), "20-bad.network") {
		t.Errorf("err = %v, want one naming 20-bad.network", err)
	}
	var names []string
	for _, c := range cfgs {
		names = append(names, c.File)
	}
	if d := cmp.Diff([]string{"10-herd.network", "50-wired.network"}, names); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	if cfgs, err := LoadNetConfigs(filepath.Join(dir, "none")); err != nil || len(cfgs) != 0 {
		t.Errorf("missing directory: %v, %v", cfgs, err)
	}
}

func TestStageString(t *testing.T) {
	if StageInitrd.String() != "initrd" || StageRoot.String() != "root" || Stage(9).String() != "unknown" {
		t.Error("stage names")
	}
}
