package goldeninit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// NetworkDir is where the root stage reads systemd-networkd's
// configuration, the files herd's agent writes for a clone.
const NetworkDir = "/etc/systemd/network"

// Waits of the network step.
const (
	linkWait    = 10 * time.Second // for an Ethernet interface to appear
	carrierWait = 5 * time.Second  // for its link to come up
)

// NetConfig is the part of a systemd-networkd .network file the root
// stage honours (systemd.network(5)): [Match] Name= (shell globs) and
// MACAddress=, [Network] DHCP=, Address= and Gateway=.
type NetConfig struct {
	// File is the file's name.
	File string
	// Names are the Name= globs; a list whose first word starts with
	// "!" is inverted, as networkd does.
	Names []string
	// MACs are the MACAddress= addresses.
	MACs []net.HardwareAddr
	// DHCP is DHCP=yes, true, ipv4 or both.
	DHCP bool
	// Addresses and Gateway are the static configuration.
	Addresses []netip.Prefix
	Gateway   netip.Addr
}

// ParseNetConfig reads one .network file. Unknown sections and keys are
// ignored; a value that does not parse is an error naming the line.
func ParseNetConfig(name string, b []byte) (NetConfig, error) {
	c := NetConfig{File: name}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("%s line %d: want KEY=VALUE or [Section]", name, n)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch section + "." + key {
		case "Match.Name":
			if val == "" {
				c.Names = nil // an empty assignment resets the list
			}
			c.Names = append(c.Names, strings.Fields(val)...)
		case "Match.MACAddress":
			if val == "" {
				c.MACs = nil
			}
			for _, w := range strings.Fields(val) {
				mac, err := net.ParseMAC(w)
				if err != nil {
					return c, fmt.Errorf("%s line %d: MACAddress=%s: %w", name, n, w, err)
				}
				c.MACs = append(c.MACs, mac)
			}
		case "Network.DHCP":
			switch strings.ToLower(val) {
			case "yes", "true", "1", "on", "ipv4", "both":
				c.DHCP = true
			default:
				c.DHCP = false
			}
		case "Network.Address", "Address.Address":
			p, err := netip.ParsePrefix(val)
			if err != nil {
				return c, fmt.Errorf("%s line %d: Address=%s: want ADDRESS/PREFIX", name, n, val)
			}
			c.Addresses = append(c.Addresses, p)
		case "Network.Gateway", "Route.Gateway":
			a, err := netip.ParseAddr(val)
			if err != nil {
				return c, fmt.Errorf("%s line %d: Gateway=%s: %w", name, n, val, err)
			}
			c.Gateway = a
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Matches reports whether the configuration applies to the interface:
// every [Match] condition given must hold; none given matches all.
func (c NetConfig) Matches(name string, mac net.HardwareAddr) bool {
	if len(c.Names) > 0 {
		invert := strings.HasPrefix(c.Names[0], "!")
		hit := false
		for i, g := range c.Names {
			if i == 0 && invert {
				g = g[1:]
			}
			if ok, _ := path.Match(g, name); ok {
				hit = true
				break
			}
		}
		if hit == invert {
			return false
		}
	}
	if len(c.MACs) > 0 {
		hit := false
		for _, m := range c.MACs {
			if bytes.Equal(m, mac) {
				hit = true
				break
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// LoadNetConfigs reads dir's *.network files in the order networkd
// applies them (by file name). Files that do not parse are skipped and
// reported in the error, joined.
func LoadNetConfigs(dir string) ([]NetConfig, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.network"))
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i]) < filepath.Base(files[j]) })
	var out []NetConfig
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := ParseNetConfig(filepath.Base(f), b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// Iface is a network interface as Choose sees it.
type Iface struct {
	Name string
	MAC  net.HardwareAddr
}

// Choose picks the one interface the root stage configures: the first
// configuration (in file order, as networkd reads them) that matches an
// interface, with the first interface it matches. herd's agent names a
// clone's boot interface by MAC in 10-herd.network, which sorts before
// the image's own files, so that interface wins. When no configuration
// matches, the first interface and a nil configuration (DHCP).
func Choose(ifaces []Iface, cfgs []NetConfig) (Iface, *NetConfig, bool) {
	for i := range cfgs {
		for _, ifi := range ifaces {
			if cfgs[i].Matches(ifi.Name, ifi.MAC) {
				return ifi, &cfgs[i], true
			}
		}
	}
	if len(ifaces) == 0 {
		return Iface{}, nil, false
	}
	return ifaces[0], nil, true
}

// network brings up the interface the configuration under root picks and
// returns its IPv4 address ("" with an error when it got none).
func network(ctx context.Context, c *console, root string) (string, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	ifaces, err := waitIfaces(ctx)
	if err != nil {
		return "", err
	}
	cfgs, err := LoadNetConfigs(root + NetworkDir)
	if err != nil {
		c.printf("warning: network configuration: %v", err)
	}
	ifi, cfg, _ := Choose(ifaces, cfgs)
	link, err := netlink.LinkByName(ifi.Name)
	if err != nil {
		return "", fmt.Errorf("interface %s: %w", ifi.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return "", fmt.Errorf("bring %s up: %w", ifi.Name, err)
	}
	waitCarrier(ctx, ifi.Name)
	how := "no matching file in " + NetworkDir + ": DHCP"
	if cfg != nil {
		how = cfg.File
	}
	c.printf("network: %s (%s), configuration %s", ifi.Name, ifi.MAC, how)
	if cfg != nil && !cfg.DHCP {
		if len(cfg.Addresses) == 0 {
			return "", fmt.Errorf("%s matches %s but asks for neither DHCP nor an address", cfg.File, ifi.Name)
		}
		for _, a := range cfg.Addresses {
			if err := addAddress(link, a); err != nil {
				return "", err
			}
		}
		addGateway(c, link, cfg.Gateway)
		return cfg.Addresses[0].Addr().String(), nil
	}
	return dhcp(ctx, c, link, ifi.Name)
}

// waitIfaces waits up to linkWait for Ethernet interfaces and returns
// them in index order.
func waitIfaces(ctx context.Context) ([]Iface, error) {
	deadline := time.Now().Add(linkWait)
	for {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		var out []Iface
		for _, ifi := range all {
			if ifi.Flags&net.FlagLoopback == 0 && len(ifi.HardwareAddr) == 6 {
				out = append(out, Iface{Name: ifi.Name, MAC: ifi.HardwareAddr})
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no Ethernet interface after %v (its driver is not in the initrd?)", linkWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitCarrier waits up to carrierWait for the link to come up, so that
// the first DHCP message is not lost.
func waitCarrier(ctx context.Context, name string) {
	deadline := time.Now().Add(carrierWait)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "carrier"))
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dhcp runs DHCPv4 on the interface, applies the lease's address and
// router, and returns the address.
func dhcp(ctx context.Context, c *console, link netlink.Link, name string) (string, error) {
	cl, err := nclient4.New(name, nclient4.WithTimeout(DHCPTimeout), nclient4.WithRetry(DHCPTries))
	if err != nil {
		return "", fmt.Errorf("DHCP client on %s: %w", name, err)
	}
	defer cl.Close()
	// Discover and request, each sent up to DHCPTries times.
	dctx, cancel := context.WithTimeout(ctx, 2*DHCPTries*DHCPTimeout+5*time.Second)
	defer cancel()
	lease, err := cl.Request(dctx)
	if err != nil {
		return "", fmt.Errorf("DHCP on %s: %w (no DHCP server answering on this network?)", name, err)
	}
	ack := lease.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return "", fmt.Errorf("DHCP on %s: the server offered no address", name)
	}
	ones, _ := ack.SubnetMask().Size()
	if ones == 0 {
		ones = 24
	}
	if err := addAddress(link, netip.PrefixFrom(ip, ones)); err != nil {
		return ip.String(), err
	}
	if r := ack.Router(); len(r) > 0 {
		gw, _ := netip.AddrFromSlice(r[0].To4())
		addGateway(c, link, gw)
	}
	return ip.String(), nil
}

func addAddress(link netlink.Link, p netip.Prefix) error {
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return fmt.Errorf("address %s: %w", p, err)
	}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, link.Attrs().Name, err)
	}
	return nil
}

func addGateway(c *console, link netlink.Link, gw netip.Addr) {
	if !gw.IsValid() {
		return
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if err := netlink.RouteReplace(r); err != nil {
		c.printf("warning: default route via %s: %v", gw, err)
	}
}
