package dhcp

import (
	"net"
	"testing"

	"github.com/herdproject/herd/internal/logging"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary packets to servers in every mode, on both
// ports. Nothing may panic, every reply must encode and decode again, and a
// proxy reply never carries an address.
func FuzzHandle(f *testing.F) {
	seed := func(d *dhcpv4.DHCPv4) { f.Add(d.ToBytes()) }
	for _, mods := range [][]dhcpv4.Modifier{nil, biosPXE, legacyPXE, uefi7, uefi9, arm64, ipxeUC, ipxe175, ipxeRFC3004, withUUID} {
		seed(discover(f, mac1, mods...))
		seed(discover(f, macUnknown, mods...))
		seed(request(f, mac1, "10.0.0.11", "10.0.0.1", mods...))
		seed(request(f, macUnknown, "10.0.0.100", "", mods...))
	}
	seed(message(f, dhcpv4.MessageTypeInform, mac2, dhcpv4.WithClientIP(net.ParseIP("10.0.0.12"))))
	seed(message(f, dhcpv4.MessageTypeRelease, macUnknown, dhcpv4.WithClientIP(net.ParseIP("10.0.0.100"))))
	seed(message(f, dhcpv4.MessageTypeDecline, macUnknown, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.101")))))
	relayed := discover(f, macOther, biosPXE...)
	relayed.GatewayIPAddr = net.ParseIP("10.9.0.1").To4()
	relayed.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("eth0"))))
	seed(relayed)
	f.Add([]byte{})
	f.Add([]byte{1, 1, 6, 0})

	mk := func(withRange, proxy bool) *Server {
		cfg := testConfig(withRange)
		cfg.Proxy = proxy
		cfg.Log = logging.Discard()
		cfg.Observe = func(net.HardwareAddr, ClientKind) {}
		s, err := New(cfg)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	// Shared across inputs, so that lease state builds up as it would.
	servers := []*Server{mk(true, false), mk(false, false), mk(false, true)}

	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		_ = ClassifyClient(req)
		for _, s := range servers {
			for _, port := range []int{ServerPort, BootServerPort} {
				resp, err := s.handle(req, port)
				if err != nil {
					t.Fatalf("handle: %v", err)
				}
				if resp == nil {
					continue
				}
				if s.cfg.Proxy && addrOf(resp.YourIPAddr).IsValid() {
					t.Fatalf("proxy reply with yiaddr %v", resp.YourIPAddr)
				}
				if resp.TransactionID != req.TransactionID {
					t.Fatalf("reply xid %v, request %v", resp.TransactionID, req.TransactionID)
				}
				if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
					t.Fatalf("reply does not decode: %v", err)
				}
				_ = replyAddr(req, resp, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 68}, port)
			}
		}
	})
}
