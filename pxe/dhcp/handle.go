package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/herdproject/herd/pxe/inventory"
)

// pxeDiscoveryControl is option 43 (PXE vendor options, PXE specification
// 2.1 §2.4.2) with sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: "if a boot
// file name is present in the offer, download it; do not discover boot
// servers", then the end sub-option.
var pxeDiscoveryControl = []byte{6, 1, 8, 255}

// ipxeNoPXEDHCP is option 175 (iPXE's encapsulated options) holding
// sub-option 176 (no-pxedhcp) = 1: iPXE does not wait for a proxyDHCP
// offer after ours.
var ipxeNoPXEDHCP = []byte{176, 1, 1}

// Handle returns the reply to a request received on port 67, or nil when
// the request gets no reply. It does no I/O (beyond Config.Log and
// Config.Observe) and is safe for concurrent use; it updates the dynamic
// lease table. Serve calls it for every packet; tests and the fuzz target
// call it directly.
func (s *Server) Handle(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	return s.handle(req, ServerPort)
}

// handle answers req received on port (ServerPort, or BootServerPort in
// proxy mode).
func (s *Server) handle(req *dhcpv4.DHCPv4, port int) (*dhcpv4.DHCPv4, error) {
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest || req.Options == nil {
		return nil, nil
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, nil
	}
	mac := slices.Clone(req.ClientHWAddr)
	kind := ClassifyClient(req)
	mt := req.MessageType()
	if s.cfg.Observe != nil && (mt == dhcpv4.MessageTypeDiscover || mt == dhcpv4.MessageTypeRequest) {
		s.cfg.Observe(slices.Clone(mac), kind)
	}
	if port == BootServerPort {
		return s.bootServer(req, mac, kind, mt)
	}
	if s.cfg.Proxy {
		return s.proxyOffer(req, mac, kind, mt)
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return s.discover(req, mac, kind)
	case dhcpv4.MessageTypeRequest:
		return s.request(req, mac, kind)
	case dhcpv4.MessageTypeRelease:
		s.release(req, mac)
	case dhcpv4.MessageTypeDecline:
		s.decline(req, mac)
	case dhcpv4.MessageTypeInform:
		return s.inform(req, mac, kind)
	}
	return nil, nil
}

// discover answers DISCOVER with OFFER (RFC 2131 §4.3.1).
func (s *Server) discover(req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind) (*dhcpv4.DHCPv4, error) {
	node, known := s.nodes[string(mac)]
	var addr netip.Addr
	switch {
	case known:
		addr = node.IP
	case s.pool != nil:
		s.mu.Lock()
		a, ok := s.pool.offer(string(mac), s.now(), min(offerHold, s.leaseTime))
		s.mu.Unlock()
		if !ok {
			s.logOnce(slog.LevelWarn, "exhausted "+string(mac), "dhcp: no address for %s: the dynamic range %v-%v is exhausted", mac, s.pool.first, s.pool.last)
			return nil, nil
		}
		addr = a
	default:
		s.logUnknown(mac)
		return nil, nil
	}
	resp, err := s.newReply(req, dhcpv4.MessageTypeOffer)
	if err != nil {
		return nil, err
	}
	resp.YourIPAddr = ip4(addr)
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.leaseTime))
	s.addNetwork(resp, node.Name)
	file := s.addBoot(resp, req, mac, kind, true)
	s.debugf("dhcp: OFFER %v to %s%s (%s)%s", addr, mac, nameOf(node), kind, fileOf(file))
	return resp, nil
}

// request answers REQUEST with ACK or NAK (RFC 2131 §4.3.2).
func (s *Server) request(req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind) (*dhcpv4.DHCPv4, error) {
	if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(ip4(s.serverIP)) {
		// SELECTING, and the client chose another server's offer.
		if s.pool != nil {
			s.mu.Lock()
			s.pool.forgetOffer(string(mac))
			s.mu.Unlock()
		}
		return nil, nil
	}
	want := addrOf(req.RequestedIPAddress()) // SELECTING, INIT-REBOOT
	if !want.IsValid() {
		want = addrOf(req.ClientIPAddr) // RENEWING, REBINDING
	}
	node, known := s.nodes[string(mac)]
	switch {
	case known:
		if want != node.IP {
			return s.nak(req, mac, fmt.Sprintf("%v is not the address of %s (%v)", want, node.Name, node.IP))
		}
	case s.pool != nil:
		s.mu.Lock()
		ok := want.IsValid() && s.pool.request(string(mac), want, s.now(), s.leaseTime)
		s.mu.Unlock()
		if !ok {
			return s.nak(req, mac, fmt.Sprintf("%v is not available to %s", want, mac))
		}
	default:
		s.logUnknown(mac)
		return nil, nil
	}
	resp, err := s.newReply(req, dhcpv4.MessageTypeAck)
	if err != nil {
		return nil, err
	}
	resp.ClientIPAddr = ipv4OrZero(req.ClientIPAddr)
	resp.YourIPAddr = ip4(want)
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.leaseTime))
	s.addNetwork(resp, node.Name)
	file := s.addBoot(resp, req, mac, kind, true)
	s.debugf("dhcp: ACK %v to %s%s (%s)%s", want, mac, nameOf(node), kind, fileOf(file))
	return resp, nil
}

// nak builds a DHCPNAK (RFC 2131 §4.3.2, table 3).
func (s *Server) nak(req *dhcpv4.DHCPv4, mac net.HardwareAddr, why string) (*dhcpv4.DHCPv4, error) {
	resp, err := s.newReply(req, dhcpv4.MessageTypeNak)
	if err != nil {
		return nil, err
	}
	resp.ServerIPAddr = net.IPv4zero
	resp.UpdateOption(dhcpv4.OptMessage(why))
	s.debugf("dhcp: NAK to %s: %s", mac, why)
	return resp, nil
}

// release frees a dynamic lease (RFC 2131 §4.3.4).
func (s *Server) release(req *dhcpv4.DHCPv4, mac net.HardwareAddr) {
	a := addrOf(req.ClientIPAddr)
	if s.pool == nil || !a.IsValid() {
		return
	}
	s.mu.Lock()
	ok := s.pool.release(string(mac), a)
	s.mu.Unlock()
	if ok {
		s.debugf("dhcp: %s released %v", mac, a)
	}
}

// decline takes an address another host uses out of the pool (RFC 2131
// §4.3.3).
func (s *Server) decline(req *dhcpv4.DHCPv4, mac net.HardwareAddr) {
	a := addrOf(req.RequestedIPAddress())
	if !a.IsValid() {
		return
	}
	if node, known := s.nodes[string(mac)]; known {
		if a == node.IP {
			s.warnf("dhcp: node %s (%s) declined %v: another host on the network uses its address", node.Name, mac, a)
		}
		return
	}
	if s.pool == nil {
		return
	}
	s.mu.Lock()
	ok := s.pool.decline(string(mac), a, s.now(), s.leaseTime)
	s.mu.Unlock()
	if ok {
		s.warnf("dhcp: %s declined %v: another host uses it; not leasing it for %v", mac, a, s.leaseTime)
	}
}

// inform answers INFORM with an ACK without address or lease time (RFC 2131
// §4.3.5).
func (s *Server) inform(req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind) (*dhcpv4.DHCPv4, error) {
	node := s.nodes[string(mac)]
	resp, err := s.newReply(req, dhcpv4.MessageTypeAck)
	if err != nil {
		return nil, err
	}
	resp.ClientIPAddr = ipv4OrZero(req.ClientIPAddr)
	s.addNetwork(resp, node.Name)
	s.addBoot(resp, req, mac, kind, true)
	return resp, nil
}

// proxyOffer answers a PXE client's DISCOVER in proxy mode with an offer
// that has boot information but no address (PXE specification 2.1
// §2.2.3). REQUESTs on port 67 belong to the network's DHCP server.
func (s *Server) proxyOffer(req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	if mt != dhcpv4.MessageTypeDiscover {
		return nil, nil
	}
	return s.proxyReply(req, mac, kind, dhcpv4.MessageTypeOffer)
}

// bootServer answers a PXE client's REQUEST (or INFORM) on port 4011 in
// proxy mode with an ACK carrying the boot information (PXE specification
// 2.1 §2.2.3; iPXE's "ProxyDHCP REQUEST").
func (s *Server) bootServer(req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	if !s.cfg.Proxy || (mt != dhcpv4.MessageTypeRequest && mt != dhcpv4.MessageTypeInform) {
		return nil, nil
	}
	return s.proxyReply(req, mac, kind, dhcpv4.MessageTypeAck)
}

func (s *Server) proxyReply(req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	if !isPXEClient(req) {
		return nil, nil
	}
	node, known := s.nodes[string(mac)]
	if !known {
		s.logOnce(slog.LevelInfo, string(mac), "dhcp: proxy: ignoring PXE client %s: not in inventory %s", mac, s.cfg.Inventory.File)
		return nil, nil
	}
	if kind == NotPXE {
		s.logOnce(slog.LevelInfo, "arch "+string(mac), "dhcp: proxy: ignoring %s (%s): no boot file for its architecture %v", mac, node.Name, req.ClientArch())
		return nil, nil
	}
	resp, err := s.newReply(req, mt)
	if err != nil {
		return nil, err
	}
	resp.ClientIPAddr = ipv4OrZero(req.ClientIPAddr)
	file := s.addBoot(resp, req, mac, kind, false)
	resp.UpdateOption(dhcpv4.OptClassIdentifier(pxeClassPrefix))
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl))
	s.debugf("dhcp: proxy %s to %s%s (%s)%s", mt, mac, nameOf(node), kind, fileOf(file))
	return resp, nil
}

// newReply starts a reply of type mt to req with our server identifier and
// next-server.
func (s *Server) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(ip4(s.serverIP)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4(s.serverIP))),
	)
	if err != nil {
		return nil, fmt.Errorf("dhcp: build %s for %s: %w", mt, req.ClientHWAddr, err)
	}
	resp.GatewayIPAddr = ipv4OrZero(req.GatewayIPAddr)
	return resp, nil
}

// addNetwork adds the inventory's network options (RFC 2132 §3) and the
// hostname ("" for none).
func (s *Server) addNetwork(resp *dhcpv4.DHCPv4, hostname string) {
	inv := s.cfg.Inventory
	if inv.Subnet.IsValid() && inv.Subnet.Addr().Is4() {
		resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(inv.Subnet.Bits(), 32)))
	}
	if r := inv.Router.Unmap(); r.Is4() {
		resp.UpdateOption(dhcpv4.OptRouter(ip4(r)))
	}
	var dns []net.IP
	for _, a := range inv.DNS {
		if a := a.Unmap(); a.Is4() {
			dns = append(dns, ip4(a))
		}
	}
	if len(dns) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	if inv.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(inv.Domain))
	}
	if hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(hostname))
	}
}

// addBoot adds the boot file for kind (file field and option 67), iPXE's
// no-pxedhcp when ipxeOpts, option 60 "HTTPClient" to UEFI HTTP clients,
// and echoes option 97 to PXE clients (PXE
// specification 2.1 §2.4.1). It returns the boot file, "" for none.
func (s *Server) addBoot(resp, req *dhcpv4.DHCPv4, mac net.HardwareAddr, kind ClientKind, ipxeOpts bool) string {
	file := s.BootFile(mac, kind)
	if file == "" {
		return ""
	}
	if len(file) <= 127 { // the file field holds 127 bytes and a NUL
		resp.BootFileName = file
	}
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
	if kind == IPXE && ipxeOpts {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionEtherboot, ipxeNoPXEDHCP))
	}
	if kind == UEFIHTTP {
		resp.UpdateOption(dhcpv4.OptClassIdentifier(httpClassPrefix))
	}
	if uuid := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
	return file
}

// logUnknown logs, once per MAC, that a client gets no answer.
func (s *Server) logUnknown(mac net.HardwareAddr) {
	s.logOnce(slog.LevelInfo, string(mac), "dhcp: ignoring %s: not in inventory %s, and it has no dynamic range", mac, s.cfg.Inventory.File)
}

func nameOf(n inventory.Node) string {
	if n.Name == "" {
		return ""
	}
	return " (" + n.Name + ")"
}

func fileOf(file string) string {
	if file == "" {
		return ""
	}
	return " boot " + file
}

// ip4 converts an IPv4 netip.Addr to a 4-byte net.IP.
func ip4(a netip.Addr) net.IP {
	b := a.Unmap().As4()
	return net.IP(b[:])
}

// addrOf converts a net.IP to a netip.Addr; nil, 0.0.0.0 and non-IPv4
// give the zero Addr.
func addrOf(ip net.IP) netip.Addr {
	v4 := ip.To4()
	if v4 == nil || v4.Equal(net.IPv4zero) {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(v4))
}

// ipv4OrZero returns ip as 4 bytes, or 0.0.0.0 when it is not IPv4 (a reply
// must not carry anything else in an address field).
func ipv4OrZero(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return slices.Clone(v4)
	}
	return net.IPv4zero.To4()
}
