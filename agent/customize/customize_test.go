package customize

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// files is a tree: path → content; a content starting with "->" makes a
// symbolic link to the rest.
type files map[string]string

func mkRoot(t *testing.T, fs files) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, c := range fs {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func readFile(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	testNow = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }
)

func dhcpID() Identity {
	return Identity{Hostname: "node7", Domain: "cluster.example", MAC: testMAC, Interface: "eth0", DHCP: true}
}

func staticID() Identity {
	return Identity{
		Hostname: "node7", Domain: "cluster.example", MAC: testMAC, Interface: "eth0",
		IP:      netip.MustParsePrefix("10.0.0.17/24"),
		Gateway: netip.MustParseAddr("10.0.0.1"),
		DNS:     []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")},
	}
}

func apply(t *testing.T, root string, id Identity, fstab map[string]string) []string {
	t.Helper()
	changes, err := Apply(Options{Root: root, Identity: id, FstabByUUID: fstab, Now: testNow})
	if err != nil {
		t.Fatalf("Apply: %v\nchanges:\n%s", err, strings.Join(changes, "\n"))
	}
	return changes
}

func hasLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestHostname(t *testing.T) {
	root := mkRoot(t, files{"etc/hostname": "golden\n"})
	changes := apply(t, root, dhcpID(), nil)
	if got := readFile(t, root, "etc/hostname"); got != "node7\n" {
		t.Errorf("hostname = %q", got)
	}
	if !hasLine(changes, "wrote /etc/hostname") {
		t.Errorf("changes = %q", changes)
	}
	// A dotted name without a domain is split; hostname stays short.
	id := dhcpID()
	id.Hostname, id.Domain = "node8.rack2.example", ""
	root = mkRoot(t, files{})
	apply(t, root, id, nil)
	if got := readFile(t, root, "etc/hostname"); got != "node8\n" {
		t.Errorf("hostname = %q", got)
	}
	if got := readFile(t, root, "etc/hosts"); !strings.Contains(got, "127.0.1.1\tnode8.rack2.example node8\n") {
		t.Errorf("hosts = %q", got)
	}
}

func TestHosts(t *testing.T) {
	tests := []struct {
		name     string
		in       *string
		id       func(Identity) Identity
		want     string
		wantNote string
	}{
		{
			name: "debian",
			in:   ptr("127.0.0.1\tlocalhost\n127.0.1.1\tgolden.cluster.example\tgolden\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n10.0.0.1 mgmt\n"),
			want: "127.0.0.1\tlocalhost\n127.0.1.1\tnode7.cluster.example node7\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n10.0.0.1 mgmt\n",
		},
		{
			name: "redhat, no 127.0.1.1 line",
			in:   ptr("127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n"),
			want: "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n127.0.1.1\tnode7.cluster.example node7\n::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n",
		},
		{
			name: "no loopback line: first",
			in:   ptr("# managed by hand\n10.0.0.1 mgmt"),
			want: "127.0.1.1\tnode7.cluster.example node7\n# managed by hand\n10.0.0.1 mgmt",
		},
		{
			name: "two 127.0.1.1 lines, one with a comment",
			in:   ptr("127.0.0.1 localhost\n127.0.1.1 a # old\n10.1.1.1 x\n127.0.1.1 b\n"),
			want: "127.0.0.1 localhost\n127.0.1.1\tnode7.cluster.example node7\n10.1.1.1 x\n",
		},
		{
			name: "no domain",
			in:   ptr("127.0.0.1 localhost\n"),
			id:   func(id Identity) Identity { id.Domain = ""; return id },
			want: "127.0.0.1 localhost\n127.0.1.1\tnode7\n",
		},
		{
			name:     "already right",
			in:       ptr("127.0.0.1 localhost\n127.0.1.1\tnode7.cluster.example node7\n"),
			want:     "127.0.0.1 localhost\n127.0.1.1\tnode7.cluster.example node7\n",
			wantNote: "kept /etc/hosts",
		},
		{
			name:     "absent",
			want:     "127.0.0.1\tlocalhost\n127.0.1.1\tnode7.cluster.example node7\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
			wantNote: "wrote /etc/hosts (new",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := files{}
			if tt.in != nil {
				fs["etc/hosts"] = *tt.in
			}
			root := mkRoot(t, fs)
			id := dhcpID()
			if tt.id != nil {
				id = tt.id(id)
			}
			changes := apply(t, root, id, nil)
			if diff := cmp.Diff(tt.want, readFile(t, root, "etc/hosts")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			note := tt.wantNote
			if note == "" {
				note = "wrote /etc/hosts"
			}
			if !hasLine(changes, note) {
				t.Errorf("changes %q lack %q", changes, note)
			}
		})
	}
}

func ptr(s string) *string { return &s }

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}\n$`)

func TestMachineID(t *testing.T) {
	golden := "0123456789abcdef0123456789abcdef\n"
	root := mkRoot(t, files{"etc/machine-id": golden, "var/lib/dbus/machine-id": golden})
	apply(t, root, dhcpID(), nil)
	first := readFile(t, root, "etc/machine-id")
	if !hex32.MatchString(first) || first == golden {
		t.Fatalf("machine-id = %q", first)
	}
	if dbus := readFile(t, root, "var/lib/dbus/machine-id"); dbus != first {
		t.Errorf("dbus machine-id = %q, want %q", dbus, first)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/machine-id")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("an existing machine-id keeps its mode: %v %v", fi.Mode(), err)
	}
	apply(t, root, dhcpID(), nil)
	if second := readFile(t, root, "etc/machine-id"); second == first || !hex32.MatchString(second) {
		t.Errorf("two runs gave %q and %q", first, second)
	}

	// "uninitialized" (systemd's first-boot marker), dbus as a link.
	root = mkRoot(t, files{"etc/machine-id": "uninitialized\n", "var/lib/dbus/machine-id": "->/etc/machine-id"})
	changes := apply(t, root, dhcpID(), nil)
	if got := readFile(t, root, "etc/machine-id"); !hex32.MatchString(got) {
		t.Errorf("machine-id = %q", got)
	}
	if !hasLine(changes, "first-boot units will not run") {
		t.Errorf("changes %q lack the first-boot note", changes)
	}
	if l, err := os.Readlink(filepath.Join(root, "var/lib/dbus/machine-id")); err != nil || l != "/etc/machine-id" {
		t.Errorf("dbus link = %q, %v", l, err)
	}

	// Empty, and absent (created 0444).
	root = mkRoot(t, files{"etc/machine-id": ""})
	apply(t, root, dhcpID(), nil)
	if got := readFile(t, root, "etc/machine-id"); !hex32.MatchString(got) {
		t.Errorf("machine-id = %q", got)
	}
	root = mkRoot(t, files{"etc/": ""})
	apply(t, root, dhcpID(), nil)
	if fi, err := os.Stat(filepath.Join(root, "etc/machine-id")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("new machine-id: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/dbus/machine-id")); err == nil {
		t.Error("created /var/lib/dbus/machine-id")
	}
}

func TestSSHHostKeys(t *testing.T) {
	keys := files{
		"etc/ssh/sshd_config":      "PermitRootLogin no\n",
		"etc/ssh/moduli":           "x\n",
		"etc/ssh/ssh_host_rsa_key": "k", "etc/ssh/ssh_host_rsa_key.pub": "p",
		"etc/ssh/ssh_host_ecdsa_key": "k", "etc/ssh/ssh_host_ecdsa_key.pub": "p",
		"etc/ssh/ssh_host_ed25519_key": "k", "etc/ssh/ssh_host_ed25519_key.pub": "p",
		"etc/ssh/ssh_host_ed25519_key-cert.pub": "c",
		"etc/ssh/sshd_config.d/":                "",
	}
	check := func(t *testing.T, root string) {
		entries, err := os.ReadDir(filepath.Join(root, "etc/ssh"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if diff := cmp.Diff([]string{"moduli", "ssh_host_ed25519_key-cert.pub", "sshd_config", "sshd_config.d"}, names); diff != "" {
			t.Errorf("left in /etc/ssh (-want +got):\n%s", diff)
		}
	}
	t.Run("fedora", func(t *testing.T) {
		fs := files{"usr/lib/systemd/system/sshd-keygen@.service": "[Unit]\n"}
		for k, v := range keys {
			fs[k] = v
		}
		root := mkRoot(t, fs)
		changes := apply(t, root, dhcpID(), nil)
		check(t, root)
		if !hasLine(changes, "removed /etc/ssh/ssh_host_rsa_key.pub") || !hasLine(changes, "made again on first boot by sshd-keygen@.service") {
			t.Errorf("changes = %q", changes)
		}
	})
	t.Run("alpine", func(t *testing.T) {
		fs := files{"etc/init.d/sshd": "#!/sbin/openrc-run\nstart_pre() {\n\tssh-keygen -A\n}\n"}
		for k, v := range keys {
			fs[k] = v
		}
		root := mkRoot(t, fs)
		changes := apply(t, root, dhcpID(), nil)
		check(t, root)
		if !hasLine(changes, "made again on first boot by /etc/init.d/sshd") {
			t.Errorf("changes = %q", changes)
		}
	})
	t.Run("debian: nothing regenerates", func(t *testing.T) {
		fs := files{"lib/systemd/system/ssh.service": "[Service]\nExecStartPre=/usr/sbin/sshd -t\n"}
		for k, v := range keys {
			fs[k] = v
		}
		root := mkRoot(t, fs)
		changes := apply(t, root, dhcpID(), nil)
		check(t, root)
		if !hasLine(changes, "note: nothing in the image makes SSH host keys at boot") {
			t.Errorf("changes = %q", changes)
		}
	})
	t.Run("debian with sshd: the agent's keygen makes new keys", func(t *testing.T) {
		fs := files{"lib/systemd/system/ssh.service": "[Service]\nExecStartPre=/usr/sbin/sshd -t\n", "usr/sbin/sshd": "ELF"}
		for k, v := range keys {
			fs[k] = v
		}
		root := mkRoot(t, fs)
		var called []string
		keygen := func(r string) error {
			called = append(called, r)
			// As ssh-keygen -A would: new keys, other bytes.
			for _, k := range []string{"ssh_host_ed25519_key", "ssh_host_rsa_key"} {
				if err := os.WriteFile(filepath.Join(r, "etc/ssh", k), []byte("new "+k), 0o600); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(r, "etc/ssh", k+".pub"), []byte("new pub"), 0o644); err != nil {
					return err
				}
			}
			return nil
		}
		changes, err := Apply(Options{Root: root, Identity: dhcpID(), Now: testNow, SSHKeygen: keygen})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if diff := cmp.Diff([]string{root}, called); diff != "" {
			t.Errorf("keygen calls (-want +got):\n%s", diff)
		}
		if !hasLine(changes, "made this node's SSH host keys: ssh_host_ed25519_key ssh_host_rsa_key") || hasLine(changes, "note: nothing") {
			t.Errorf("changes = %q", changes)
		}
		b, err := os.ReadFile(filepath.Join(root, "etc/ssh/ssh_host_rsa_key"))
		if err != nil || string(b) != "new ssh_host_rsa_key" {
			t.Errorf("ssh_host_rsa_key = %q, %v; want the new key", b, err)
		}
	})
	t.Run("keygen that fails or makes nothing fails Apply", func(t *testing.T) {
		for name, keygen := range map[string]func(string) error{
			"fails":   func(string) error { return errors.New("exec format error") },
			"nothing": func(string) error { return nil },
		} {
			fs := files{"usr/sbin/sshd": "ELF"}
			for k, v := range keys {
				fs[k] = v
			}
			root := mkRoot(t, fs)
			_, err := Apply(Options{Root: root, Identity: dhcpID(), Now: testNow, SSHKeygen: keygen})
			if err == nil || !strings.Contains(err.Error(), "make this node's SSH host keys") {
				t.Errorf("%s: Apply = %v, want an error about the SSH host keys", name, err)
			}
		}
	})
	t.Run("keygen not called when the image makes keys at boot", func(t *testing.T) {
		fs := files{"usr/lib/systemd/system/sshd-keygen@.service": "[Unit]\n", "usr/sbin/sshd": "ELF"}
		for k, v := range keys {
			fs[k] = v
		}
		root := mkRoot(t, fs)
		_, err := Apply(Options{Root: root, Identity: dhcpID(), Now: testNow, SSHKeygen: func(string) error {
			t.Error("keygen called")
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a key that is a link outside: the link goes, not its target", func(t *testing.T) {
		outside := filepath.Join(t.TempDir(), "precious")
		if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		root := mkRoot(t, files{"etc/ssh/ssh_host_rsa_key": "->" + outside})
		apply(t, root, dhcpID(), nil)
		if _, err := os.Lstat(filepath.Join(root, "etc/ssh/ssh_host_rsa_key")); err == nil {
			t.Error("link not removed")
		}
		if _, err := os.Stat(outside); err != nil {
			t.Errorf("target: %v", err)
		}
	})
	t.Run("no sshd", func(t *testing.T) {
		root := mkRoot(t, files{"etc/": ""})
		if changes := apply(t, root, dhcpID(), nil); hasLine(changes, "ssh") {
			t.Errorf("changes = %q", changes)
		}
	})
}

const header = "# Written by herd for node7.cluster.example on 2026-03-04T05:06:07Z: this node's own network\n# configuration (clones of one image differ here).\n"

func TestNetworkd(t *testing.T) {
	tests := []struct {
		name string
		id   func(Identity) Identity
		want string
	}{
		{
			name: "dhcp",
			want: header + "[Match]\nMACAddress=52:54:00:12:34:56\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nClientIdentifier=mac\n",
		},
		{
			name: "static",
			id:   func(Identity) Identity { return staticID() },
			want: header + "[Match]\nMACAddress=52:54:00:12:34:56\n\n[Network]\nAddress=10.0.0.17/24\nGateway=10.0.0.1\nDNS=10.0.0.1\nDNS=10.0.0.2\nDomains=cluster.example\n",
		},
		{
			name: "by name",
			id:   func(id Identity) Identity { id.MAC = nil; id.Interface = "enp1s0"; return id },
			want: header + "[Match]\nName=enp1s0\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nClientIdentifier=mac\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := mkRoot(t, files{"usr/lib/systemd/systemd-networkd": "ELF", "etc/systemd/network/20-wired.network": "[Match]\nName=en*\n"})
			id := dhcpID()
			if tt.id != nil {
				id = tt.id(id)
			}
			changes := apply(t, root, id, nil)
			if diff := cmp.Diff(tt.want, readFile(t, root, NetworkdFile)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !hasLine(changes, "wrote "+NetworkdFile+" (systemd-networkd") {
				t.Errorf("changes = %q", changes)
			}
			if hasLine(changes, "ifupdown") || hasLine(changes, "NetworkManager") {
				t.Errorf("wrote for systems the image lacks: %q", changes)
			}
			if got := readFile(t, root, "etc/systemd/network/20-wired.network"); got != "[Match]\nName=en*\n" {
				t.Errorf("the image's own .network changed: %q", got)
			}
		})
	}
}

const debianInterfaces = `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo eth0
iface lo inet loopback

# The primary network interface
allow-hotplug eth0
iface eth0 inet static
	address 10.0.0.2/24
	# the golden node's gateway
	gateway 10.0.0.1
	dns-nameservers 10.0.0.1

# IPv6 stays
iface eth0 inet6 auto

auto eth1
iface eth1 inet dhcp
`

func TestIfupdown(t *testing.T) {
	t.Run("dhcp", func(t *testing.T) {
		root := mkRoot(t, files{
			"etc/network/interfaces":        debianInterfaces,
			"etc/network/interfaces.d/eth0": "auto eth0\niface eth0 inet dhcp\n",
			"etc/network/interfaces.d/eth2": "auto eth2\niface eth2 inet dhcp\n",
		})
		changes := apply(t, root, dhcpID(), nil)
		want := `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
auto eth0
iface eth0 inet dhcp

# IPv6 stays
iface eth0 inet6 auto

auto eth1
iface eth1 inet dhcp
`
		if diff := cmp.Diff(want, readFile(t, root, "etc/network/interfaces")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if got := readFile(t, root, "etc/network/interfaces.d/eth0"); got != "\n" {
			t.Errorf("interfaces.d/eth0 = %q", got)
		}
		if got := readFile(t, root, "etc/network/interfaces.d/eth2"); got != "auto eth2\niface eth2 inet dhcp\n" {
			t.Errorf("interfaces.d/eth2 = %q", got)
		}
		if !hasLine(changes, "wrote /etc/network/interfaces (ifupdown, eth0 DHCP)") || !hasLine(changes, "removed eth0's inet stanza from /etc/network/interfaces.d/eth0") {
			t.Errorf("changes = %q", changes)
		}
		// Idempotent.
		apply(t, root, dhcpID(), nil)
		if diff := cmp.Diff(want, readFile(t, root, "etc/network/interfaces")); diff != "" {
			t.Errorf("second run (-want +got):\n%s", diff)
		}
	})
	t.Run("static, the stanza kept its hotplug line", func(t *testing.T) {
		root := mkRoot(t, files{"etc/network/interfaces": "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n"})
		apply(t, root, staticID(), nil)
		want := "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet static\n\taddress 10.0.0.17/24\n\tgateway 10.0.0.1\n\tdns-nameservers 10.0.0.1 10.0.0.2\n\tdns-search cluster.example\n"
		if diff := cmp.Diff(want, readFile(t, root, "etc/network/interfaces")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("no stanza yet: appended", func(t *testing.T) {
		root := mkRoot(t, files{"etc/network/interfaces": "auto lo\niface lo inet loopback"})
		apply(t, root, dhcpID(), nil)
		want := "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
		if diff := cmp.Diff(want, readFile(t, root, "etc/network/interfaces")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("absent file, ifup present", func(t *testing.T) {
		root := mkRoot(t, files{"usr/sbin/ifup": "ELF", "sbin": "->usr/sbin"})
		apply(t, root, dhcpID(), nil)
		want := "# interfaces(5) file used by ifup(8) and ifdown(8)\nsource /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
		if diff := cmp.Diff(want, readFile(t, root, "etc/network/interfaces")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("no interface name", func(t *testing.T) {
		root := mkRoot(t, files{"etc/network/interfaces": debianInterfaces})
		id := dhcpID()
		id.Interface = ""
		changes := apply(t, root, id, nil)
		if readFile(t, root, "etc/network/interfaces") != debianInterfaces || !hasLine(changes, "ifupdown needs the interface's name") {
			t.Errorf("changes = %q", changes)
		}
	})
}

var uuidRE = regexp.MustCompile(`uuid=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n`)

func TestNetworkManager(t *testing.T) {
	tests := []struct {
		name string
		id   Identity
		want string
	}{
		{
			name: "dhcp",
			id:   dhcpID(),
			want: header + "[connection]\nid=herd\nuuid=UUID\ntype=ethernet\nautoconnect=true\nautoconnect-priority=100\n\n[ethernet]\nmac-address=52:54:00:12:34:56\n\n[ipv4]\nmethod=auto\ndhcp-client-id=mac\n\n[ipv6]\nmethod=auto\n",
		},
		{
			name: "static",
			id:   staticID(),
			want: header + "[connection]\nid=herd\nuuid=UUID\ntype=ethernet\nautoconnect=true\nautoconnect-priority=100\n\n[ethernet]\nmac-address=52:54:00:12:34:56\n\n[ipv4]\nmethod=manual\naddress1=10.0.0.17/24,10.0.0.1\ndns=10.0.0.1;10.0.0.2;\ndns-search=cluster.example;\n\n[ipv6]\nmethod=auto\n",
		},
		{
			name: "static IPv6 by name",
			id: Identity{Hostname: "node7", Domain: "cluster.example", Interface: "eth0",
				IP: netip.MustParsePrefix("fd00::17/64"), Gateway: netip.MustParseAddr("fd00::1"), DNS: []netip.Addr{netip.MustParseAddr("fd00::1")}},
			want: header + "[connection]\nid=herd\nuuid=UUID\ntype=ethernet\nautoconnect=true\nautoconnect-priority=100\ninterface-name=eth0\n\n[ipv4]\nmethod=disabled\n\n[ipv6]\nmethod=manual\naddress1=fd00::17/64,fd00::1\ndns=fd00::1;\ndns-search=cluster.example;\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := mkRoot(t, files{"usr/sbin/NetworkManager": "ELF", "etc/NetworkManager/NetworkManager.conf": "[main]\n"})
			changes := apply(t, root, tt.id, nil)
			got := readFile(t, root, NMFile)
			if !uuidRE.MatchString(got) {
				t.Errorf("no random uuid in %q", got)
			}
			got = uuidRE.ReplaceAllString(got, "uuid=UUID\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			fi, err := os.Stat(filepath.Join(root, NMFile))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
			}
			di, err := os.Stat(filepath.Dir(filepath.Join(root, NMFile)))
			if err != nil || di.Mode().Perm() != 0o700 {
				t.Errorf("directory mode %v, %v; want 0700", di.Mode(), err)
			}
			if !hasLine(changes, "wrote "+NMFile+" (NetworkManager") {
				t.Errorf("changes = %q", changes)
			}
		})
	}
	// An existing, world-readable keyfile becomes 0600.
	root := mkRoot(t, files{"etc/NetworkManager/system-connections/herd.nmconnection": "old"})
	apply(t, root, dhcpID(), nil)
	if fi, err := os.Stat(filepath.Join(root, NMFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestNetworkSeveralAndNone(t *testing.T) {
	root := mkRoot(t, files{
		"lib/systemd/systemd-networkd": "ELF",
		"etc/network/interfaces":       "auto lo\niface lo inet loopback\n",
		"etc/NetworkManager/":          "",
	})
	changes := apply(t, root, dhcpID(), nil)
	for _, f := range []string{NetworkdFile, IfupdownFile, NMFile} {
		if !hasLine(changes, "wrote "+f) {
			t.Errorf("changes %q lack %s", changes, f)
		}
	}
	root = mkRoot(t, files{"etc/": ""})
	changes = apply(t, root, dhcpID(), nil)
	if !hasLine(changes, "note: the image has neither systemd-networkd, ifupdown nor NetworkManager") {
		t.Errorf("changes = %q", changes)
	}
	id := dhcpID()
	id.MAC, id.Interface = nil, ""
	root = mkRoot(t, files{"lib/systemd/systemd-networkd": "ELF"})
	changes = apply(t, root, id, nil)
	if !hasLine(changes, "note: no MAC and no interface name") {
		t.Errorf("changes = %q", changes)
	}
}

const debianFstab = `# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
# / was on /dev/sda1 during installation
UUID=0b4b5ab4-3b0a-4c8a-9a68-6b1d2d3c4e5f /               ext4    errors=remount-ro 0       1
/dev/sda15	/boot/efi	vfat	umask=0077	0	1
# swap was on /dev/sda5 during installation
/dev/sda5       none            swap    sw              0       0
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0
LABEL=data	/mnt/my\040data	xfs	defaults,nofail	0	2
tmpfs /tmp tmpfs defaults,size=2g 0 0`

func TestFstab(t *testing.T) {
	root := mkRoot(t, files{"etc/fstab": debianFstab})
	changes := apply(t, root, dhcpID(), map[string]string{
		"/":            "11111111-2222-4333-8444-555555555555",
		"/boot/efi":    "ABCD-1234",
		"swap":         "66666666-7777-4888-9999-000000000000",
		"/mnt/my data": "77777777-0000-4000-8000-000000000000",
		"/srv":         "88888888-0000-4000-8000-000000000000",
	})
	want := `# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
# / was on /dev/sda1 during installation
UUID=11111111-2222-4333-8444-555555555555 /               ext4    errors=remount-ro 0       1
UUID=ABCD-1234	/boot/efi	vfat	umask=0077	0	1
# swap was on /dev/sda5 during installation
UUID=66666666-7777-4888-9999-000000000000       none            swap    sw              0       0
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0
UUID=77777777-0000-4000-8000-000000000000	/mnt/my\040data	xfs	defaults,nofail	0	2
tmpfs /tmp tmpfs defaults,size=2g 0 0`
	if diff := cmp.Diff(want, readFile(t, root, "etc/fstab")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !hasLine(changes, "wrote /etc/fstab (/ → UUID=11111111") || !hasLine(changes, "note: /etc/fstab has no entry for /srv") {
		t.Errorf("changes = %q", changes)
	}
	// Again: nothing to change.
	changes = apply(t, root, dhcpID(), map[string]string{"/": "11111111-2222-4333-8444-555555555555"})
	if !hasLine(changes, "kept /etc/fstab") {
		t.Errorf("changes = %q", changes)
	}

	// Two entries for one key, a bad UUID, no fstab.
	root = mkRoot(t, files{"etc/fstab": "/dev/sda2 none swap sw 0 0\n/dev/sdb2 none swap sw 0 0\n"})
	if _, err := Apply(Options{Root: root, Identity: dhcpID(), FstabByUUID: map[string]string{"swap": "x"}}); err == nil || !strings.Contains(err.Error(), "several entries") {
		t.Errorf("two swaps: %v", err)
	}
	if _, err := Apply(Options{Root: root, Identity: dhcpID(), FstabByUUID: map[string]string{"/": "a b"}}); err == nil {
		t.Error("bad UUID: no error")
	}
	root = mkRoot(t, files{"etc/": ""})
	changes = apply(t, root, dhcpID(), map[string]string{"/": "x"})
	if !hasLine(changes, "note: no /etc/fstab") {
		t.Errorf("changes = %q", changes)
	}
}

func TestSymlinksOutsideRefused(t *testing.T) {
	outsideDir := t.TempDir()
	shadow := filepath.Join(outsideDir, "shadow-outside-root")
	if err := os.WriteFile(shadow, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fs   files
	}{
		{"absolute link", files{"etc/hostname": "->" + shadow}},
		{"relative link", files{"etc/hostname": "->../../" + filepath.Base(outsideDir) + "/shadow-outside-root"}},
		{"link to /etc/shadow, as the system would read it", files{"etc/hostname": "->/etc/shadow", "etc/shadow": "x"}},
		{"hosts read through a link", files{"etc/hosts": "->" + shadow}},
		{"etc is a link", files{"etc": "->" + outsideDir}},
		{"fstab", files{"etc/fstab": "->" + shadow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := mkRoot(t, tt.fs)
			// The relative link must lead to outsideDir from root/etc.
			if l, ok := tt.fs["etc/hostname"]; ok && strings.HasPrefix(l, "->../../") {
				os.Remove(filepath.Join(root, "etc/hostname"))
				rel, _ := filepath.Rel(filepath.Join(root, "etc"), shadow)
				if err := os.Symlink(rel, filepath.Join(root, "etc/hostname")); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Apply(Options{Root: root, Identity: dhcpID(), FstabByUUID: map[string]string{"/": "u"}})
			if !errors.Is(err, ErrOutsideRoot) {
				t.Errorf("Apply = %v, want ErrOutsideRoot", err)
			}
			if got, _ := os.ReadFile(shadow); string(got) != "root:secret\n" {
				t.Errorf("outside file changed: %q", got)
			}
			if entries, _ := os.ReadDir(outsideDir); len(entries) != 1 {
				t.Errorf("files created outside: %v", entries)
			}
		})
	}

	// A link that stays inside the root is written through.
	root := mkRoot(t, files{"etc/hostname": "->../var/lib/hostname", "var/lib/hostname": "old\n"})
	apply(t, root, dhcpID(), nil)
	if got := readFile(t, root, "var/lib/hostname"); got != "node7\n" {
		t.Errorf("through the link: %q", got)
	}
	// A dangling link, or one to a directory, is refused.
	root = mkRoot(t, files{"etc/hostname": "->nowhere"})
	if _, err := Apply(Options{Root: root, Identity: dhcpID()}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("dangling: %v", err)
	}
	root = mkRoot(t, files{"etc/hostname": "->../var", "var/x": ""})
	if _, err := Apply(Options{Root: root, Identity: dhcpID()}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("to a directory: %v", err)
	}
}

func TestIdentityErrors(t *testing.T) {
	root := mkRoot(t, files{"etc/": ""})
	for name, id := range map[string]Identity{
		"no name":        {DHCP: true},
		"bad name":       {Hostname: "node_7", DHCP: true},
		"bad domain":     {Hostname: "n", Domain: "a..b", DHCP: true},
		"leading dash":   {Hostname: "-n", DHCP: true},
		"static, no IP":  {Hostname: "n"},
		"gateway family": {Hostname: "n", IP: netip.MustParsePrefix("10.0.0.1/8"), Gateway: netip.MustParseAddr("fd00::1")},
		"bad interface":  {Hostname: "n", Interface: "a/b", DHCP: true},
	} {
		if _, err := Apply(Options{Root: root, Identity: id}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Apply(Options{Identity: dhcpID()}); err == nil {
		t.Error("no root: no error")
	}
	if _, err := Apply(Options{Root: filepath.Join(root, "missing"), Identity: dhcpID()}); err == nil {
		t.Error("missing root: no error")
	}
}

// TestGoldenDebian applies everything to a Debian-like tree and checks
// the list of changes.
func TestGoldenDebian(t *testing.T) {
	root := mkRoot(t, files{
		"etc/hostname":                     "golden\n",
		"etc/hosts":                        "127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n",
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id":          "->/etc/machine-id",
		"etc/ssh/ssh_host_ed25519_key":     "k",
		"etc/ssh/ssh_host_ed25519_key.pub": "p",
		"lib/systemd/systemd-networkd":     "ELF",
		"etc/network/interfaces":           "auto lo\niface lo inet loopback\n\nallow-hotplug ens3\niface ens3 inet dhcp\n",
		"etc/fstab":                        "/dev/vda1 / ext4 errors=remount-ro 0 1\n",
	})
	var logged []string
	id := dhcpID()
	id.Interface = "ens3"
	changes, err := Apply(Options{
		Root: root, Identity: id, Now: testNow,
		FstabByUUID: map[string]string{"/": "11111111-2222-4333-8444-555555555555"},
		Logf:        func(f string, a ...any) { logged = append(logged, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	mid := strings.TrimSpace(readFile(t, root, "etc/machine-id"))
	want := []string{
		"wrote /etc/hostname (node7)",
		"wrote /etc/hosts (127.0.1.1 node7.cluster.example node7)",
		"wrote /etc/machine-id (" + mid + ")",
		"removed /etc/ssh/ssh_host_ed25519_key",
		"removed /etc/ssh/ssh_host_ed25519_key.pub",
		"note: nothing in the image makes SSH host keys at boot (no sshd-keygen unit): sshd will not start until `ssh-keygen -A` runs; add it to the image or the plan's %post",
		"wrote /etc/systemd/network/10-herd.network (systemd-networkd, DHCP)",
		"wrote /etc/network/interfaces (ifupdown, ens3 DHCP)",
		"wrote /etc/fstab (/ → UUID=11111111-2222-4333-8444-555555555555)",
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if len(logged) != len(changes) {
		t.Errorf("logged %d lines for %d changes", len(logged), len(changes))
	}
}

func FuzzRewriteHosts(f *testing.F) {
	f.Add("127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n::1 localhost\n")
	f.Add("# x\n10.0.0.1 a")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		line := "127.0.1.1\tnode7.cluster.example node7"
		once := rewriteHosts(in, line)
		if twice := rewriteHosts(once, line); twice != once {
			t.Fatalf("not idempotent:\n%q\n%q", once, twice)
		}
		if strings.Count(once, line) != 1 {
			t.Fatalf("%q: want the line once", once)
		}
		// Lines other than 127.0.1.1 ones survive, in order.
		var kept []string
		for _, l := range splitLines(in) {
			if f := strings.Fields(stripComment(l)); len(f) == 0 || f[0] != "127.0.1.1" {
				kept = append(kept, l)
			}
		}
		var got []string
		for _, l := range splitLines(once) {
			if l != line {
				got = append(got, l)
			}
		}
		if !cmp.Equal(kept, got, cmpopts.EquateEmpty()) {
			t.Fatalf("lines lost: %q → %q", in, once)
		}
	})
}

func FuzzRewriteFstab(f *testing.F) {
	f.Add(debianFstab, "/", "/boot/efi")
	f.Add("/dev/sda1 / ext4 defaults 0 1\n", "/", "swap")
	f.Add("a\\040b /x\\040y swap sw\r\n", "/x y", "swap")
	f.Fuzz(func(t *testing.T, in, k1, k2 string) {
		m := map[string]string{k1: "11111111-2222-4333-8444-555555555555", k2: "ABCD-1234"}
		out, _, _, err := rewriteFstab(in, m)
		if err != nil {
			return
		}
		inL, outL := strings.SplitAfter(in, "\n"), strings.SplitAfter(out, "\n")
		if len(inL) != len(outL) {
			t.Fatalf("line count changed: %q → %q", in, out)
		}
		for i := range inL {
			if inL[i] == outL[i] {
				continue
			}
			// Only the first field changed, to UUID=...
			a, b := fstabFields(inL[i]), fstabFields(outL[i])
			if len(a) != len(b) || !strings.HasPrefix(outL[i][b[0].start:b[0].end], "UUID=") ||
				inL[i][:a[0].start] != outL[i][:b[0].start] || inL[i][a[0].end:] != outL[i][b[0].end:] {
				t.Fatalf("line %d: %q → %q", i, inL[i], outL[i])
			}
		}
		if again, _, _, err := rewriteFstab(out, m); err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q (%v)", out, again, err)
		}
	})
}

func FuzzRewriteInterfaces(f *testing.F) {
	f.Add(debianInterfaces, true)
	f.Add("auto lo\niface lo inet loopback", false)
	f.Add("allow-hotplug eth0 eth1\niface eth0 inet dhcp\n# c\n\tfoo\n", true)
	f.Fuzz(func(t *testing.T, in string, dhcp bool) {
		ids := staticID()
		if dhcp {
			ids = dhcpID()
		}
		id, err := checkIdentity(ids)
		if err != nil {
			t.Fatal(err)
		}
		once := rewriteInterfaces(in, id, "inet")
		if twice := rewriteInterfaces(once, id, "inet"); twice != once {
			t.Fatalf("not idempotent:\n%q\n%q", once, twice)
		}
		if !strings.Contains(once, "iface eth0 inet ") {
			t.Fatalf("no stanza in %q", once)
		}
	})
}

func TestMachineState(t *testing.T) {
	root := mkRoot(t, files{
		"var/lib/systemd/random-seed":                    "seed",
		"var/lib/systemd/credential.secret":              "secret",
		"var/lib/dhcp/dhclient.enp1s0.leases":            "lease { }",
		"var/lib/dhcp/keep.conf":                         "x",
		"var/lib/NetworkManager/secret_key":              "k",
		"var/lib/NetworkManager/internal-1-enp1s0.lease": "l",
		"var/lib/NetworkManager/NetworkManager.state":    "s",
		"var/lib/systemd/timesync/clock":                 "",
	})
	changes := apply(t, root, dhcpID(), nil)
	for _, gone := range []string{"var/lib/systemd/random-seed", "var/lib/systemd/credential.secret", "var/lib/dhcp/dhclient.enp1s0.leases", "var/lib/NetworkManager/secret_key", "var/lib/NetworkManager/internal-1-enp1s0.lease"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there (%v)", gone, err)
		}
		if !hasLine(changes, "removed /"+gone) {
			t.Errorf("changes do not say /%s was removed: %q", gone, changes)
		}
	}
	for _, kept := range []string{"var/lib/dhcp/keep.conf", "var/lib/NetworkManager/NetworkManager.state", "var/lib/systemd/timesync/clock"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
}
