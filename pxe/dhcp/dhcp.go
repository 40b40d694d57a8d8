// Package dhcp is herd's DHCPv4 server for the boot network: it gives every
// inventory node its reserved address, hostname and boot file, hands out
// addresses from the inventory's dynamic range to unknown machines, and can
// run as a proxyDHCP server beside a DHCP server herd does not control.
//
// Packets are decoded and encoded with github.com/insomniacslk/dhcp/dhcpv4;
// the server owns its sockets and its read loop (see Serve).
//
// # What a client gets
//
// The reply depends on the client's kind (ClassifyClient):
//
//   - BIOS PXE firmware (option 93 = 0, or option 60 "PXEClient" without
//     option 93): BootFiles.BIOS ("undionly.kpxe"), or
//     BootFiles.BIOSPxelinux ("pxelinux.0") when BootFiles.UsePxelinux.
//   - UEFI PXE firmware (option 93 = 7 or 9; both are x86-64 UEFI in
//     practice, see RFC 4578 and its errata): BootFiles.UEFI
//     ("snponly.efi"), or BootFiles.UEFISNP when it is set.
//   - UEFI HTTP boot firmware (option 93 = 16, option 60 "HTTPClient"):
//     the same EFI iPXE by HTTP, HTTPBase + "/files/" + that file, with
//     option 60 "HTTPClient" in the reply, as UEFI 2.10 §24.7.2.1 wants.
//     In full mode only: a proxyDHCP answers PXE clients alone. Without
//     this answer an HTTP boot option (OVMF's "UEFI HTTPv4", after its
//     PXE one) waits a minute for an offer with a URL and fails, and an
//     installed node whose iPXE exits to its disk waits with it.
//   - iPXE (option 77 user class "iPXE" or option 175 present; this takes
//     precedence over option 93): the URL HTTPBase + "/boot/" + MAC +
//     ".ipxe", with the MAC in lowercase hex with colons (the form
//     net.HardwareAddr.String and iPXE's ${mac} produce), e.g.
//     http://10.0.0.1:8080/boot/52:54:00:00:00:01.ipxe, and option 175
//     with sub-option 176 = 1 (no-pxedhcp: iPXE skips its wait for a
//     proxyDHCP offer). iPXE gets the URL even when UsePxelinux is set.
//   - anything else (the agent in the initramfs, the installed system, a
//     PXE client of an architecture herd has no boot file for): address
//     and network options only.
//
// Every reply carries siaddr (next-server) and option 54 = Config.ServerIP.
// The boot file goes into the BOOTP file field and into option 67.
//
// # Full mode and proxy mode
//
// In full mode (the default) herd answers DISCOVER with OFFER, REQUEST with
// ACK or NAK (RFC 2131 §4.3), frees dynamic leases on RELEASE, marks
// declined addresses unusable, and answers INFORM with an ACK without an
// address (§4.3.5). Inventory nodes get their reservation; other MACs get an
// address from the dynamic range when the inventory has one, and no answer
// when it has none.
//
// In proxy mode (PXE specification 2.1, §2.2.3) herd never gives an
// address: it answers a PXE client's DISCOVER on port 67 with an offer that
// has no yiaddr but option 60 "PXEClient", option 43 with PXE discovery
// control = 8 (take the boot file from this offer, no boot server
// discovery) and the boot file, and answers the client's REQUEST (or
// INFORM) on port 4011 with the same boot information. Only inventory nodes
// are answered in proxy mode: the network belongs to another DHCP server,
// and herd must not pull machines it does not know into an install.
//
// BOOTP clients (no option 53) and non-Ethernet clients are ignored.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/herdproject/herd/pxe/bootlayout"
	"github.com/herdproject/herd/pxe/inventory"
)

// Ports used by the server.
const (
	// ServerPort is the DHCP server port (RFC 2131 §4.1).
	ServerPort = 67
	// ClientPort is the DHCP client port.
	ClientPort = 68
	// BootServerPort is the PXE boot server port a proxyDHCP answers on
	// (PXE specification 2.1, §2.2.3).
	BootServerPort = 4011
)

// DefaultLeaseTime is the lease time when neither Config.LeaseTime nor the
// inventory sets one.
const DefaultLeaseTime = time.Hour

// The default boot files are the boot tree's (bootlayout): iPXE for BIOS
// (undionly.kpxe) and, for UEFI, snponly.efi: iPXE that drives the NIC
// through the firmware's SNP. It works on every NIC the firmware could
// PXE-boot from, which is the NIC it was loaded from, and is what iPXE
// recommends for chainloading from UEFI PXE; ipxe.efi, with iPXE's own
// NIC drivers, is the alternative (both checked in QEMU with OVMF:
// qemu-tests TestUEFIPXESnponly, TestUEFIPXEIpxeEFI).

// offerHold is how long a dynamic address stays set aside for a client
// between its DISCOVER and its REQUEST (at most the lease time).
const offerHold = time.Minute

// maxLoggedMACs bounds the set of MACs whose "ignored" message was already
// logged; when it is full it is cleared, so a flood of random MACs costs
// log lines, not memory.
const maxLoggedMACs = 4096

// Config configures a Server. Fields marked required have no default.
type Config struct {
	// Interface is the boot network's interface, e.g. "eth1". Required.
	// The server's sockets are bound to it (SO_BINDTODEVICE).
	Interface string
	// ServerIP is our IPv4 address on Interface: the next-server (siaddr)
	// and the server identifier (option 54). Required.
	ServerIP netip.Addr
	// Inventory supplies the reservations, the network options (subnet,
	// router, DNS, domain, lease time) and the dynamic range. Required.
	// It must not be modified while the server runs.
	Inventory *inventory.Inventory
	// Proxy makes the server a proxyDHCP: it never gives an address, only
	// boot information, on port 67 and on port 4011.
	Proxy bool
	// BootFiles names the boot files under the TFTP root.
	BootFiles BootFiles
	// HTTPBase is the base URL of herd's HTTP boot server, e.g.
	// "http://10.0.0.1:8080" (a trailing "/" is ignored). Required. iPXE
	// clients get HTTPBase + "/boot/" + mac + ".ipxe".
	HTTPBase string
	// LeaseTime is the lease time; zero means the inventory's, and when the
	// inventory has none, DefaultLeaseTime. At most 2^32-2 seconds.
	LeaseTime time.Duration
	// Log receives one record per event (offers, acks, naks, clients that
	// are ignored); nil means no logging.
	Log *slog.Logger
	// Observe, when set, is called for every DISCOVER and REQUEST the server
	// receives (answered or not), with the client's MAC and kind; herd uses
	// it to mark a node "booting". It runs on the server's read loop before
	// the reply is sent: keep it short.
	Observe func(mac net.HardwareAddr, kind ClientKind)
}

// BootFiles names the files PXE firmware loads by TFTP. Zero fields take
// the defaults below.
type BootFiles struct {
	// BIOS is for BIOS PXE firmware; "" means bootlayout.BIOSiPXE
	// ("undionly.kpxe", iPXE for the firmware's UNDI driver).
	BIOS string
	// BIOSPxelinux is for BIOS PXE firmware when UsePxelinux is set; ""
	// means bootlayout.Pxelinux ("pxelinux.0").
	BIOSPxelinux string
	// UEFI is for x86-64 UEFI firmware (option 93 = 7 or 9); "" means
	// bootlayout.UEFISNP ("snponly.efi", iPXE over the firmware's SNP).
	UEFI string
	// UEFISNP, when set, replaces UEFI for every UEFI client, e.g.
	// "snponly.efi" (iPXE that drives the NIC only through the firmware's
	// SNP protocol) where UEFI names ipxe.efi and a NIC's native iPXE
	// driver misbehaves. The
	// choice is per site, not per architecture: arch 7 and arch 9 are both
	// x86-64 UEFI, so they cannot tell the two cases apart. "" means use
	// UEFI.
	UEFISNP string
	// UsePxelinux serves BIOSPxelinux instead of BIOS to BIOS firmware.
	UsePxelinux bool
}

// withDefaults returns b with its zero fields filled in.
func (b BootFiles) withDefaults() BootFiles {
	if b.BIOS == "" {
		b.BIOS = bootlayout.BIOSiPXE
	}
	if b.BIOSPxelinux == "" {
		b.BIOSPxelinux = bootlayout.Pxelinux
	}
	if b.UEFI == "" {
		b.UEFI = bootlayout.UEFISNP
	}
	return b
}

// Server is a DHCP (or proxyDHCP) server for one interface. Its zero value
// is not usable: call New.
type Server struct {
	cfg       Config
	serverIP  netip.Addr
	httpBase  string
	leaseTime time.Duration
	boot      BootFiles
	log       *slog.Logger
	nodes     map[string]inventory.Node // by string(MAC)

	// now is the clock; tests replace it.
	now func() time.Time

	mu     sync.Mutex
	pool   *pool               // nil without a dynamic range (or in proxy mode)
	logged map[string]struct{} // "ignored" messages already logged

	serving   sync.Once
	closeOnce sync.Once
	done      chan struct{}
	listening chan struct{} // closed once Serve has bound its sockets
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("dhcp: server closed")

// New checks cfg and returns a server that is ready to Serve (or to Handle
// packets directly). It opens no socket.
func New(cfg Config) (*Server, error) {
	if cfg.Interface == "" {
		return nil, errors.New("dhcp: no interface: set the boot network's interface")
	}
	if !cfg.ServerIP.IsValid() || !cfg.ServerIP.Unmap().Is4() {
		return nil, fmt.Errorf("dhcp: server address %q is not an IPv4 address: set our address on %s", cfg.ServerIP, cfg.Interface)
	}
	inv := cfg.Inventory
	if inv == nil {
		return nil, errors.New("dhcp: no inventory")
	}
	httpBase, err := checkHTTPBase(cfg.HTTPBase)
	if err != nil {
		return nil, err
	}
	lease := cfg.LeaseTime
	if lease == 0 {
		lease = inv.Lease
	}
	if lease == 0 {
		lease = DefaultLeaseTime
	}
	if lease < time.Second || lease > (1<<32-2)*time.Second {
		return nil, fmt.Errorf("dhcp: lease time %v out of range: use 1s to 136 years", lease)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		serverIP:  cfg.ServerIP.Unmap(),
		httpBase:  httpBase,
		leaseTime: lease,
		boot:      cfg.BootFiles.withDefaults(),
		log:       log,
		nodes:     make(map[string]inventory.Node, len(inv.Nodes)),
		now:       time.Now,
		logged:    make(map[string]struct{}),
		done:      make(chan struct{}),
		listening: make(chan struct{}),
	}
	for _, n := range inv.Nodes {
		if len(n.MAC) != 6 {
			return nil, fmt.Errorf("dhcp: node %s (%s line %d): MAC %v is not an Ethernet address", n.Name, inv.File, n.Line, n.MAC)
		}
		if !n.IP.IsValid() || !n.IP.Unmap().Is4() {
			return nil, fmt.Errorf("dhcp: node %s (%s line %d): address %v is not IPv4", n.Name, inv.File, n.Line, n.IP)
		}
		n.IP = n.IP.Unmap()
		s.nodes[string(n.MAC)] = n
	}
	if cfg.Proxy {
		return s, nil
	}
	if !inv.Subnet.IsValid() || !inv.Subnet.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("dhcp: inventory %s has no IPv4 subnet: add a 'subnet' line, or use proxy mode", inv.File)
	}
	p, err := newPool(inv, s.serverIP)
	if err != nil {
		return nil, err
	}
	s.pool = p
	return s, nil
}

// checkHTTPBase validates an HTTP base URL and drops its trailing slashes.
func checkHTTPBase(base string) (string, error) {
	if base == "" {
		return "", errors.New("dhcp: no HTTP base URL: set it to herd's HTTP boot server, e.g. http://10.0.0.1:8080")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("dhcp: HTTP base URL %q: want http://host[:port][/path]", base)
	}
	return strings.TrimRight(base, "/"), nil
}

// BootURL is the URL of the iPXE script an iPXE client with this MAC is
// sent to: HTTPBase + "/boot/" + mac + ".ipxe", mac in lowercase hex with
// colons.
func (s *Server) BootURL(mac net.HardwareAddr) string {
	return s.httpBase + "/boot/" + mac.String() + ".ipxe"
}

// BootFile returns the boot file name (or URL) a client of this kind and
// MAC is sent to, "" for NotPXE.
func (s *Server) BootFile(mac net.HardwareAddr, kind ClientKind) string {
	switch kind {
	case BIOS:
		if s.boot.UsePxelinux {
			return s.boot.BIOSPxelinux
		}
		return s.boot.BIOS
	case UEFI:
		if s.boot.UEFISNP != "" {
			return s.boot.UEFISNP
		}
		return s.boot.UEFI
	case UEFIHTTP:
		return s.httpBase + "/files/" + s.BootFile(mac, UEFI)
	case IPXE:
		return s.BootURL(mac)
	}
	return ""
}

// debugf and warnf log one event at their level.
func (s *Server) debugf(format string, args ...any) { s.log.Debug(fmt.Sprintf(format, args...)) }
func (s *Server) warnf(format string, args ...any)  { s.log.Warn(fmt.Sprintf(format, args...)) }

// logOnce logs a message at level the first time key is seen.
func (s *Server) logOnce(level slog.Level, key, format string, args ...any) {
	s.mu.Lock()
	_, seen := s.logged[key]
	if !seen {
		if len(s.logged) >= maxLoggedMACs {
			clear(s.logged)
		}
		s.logged[key] = struct{}{}
	}
	s.mu.Unlock()
	if !seen {
		s.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
