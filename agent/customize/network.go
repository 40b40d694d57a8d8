package customize

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/herdproject/herd/internal/uuid"
)

// The files Apply writes for each network configuration system.
//
// systemd-networkd reads the .network files of /etc/systemd/network,
// /run/systemd/network and /usr/lib/systemd/network in lexical order of
// their names, and the first that matches an interface configures it:
// "10-herd" comes before netplan's generated "10-netplan-*" and the
// usual "20-wired", so it wins over what the golden image had unless that
// sorts earlier and matches the clone's interface too.
//
// NetworkManager prefers the connection with the highest
// autoconnect-priority: herd's has 100.
const (
	NetworkdFile = "/etc/systemd/network/10-herd.network"
	IfupdownFile = "/etc/network/interfaces"
	NMFile       = "/etc/NetworkManager/system-connections/herd.nmconnection"
)

// Where the image's network systems live: any of these present means
// the image has that system.
var (
	networkdMarks = []string{"/usr/lib/systemd/systemd-networkd", "/lib/systemd/systemd-networkd"}
	ifupdownMarks = []string{"/sbin/ifup", "/usr/sbin/ifup", IfupdownFile}
	nmMarks       = []string{"/usr/sbin/NetworkManager", "/usr/bin/NetworkManager", "/etc/NetworkManager"}
)

func (t *tree) anyExists(paths []string) bool {
	for _, p := range paths {
		if t.exists(p) {
			return true
		}
	}
	return false
}

// network writes the configuration of every network system the image
// has.
func (t *tree) network(id identity) error {
	if len(id.MAC) == 0 && id.Interface == "" {
		t.note("note: no MAC and no interface name: network configuration not written")
		return nil
	}
	found := false
	if t.anyExists(networkdMarks) {
		found = true
		if err := t.networkd(id); err != nil {
			return err
		}
	}
	if t.anyExists(ifupdownMarks) {
		found = true
		if err := t.ifupdown(id); err != nil {
			return err
		}
	}
	if t.anyExists(nmMarks) {
		found = true
		if err := t.networkManager(id); err != nil {
			return err
		}
	}
	if !found {
		t.note("note: the image has neither systemd-networkd, ifupdown nor NetworkManager: network configuration not written")
	}
	return nil
}

// header is the comment on top of the files herd generates.
func (t *tree) header(id identity) string {
	return fmt.Sprintf("# Written by herd for %s on %s: this node's own network\n# configuration (clones of one image differ here).\n",
		id.fqdn(), t.now().UTC().Format(time.RFC3339))
}

// mode says how the configuration is made, for the change lines.
func (id identity) mode() string {
	if id.DHCP {
		return "DHCP"
	}
	return "static " + id.IP.String()
}

// networkdConfig renders the .network file.
func networkdConfig(header string, id identity) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("[Match]\n")
	if len(id.MAC) > 0 {
		fmt.Fprintf(&b, "MACAddress=%s\n", id.MAC)
	} else {
		fmt.Fprintf(&b, "Name=%s\n", id.Interface)
	}
	b.WriteString("\n[Network]\n")
	if id.DHCP {
		b.WriteString("DHCP=yes\n")
		// The lease is keyed by the MAC, as herd's DHCP server and
		// inventory know the node, not by a DUID from the machine ID.
		b.WriteString("\n[DHCPv4]\nClientIdentifier=mac\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Address=%s\n", id.IP)
	if id.Gateway.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", id.Gateway)
	}
	for _, d := range id.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if id.domain != "" {
		fmt.Fprintf(&b, "Domains=%s\n", id.domain)
	}
	return b.String()
}

func (t *tree) networkd(id identity) error {
	if err := t.mkdirAll(path.Dir(NetworkdFile), 0o755); err != nil {
		return err
	}
	if err := t.write(NetworkdFile, []byte(networkdConfig(t.header(id), id)), 0o644, false); err != nil {
		return err
	}
	t.note("wrote %s (systemd-networkd, %s)", NetworkdFile, id.mode())
	return nil
}

// ifupdown rewrites the interface's stanza in /etc/network/interfaces
// and removes its stanzas from /etc/network/interfaces.d/*.
func (t *tree) ifupdown(id identity) error {
	if id.Interface == "" {
		t.note("note: ifupdown needs the interface's name: %s left as it was", IfupdownFile)
		return nil
	}
	family := "inet"
	if !id.DHCP && id.IP.Addr().Is6() {
		family = "inet6"
	}
	// Stanzas elsewhere would configure the interface twice.
	entries, err := t.readDir("/etc/network/interfaces.d")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := path.Join("/etc/network/interfaces.d", e.Name())
		b, ok, err := t.read(p)
		if err != nil || !ok {
			return err
		}
		out, _, _, changed := dropInterface(splitLines(string(b)), id.Interface, family)
		if !changed {
			continue
		}
		if err := t.write(p, []byte(joinLines(out, string(b))), 0o644, false); err != nil {
			return err
		}
		t.note("removed %s's %s stanza from %s", id.Interface, family, p)
	}

	b, ok, err := t.read(IfupdownFile)
	if err != nil {
		return err
	}
	var content string
	if !ok {
		content = "# interfaces(5) file used by ifup(8) and ifdown(8)\nsource /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n" +
			strings.Join(ifupdownStanza(id, family, "auto"), "\n") + "\n"
		if err := t.mkdirAll(path.Dir(IfupdownFile), 0o755); err != nil {
			return err
		}
	} else {
		content = rewriteInterfaces(string(b), id, family)
	}
	if err := t.write(IfupdownFile, []byte(content), 0o644, false); err != nil {
		return err
	}
	t.note("wrote %s (ifupdown, %s %s)", IfupdownFile, id.Interface, id.mode())
	return nil
}

// rewriteInterfaces replaces the interface's stanza for family in an
// interfaces(5) file: the stanza goes where the old one was (else at the
// end), with the "auto" or "allow-hotplug" line the interface had; the
// interface leaves the other auto/allow lines; everything else stays.
func rewriteInterfaces(content string, id identity, family string) string {
	out, at, kind, _ := dropInterface(splitLines(content), id.Interface, family)
	if kind == "" {
		kind = "auto"
	}
	stanza := ifupdownStanza(id, family, kind)
	if at < 0 {
		if len(out) > 0 && strings.TrimSpace(out[len(out)-1]) != "" {
			out = append(out, "")
		}
		out = append(out, stanza...)
	} else {
		// Lines after the old stanza that start no stanza of their own
		// (options left behind an auto/allow line that named only this
		// interface) would read as options of the new stanza, to
		// ifup(8) as to the next rewrite: they go, as the old options did.
		j := at
		for j < len(out) && !isStanzaStart(out[j]) {
			j++
		}
		for j > at && isBlankOrComment(out[j-1]) {
			j--
		}
		out = append(out[:at], append(stanza, out[j:]...)...)
	}
	return joinLines(out, "\n") // always end with a newline
}

// ifupdownStanza renders the stanza, starting with its "auto" (or
// "allow-hotplug") line.
func ifupdownStanza(id identity, family, kind string) []string {
	ifn := id.Interface
	if id.DHCP {
		return []string{kind + " " + ifn, "iface " + ifn + " inet dhcp"}
	}
	s := []string{kind + " " + ifn, "iface " + ifn + " " + family + " static", "\taddress " + id.IP.String()}
	if id.Gateway.IsValid() {
		s = append(s, "\tgateway "+id.Gateway.String())
	}
	if len(id.DNS) > 0 {
		var ns []string
		for _, d := range id.DNS {
			ns = append(ns, d.String())
		}
		s = append(s, "\tdns-nameservers "+strings.Join(ns, " "))
	}
	if id.domain != "" {
		s = append(s, "\tdns-search "+id.domain)
	}
	return s
}

// isStanzaStart reports whether an interfaces(5) line starts a stanza
// (and so ends the options of the one before).
func isStanzaStart(l string) bool {
	f := strings.Fields(l)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return false
	}
	switch f[0] {
	case "iface", "mapping", "auto", "source", "source-directory", "source-dir", "no-auto-down", "no-scripts", "rename", "template":
		return true
	}
	return strings.HasPrefix(f[0], "allow-")
}

func isBlankOrComment(l string) bool {
	s := strings.TrimSpace(l)
	return s == "" || s[0] == '#'
}

// dropInterface removes the "iface IFN FAMILY" stanzas and IFN from the
// auto/allow-* lines (a line left empty goes). at is the index in out
// where the first removed stanza was (-1: none); kind is the first
// auto/allow-* keyword that named the interface ("" = none). Comments
// and blank lines at the end of a removed stanza stay.
func dropInterface(lines []string, ifn, family string) (out []string, at int, kind string, changed bool) {
	at = -1
	for i := 0; i < len(lines); {
		l := lines[i]
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] == "iface" && f[1] == ifn && f[2] == family:
			j := i + 1
			for j < len(lines) && !isStanzaStart(lines[j]) {
				j++
			}
			for j > i+1 && isBlankOrComment(lines[j-1]) {
				j--
			}
			if at < 0 {
				at = len(out)
			}
			changed = true
			i = j
			continue
		case len(f) >= 2 && (f[0] == "auto" || strings.HasPrefix(f[0], "allow-")):
			var rest []string
			for _, w := range f[1:] {
				if w != ifn {
					rest = append(rest, w)
				}
			}
			if len(rest) != len(f)-1 {
				changed = true
				if kind == "" {
					kind = f[0]
				}
				if len(rest) > 0 {
					out = append(out, f[0]+" "+strings.Join(rest, " "))
				}
				i++
				continue
			}
		}
		out = append(out, l)
		i++
	}
	return out, at, kind, changed
}

// nmConfig renders the NetworkManager keyfile (nm-settings-keyfile(5)).
func nmConfig(header, uuid string, id identity) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("[connection]\nid=herd\n")
	fmt.Fprintf(&b, "uuid=%s\n", uuid)
	b.WriteString("type=ethernet\nautoconnect=true\nautoconnect-priority=100\n")
	if len(id.MAC) == 0 {
		fmt.Fprintf(&b, "interface-name=%s\n", id.Interface)
	}
	if len(id.MAC) > 0 {
		fmt.Fprintf(&b, "\n[ethernet]\nmac-address=%s\n", strings.ToUpper(id.MAC.String()))
	}
	dns := func(addrs []netip.Addr, v6 bool) string {
		var s string
		for _, a := range addrs {
			if a.Is6() == v6 {
				s += a.String() + ";"
			}
		}
		return s
	}
	section := func(name, method string, static bool) {
		fmt.Fprintf(&b, "\n[%s]\nmethod=%s\n", name, method)
		if !static {
			if name == "ipv4" && method == "auto" {
				// Keyed by MAC, as in the networkd file.
				b.WriteString("dhcp-client-id=mac\n")
			}
			return
		}
		if id.Gateway.IsValid() {
			fmt.Fprintf(&b, "address1=%s,%s\n", id.IP, id.Gateway)
		} else {
			fmt.Fprintf(&b, "address1=%s\n", id.IP)
		}
		if s := dns(id.DNS, name == "ipv6"); s != "" {
			fmt.Fprintf(&b, "dns=%s\n", s)
		}
		if id.domain != "" {
			fmt.Fprintf(&b, "dns-search=%s;\n", id.domain)
		}
	}
	switch {
	case id.DHCP:
		section("ipv4", "auto", false)
		section("ipv6", "auto", false)
	case id.IP.Addr().Is4():
		section("ipv4", "manual", true)
		section("ipv6", "auto", false)
	default:
		section("ipv4", "disabled", false)
		section("ipv6", "manual", true)
	}
	return b.String()
}

// networkManager writes herd's NetworkManager connection, mode 0600 (NM
// ignores keyfiles others can read).
func (t *tree) networkManager(id identity) error {
	if err := t.mkdirAll("/etc/NetworkManager", 0o755); err != nil {
		return err
	}
	if err := t.mkdirAll(path.Dir(NMFile), 0o700); err != nil {
		return err
	}
	profile, err := uuid.New()
	if err != nil {
		return fmt.Errorf("random UUID: %w", err)
	}
	if err := t.write(NMFile, []byte(nmConfig(t.header(id), profile, id)), 0o600, true); err != nil {
		return err
	}
	t.note("wrote %s (NetworkManager, %s)", NMFile, id.mode())
	return nil
}
