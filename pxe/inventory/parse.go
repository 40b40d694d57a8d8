package inventory

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/bmc"
	"github.com/herdproject/herd/internal/parseerr"
)

// ParseError is an error in an inventory file: "FILE:LINE: MSG".
type ParseError = parseerr.Error

// MaxSize is the largest inventory file Parse reads.
const MaxSize = 16 << 20

// ParseFile reads and parses the inventory file at path; the result's
// File is path.
func ParseFile(path string) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open inventory: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse reads an inventory in the format of the package comment. name is
// used in messages and as the result's File. Errors about the content are
// *ParseError and name the first line at fault; lines are checked in
// order, then everything that depends on the subnet (which may come after
// the nodes).
//
// What Parse returns satisfies: every MAC is a unicast 6-byte Ethernet
// address, unique; every name is an RFC 1123 host name, unique ignoring
// case; every node IP is a unique IPv4 host address of the subnet (neither
// its network nor its broadcast address, nor the router's) outside the
// dynamic range; the range and the router lie inside the subnet.
func Parse(name string, r io.Reader) (*Inventory, error) {
	data, err := parseerr.ReadAll(name, r, MaxSize, "an inventory file")
	if err != nil {
		return nil, err
	}
	p := &parser{
		name:    name,
		inv:     &Inventory{File: name},
		globals: map[string]int{},
		macs:    map[string]int{},
		names:   map[string]nameLine{},
		ips:     map[netip.Addr]int{},
	}
	for i, line := range bytes.Split(data, []byte("\n")) {
		if err := p.line(i+1, string(line)); err != nil {
			return nil, err
		}
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p.inv, nil
}

type nameLine struct {
	name string
	line int
}

type parser struct {
	name    string
	inv     *Inventory
	globals map[string]int // keyword → line
	macs    map[string]int // normalised MAC → line
	names   map[string]nameLine
	ips     map[netip.Addr]int
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &ParseError{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

const keywords = "subnet, router, dns, domain, lease, range, node"

func (p *parser) line(n int, line string) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil
	}
	kw, args := f[0], f[1:]
	switch kw {
	case "node":
		return p.node(n, args)
	case "subnet", "router", "dns", "domain", "lease", "range":
	default:
		return p.errorf(n, "unknown keyword %q (want one of %s)", kw, keywords)
	}
	if first, ok := p.globals[kw]; ok {
		return p.errorf(n, "%s given twice (first on line %d)", kw, first)
	}
	p.globals[kw] = n
	inv := p.inv
	switch kw {
	case "subnet":
		if len(args) != 1 {
			return p.errorf(n, "want subnet PREFIX (e.g. subnet 10.0.0.0/24)")
		}
		pfx, err := netip.ParsePrefix(args[0])
		if err != nil || !pfx.Addr().Is4() {
			return p.errorf(n, "subnet %q: want an IPv4 prefix such as 10.0.0.0/24", args[0])
		}
		if pfx.Bits() > 30 {
			return p.errorf(n, "subnet %s has no room for nodes: want a prefix of /30 or shorter", pfx)
		}
		if pfx.Masked() != pfx {
			return p.errorf(n, "subnet %s has host bits set: want %s", pfx, pfx.Masked())
		}
		inv.Subnet = pfx
	case "router":
		if len(args) != 1 {
			return p.errorf(n, "want router ADDRESS (one IPv4 address)")
		}
		a, err := parseIPv4(args[0])
		if err != nil {
			return p.errorf(n, "router: %v", err)
		}
		inv.Router = a
	case "dns":
		if len(args) == 0 {
			return p.errorf(n, "want dns ADDRESS [ADDRESS...]")
		}
		for _, s := range args {
			a, err := parseIPv4(s)
			if err != nil {
				return p.errorf(n, "dns: %v", err)
			}
			for _, b := range inv.DNS {
				if a == b {
					return p.errorf(n, "dns: %s given twice", a)
				}
			}
			inv.DNS = append(inv.DNS, a)
		}
	case "domain":
		if len(args) != 1 {
			return p.errorf(n, "want domain NAME (e.g. domain cluster.example)")
		}
		if err := checkHostname(args[0]); err != nil {
			return p.errorf(n, "domain %q: %v", args[0], err)
		}
		inv.Domain = args[0]
	case "lease":
		if len(args) != 1 {
			return p.errorf(n, "want lease DURATION (1h, 30m) or SECONDS")
		}
		d, err := parseLease(args[0])
		if err != nil {
			return p.errorf(n, "lease %q: %v", args[0], err)
		}
		inv.Lease = d
	case "range":
		if len(args) != 2 {
			return p.errorf(n, "want range START END (two IPv4 addresses)")
		}
		lo, err := parseIPv4(args[0])
		if err != nil {
			return p.errorf(n, "range start: %v", err)
		}
		hi, err := parseIPv4(args[1])
		if err != nil {
			return p.errorf(n, "range end: %v", err)
		}
		if hi.Less(lo) {
			return p.errorf(n, "range %s %s is reversed: want range %s %s", lo, hi, hi, lo)
		}
		inv.RangeStart, inv.RangeEnd = lo, hi
	}
	return nil
}

const nodeSyntax = "node MAC NAME IP [plan=FILE] [profile=NAME] [bmc=ipmi://USER@HOST] [rack=NAME]"

func (p *parser) node(n int, args []string) error {
	if len(args) < 3 {
		return p.errorf(n, "want %s", nodeSyntax)
	}
	mac, err := ParseMAC(args[0])
	if err != nil {
		return p.errorf(n, "%v", err)
	}
	if first, ok := p.macs[string(mac)]; ok {
		return p.errorf(n, "duplicate MAC %s (first on line %d)", mac, first)
	}
	name := args[1]
	if err := checkHostname(name); err != nil {
		return p.errorf(n, "node name %q: %v", name, err)
	}
	if first, ok := p.names[strings.ToLower(name)]; ok {
		if first.name != name {
			return p.errorf(n, "duplicate name %s (first on line %d as %s; names ignore case)", name, first.line, first.name)
		}
		return p.errorf(n, "duplicate name %s (first on line %d)", name, first.line)
	}
	ip, err := parseIPv4(args[2])
	if err != nil {
		return p.errorf(n, "node %s: %v", name, err)
	}
	if first, ok := p.ips[ip]; ok {
		return p.errorf(n, "duplicate IP %s (first on line %d)", ip, first)
	}
	node := Node{MAC: mac, Name: name, IP: ip, Line: n}
	for _, opt := range args[3:] {
		k, v, ok := strings.Cut(opt, "=")
		switch {
		case !ok || (k != "plan" && k != "profile" && k != "bmc" && k != "rack"):
			return p.errorf(n, "unknown node option %q (want plan=FILE, profile=NAME, bmc=ipmi://USER@HOST or rack=NAME)", opt)
		case v == "":
			return p.errorf(n, "node option %s= is empty", k)
		case k == "plan":
			if node.Plan != "" {
				return p.errorf(n, "plan= given twice")
			}
			if !filepath.IsLocal(v) || strings.Contains(v, `\`) {
				return p.errorf(n, "plan=%s: want a relative path inside the plan directory", v)
			}
			node.Plan = v
		case k == "profile":
			if node.Profile != "" {
				return p.errorf(n, "profile= given twice")
			}
			node.Profile = v
		case k == "bmc":
			if node.BMC != "" {
				return p.errorf(n, "bmc= given twice")
			}
			t, err := bmc.Parse(v)
			if err != nil {
				return p.errorf(n, "node %s: %v", name, err)
			}
			node.BMC = t.String()
		case k == "rack":
			if node.Rack != "" {
				return p.errorf(n, "rack= given twice")
			}
			if err := checkRack(v); err != nil {
				return p.errorf(n, "node %s: rack=%s: %v", name, v, err)
			}
			node.Rack = v
		}
	}
	p.macs[string(mac)] = n
	p.names[strings.ToLower(name)] = nameLine{name, n}
	p.ips[ip] = n
	p.inv.Nodes = append(p.inv.Nodes, node)
	return nil
}

// check verifies what depends on the subnet, line by line in file order.
func (p *parser) check() error {
	inv := p.inv
	subnetLine, haveSubnet := p.globals["subnet"]
	if !haveSubnet {
		// The first line that needs a subnet.
		line, what := 0, ""
		need := func(l int, w string) {
			if l > 0 && (line == 0 || l < line) {
				line, what = l, w
			}
		}
		need(p.globals["router"], "router")
		need(p.globals["range"], "range")
		if len(inv.Nodes) > 0 {
			need(inv.Nodes[0].Line, "node")
		}
		if line > 0 {
			return p.errorf(line, "%s needs a subnet line (e.g. subnet 10.0.0.0/24)", what)
		}
		return nil
	}
	network := inv.Subnet.Addr()
	bcast := broadcast(inv.Subnet)
	// host says what is wrong with a as an address on the subnet.
	host := func(a netip.Addr) string {
		switch {
		case !inv.Subnet.Contains(a):
			return fmt.Sprintf("%s is outside subnet %s (line %d)", a, inv.Subnet, subnetLine)
		case a == network:
			return fmt.Sprintf("%s is the network address of subnet %s", a, inv.Subnet)
		case a == bcast:
			return fmt.Sprintf("%s is the broadcast address of subnet %s", a, inv.Subnet)
		}
		return ""
	}
	type problem struct {
		line int
		msg  string
	}
	var probs []problem
	if l, ok := p.globals["router"]; ok {
		if m := host(inv.Router); m != "" {
			probs = append(probs, problem{l, "router " + m})
		}
	}
	inRange := func(a netip.Addr) bool {
		return inv.RangeStart.IsValid() && !a.Less(inv.RangeStart) && !inv.RangeEnd.Less(a)
	}
	if l, ok := p.globals["range"]; ok {
		if m := host(inv.RangeStart); m != "" {
			probs = append(probs, problem{l, "range start " + m})
		} else if m := host(inv.RangeEnd); m != "" {
			probs = append(probs, problem{l, "range end " + m})
		} else if inv.Router.IsValid() && inRange(inv.Router) {
			probs = append(probs, problem{l, fmt.Sprintf("range %s-%s holds the router's address %s (line %d)", inv.RangeStart, inv.RangeEnd, inv.Router, p.globals["router"])})
		}
	}
	for _, nd := range inv.Nodes {
		switch m := host(nd.IP); {
		case m != "":
			probs = append(probs, problem{nd.Line, fmt.Sprintf("node %s: %s", nd.Name, m)})
		case inRange(nd.IP):
			probs = append(probs, problem{nd.Line, fmt.Sprintf("node %s: %s is inside the dynamic range %s-%s (line %d): reserve an address outside it",
				nd.Name, nd.IP, inv.RangeStart, inv.RangeEnd, p.globals["range"])})
		case inv.Router.IsValid() && nd.IP == inv.Router:
			probs = append(probs, problem{nd.Line, fmt.Sprintf("node %s: %s is the router's address (line %d)", nd.Name, nd.IP, p.globals["router"])})
		}
	}
	if len(probs) == 0 {
		return nil
	}
	first := probs[0]
	for _, pr := range probs[1:] {
		if pr.line < first.line {
			first = pr
		}
	}
	return p.errorf(first.line, "%s", first.msg)
}

// broadcast returns the last address of an IPv4 prefix (the zero Addr for
// anything else).
func broadcast(p netip.Prefix) netip.Addr {
	if !p.IsValid() || !p.Addr().Is4() {
		return netip.Addr{}
	}
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= uint32(math.MaxUint32) >> p.Bits() // 0 for a /32
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return a, nil
}

// ParseMAC reads a 6-byte Ethernet address written aa:bb:cc:dd:ee:ff or
// aa-bb-cc-dd-ee-ff (either case). Multicast and all-zero addresses are
// refused: no network card has them.
func ParseMAC(s string) (net.HardwareAddr, error) {
	bad := func(why string) (net.HardwareAddr, error) {
		return nil, fmt.Errorf("MAC %q: %s", s, why)
	}
	if len(s) != 17 {
		return bad("want six hex pairs like 52:54:00:12:34:56")
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return bad("want six hex pairs separated by ':' or '-'")
	}
	mac := make(net.HardwareAddr, 6)
	for i := range 6 {
		if i > 0 && s[3*i-1] != sep {
			return bad("want six hex pairs separated by one kind of separator")
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return bad("want hexadecimal digits")
		}
		mac[i] = hi<<4 | lo
	}
	if mac[0]&1 != 0 {
		return bad("a multicast/broadcast address, not a network card's")
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		return bad("the all-zero address, not a network card's")
	}
	return mac, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// checkHostname checks an RFC 1123 host name: dot-separated labels of 1 to
// 63 letters, digits and hyphens, neither starting nor ending with a
// hyphen, 253 characters at most, and not an IPv4 address.
func checkHostname(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	if strings.HasSuffix(s, ".") {
		return fmt.Errorf("drop the trailing dot")
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return fmt.Errorf("an address, not a host name")
	}
	for _, l := range strings.Split(s, ".") {
		switch {
		case l == "":
			return fmt.Errorf("empty label (two dots in a row or a leading dot)")
		case len(l) > 63:
			return fmt.Errorf("label %q is longer than 63 characters", l)
		case l[0] == '-' || l[len(l)-1] == '-':
			return fmt.Errorf("label %q starts or ends with '-'", l)
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not allowed in a host name (RFC 1123: letters, digits, '-' and '.')", rune(c))
			}
		}
	}
	return nil
}

// parseLease reads a lease time: a Go duration or a number of seconds,
// from 1s to the largest finite DHCP lease (2^32-2 s), in whole seconds.
func parseLease(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > math.MaxUint32-1 {
			return 0, fmt.Errorf("longer than the longest DHCP lease (%d s)", uint32(math.MaxUint32-1))
		}
		d = time.Duration(n) * time.Second
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("want a duration (1h, 30m) or seconds (3600)")
		}
	}
	switch {
	case d < time.Second:
		return 0, fmt.Errorf("want at least 1s")
	case d%time.Second != 0:
		return 0, fmt.Errorf("want whole seconds (DHCP counts seconds)")
	case d/time.Second > math.MaxUint32-1:
		return 0, fmt.Errorf("longer than the longest DHCP lease (%d s)", uint32(math.MaxUint32-1))
	}
	return d, nil
}

// checkRack accepts a rack name: 1 to 63 letters, digits, '.', '_', '-'.
func checkRack(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("longer than 63 characters")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("character %q: want letters, digits, '.', '_' or '-'", c)
		}
	}
	return nil
}

// String returns the node as an inventory line:
// "node MAC NAME IP [plan=FILE] [profile=NAME] [bmc=URL] [rack=NAME]".
func (n Node) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s %s %s", n.MAC, n.Name, n.IP)
	if n.Plan != "" {
		b.WriteString(" plan=" + n.Plan)
	}
	if n.Profile != "" {
		b.WriteString(" profile=" + n.Profile)
	}
	if n.BMC != "" {
		b.WriteString(" bmc=" + n.BMC)
	}
	if n.Rack != "" {
		b.WriteString(" rack=" + n.Rack)
	}
	return b.String()
}
