package dhcp

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/pxe/inventory"
)

var (
	mac1       = mustMAC("52:54:00:00:00:01")
	mac2       = mustMAC("52:54:00:00:00:02")
	macUnknown = mustMAC("52:54:00:aa:bb:cc")
	macOther   = mustMAC("52:54:00:aa:bb:dd")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// testInventory is a /24 with two nodes and, when withRange, a dynamic
// range of three addresses.
func testInventory(withRange bool) *inventory.Inventory {
	inv := &inventory.Inventory{
		File:   "test.inventory",
		Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		Router: netip.MustParseAddr("10.0.0.1"),
		DNS:    []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")},
		Domain: "cluster.example",
		Lease:  2 * time.Hour,
		Nodes: []inventory.Node{
			{MAC: mac1, Name: "node1", IP: netip.MustParseAddr("10.0.0.11"), Line: 8},
			{MAC: mac2, Name: "node2", IP: netip.MustParseAddr("10.0.0.12"), Line: 9},
		},
	}
	if withRange {
		inv.RangeStart = netip.MustParseAddr("10.0.0.100")
		inv.RangeEnd = netip.MustParseAddr("10.0.0.102")
	}
	return inv
}

func testConfig(withRange bool) Config {
	return Config{
		Interface: "test0",
		ServerIP:  netip.MustParseAddr("10.0.0.1"),
		Inventory: testInventory(withRange),
		HTTPBase:  "http://10.0.0.1:8080",
	}
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = logging.Func(func(l string) { t.Log(l) })
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// Request modifiers for the kinds of clients.
var (
	biosPXE = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	legacyPXE = []dhcpv4.Modifier{ // PXE 2.1 without option 93
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
	}
	uefi7 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	uefi9 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC)),
	}
	uefiHTTP = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)),
	}
	arm64 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64)),
	}
	ipxeUC = []dhcpv4.Modifier{ // what iPXE (undionly.kpxe) sends
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithUserClass("iPXE", false),
	}
	ipxe175 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionEtherboot, []byte{0xb1, 5, 1, 0x10, 0xec, 0x81, 0x39})),
	}
	ipxeRFC3004 = []dhcpv4.Modifier{
		dhcpv4.WithUserClass("iPXE", true),
	}
	withUUID = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})),
	}
)

func discover(t testing.TB, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func message(t testing.TB, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithHWType(iana.HWTypeEthernet),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func request(t testing.TB, mac net.HardwareAddr, addr string, server string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(addr)))}
	if server != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(server))))
	}
	return message(t, dhcpv4.MessageTypeRequest, mac, append(m, mods...)...)
}

func with(base []dhcpv4.Modifier, more ...dhcpv4.Modifier) []dhcpv4.Modifier {
	return append(append([]dhcpv4.Modifier(nil), base...), more...)
}

// reply is the part of a reply the tests compare.
type reply struct {
	Type      string
	YIAddr    string
	SIAddr    string
	CIAddr    string
	File      string
	Opt67     string
	ServerID  string
	Mask      string
	Router    string
	DNS       string
	Domain    string
	Host      string
	Lease     time.Duration
	Class     string
	Vendor43  []byte
	Etherboot []byte
	UUID      []byte
	Message   string
}

func summarize(d *dhcpv4.DHCPv4) *reply {
	if d == nil {
		return nil
	}
	r := &reply{
		Type:      d.MessageType().String(),
		YIAddr:    ipString(d.YourIPAddr),
		SIAddr:    ipString(d.ServerIPAddr),
		CIAddr:    ipString(d.ClientIPAddr),
		File:      d.BootFileName,
		Opt67:     d.BootFileNameOption(),
		ServerID:  ipString(d.ServerIdentifier()),
		Domain:    d.DomainName(),
		Host:      d.HostName(),
		Lease:     d.IPAddressLeaseTime(0),
		Class:     d.ClassIdentifier(),
		Vendor43:  d.Options.Get(dhcpv4.OptionVendorSpecificInformation),
		Etherboot: d.Options.Get(dhcpv4.OptionEtherboot),
		UUID:      d.Options.Get(dhcpv4.OptionClientMachineIdentifier),
		Message:   d.Message(),
	}
	if m := d.SubnetMask(); m != nil {
		r.Mask = net.IP(m).String()
	}
	var rs, ds []string
	for _, ip := range d.Router() {
		rs = append(rs, ip.String())
	}
	for _, ip := range d.DNS() {
		ds = append(ds, ip.String())
	}
	r.Router = strings.Join(rs, ",")
	r.DNS = strings.Join(ds, ",")
	return r
}

func ipString(ip net.IP) string {
	if ip == nil || ip.Equal(net.IPv4zero) {
		return ""
	}
	return ip.String()
}

// full is the reply every full-mode reservation gets; tests change what
// differs.
func full(typ, yiaddr, host string) *reply {
	return &reply{
		Type:     typ,
		YIAddr:   yiaddr,
		SIAddr:   "10.0.0.1",
		ServerID: "10.0.0.1",
		Mask:     "255.255.255.0",
		Router:   "10.0.0.1",
		DNS:      "10.0.0.2,10.0.0.3",
		Domain:   "cluster.example",
		Host:     host,
		Lease:    2 * time.Hour,
	}
}

func edit(r *reply, fn func(*reply)) *reply {
	fn(r)
	return r
}

func bootFile(r *reply, file string) *reply {
	r.File, r.Opt67 = file, file
	return r
}

const ipxeURL1 = "http://10.0.0.1:8080/boot/52:54:00:00:00:01.ipxe"

func TestHandle(t *testing.T) {
	proxy := func(c *Config) { c.Proxy = true }
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		range_ bool
		port   int // 0 = ServerPort
		req    func(t *testing.T) *dhcpv4.DHCPv4
		want   *reply
	}{
		{
			name: "bios reserved",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, biosPXE...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "undionly.kpxe"),
		},
		{
			name: "legacy pxe without option 93 is bios",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, legacyPXE...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "undionly.kpxe"),
		},
		{
			name: "bios pxelinux",
			cfg:  func(c *Config) { c.BootFiles.UsePxelinux = true },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac2, biosPXE...) },
			want: bootFile(full("OFFER", "10.0.0.12", "node2"), "pxelinux.0"),
		},
		{
			name: "bios custom file",
			cfg:  func(c *Config) { c.BootFiles.BIOS = "herd/undionly.kpxe" },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, biosPXE...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "herd/undionly.kpxe"),
		},
		{
			name: "uefi arch 7",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, uefi7...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "snponly.efi"),
		},
		{
			name: "uefi arch 9",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, uefi9...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "snponly.efi"),
		},
		{
			name: "uefi http boot",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, uefiHTTP...) },
			want: func() *reply {
				r := bootFile(full("OFFER", "10.0.0.11", "node1"), "http://10.0.0.1:8080/files/snponly.efi")
				r.Class = "HTTPClient"
				return r
			}(),
		},
		{
			name: "uefi http boot, snp file",
			cfg:  func(c *Config) { c.BootFiles.UEFI, c.BootFiles.UEFISNP = "ipxe.efi", "snp/snponly.efi" },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, mac1, "10.0.0.11", "10.0.0.1", uefiHTTP...) },
			want: func() *reply {
				r := bootFile(full("ACK", "10.0.0.11", "node1"), "http://10.0.0.1:8080/files/snp/snponly.efi")
				r.Class = "HTTPClient"
				return r
			}(),
		},
		{
			name: "proxy ignores uefi http",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, uefiHTTP...) },
		},
		{
			name: "uefi ipxe.efi",
			cfg:  func(c *Config) { c.BootFiles.UEFI = "ipxe.efi" },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, uefi9...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "ipxe.efi"),
		},
		{
			name: "uefi snp overrides uefi",
			cfg:  func(c *Config) { c.BootFiles.UEFI, c.BootFiles.UEFISNP = "ipxe.efi", "snp/snponly.efi" },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, uefi9...) },
			want: bootFile(full("OFFER", "10.0.0.11", "node1"), "snp/snponly.efi"),
		},
		{
			name: "ipxe user class",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, ipxeUC...) },
			want: edit(bootFile(full("OFFER", "10.0.0.11", "node1"), ipxeURL1), func(r *reply) { r.Etherboot = []byte{176, 1, 1} }),
		},
		{
			name: "ipxe user class with pxelinux still gets the script",
			cfg:  func(c *Config) { c.BootFiles.UsePxelinux = true },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, ipxeUC...) },
			want: edit(bootFile(full("OFFER", "10.0.0.11", "node1"), ipxeURL1), func(r *reply) { r.Etherboot = []byte{176, 1, 1} }),
		},
		{
			name: "ipxe option 175 beats arch 7",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, ipxe175...) },
			want: edit(bootFile(full("OFFER", "10.0.0.11", "node1"), ipxeURL1), func(r *reply) { r.Etherboot = []byte{176, 1, 1} }),
		},
		{
			name: "ipxe rfc 3004 user class",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, ipxeRFC3004...) },
			want: edit(bootFile(full("OFFER", "10.0.0.11", "node1"), ipxeURL1), func(r *reply) { r.Etherboot = []byte{176, 1, 1} }),
		},
		{
			name: "http base with path and slash",
			cfg:  func(c *Config) { c.HTTPBase = "http://boot.example:81/herd/" },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac2, ipxeUC...) },
			want: edit(bootFile(full("OFFER", "10.0.0.12", "node2"), "http://boot.example:81/herd/boot/52:54:00:00:00:02.ipxe"), func(r *reply) { r.Etherboot = []byte{176, 1, 1} }),
		},
		{
			name: "uuid echoed to pxe",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, withUUID...) },
			want: edit(bootFile(full("OFFER", "10.0.0.11", "node1"), "undionly.kpxe"), func(r *reply) {
				r.UUID = []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
			}),
		},
		{
			name: "not pxe gets no boot file",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1) },
			want: full("OFFER", "10.0.0.11", "node1"),
		},
		{
			name: "arm64 pxe gets no boot file",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, arm64...) },
			want: full("OFFER", "10.0.0.11", "node1"),
		},
		{
			name:   "unknown with range",
			range_: true,
			req:    func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, macUnknown, biosPXE...) },
			want:   bootFile(full("OFFER", "10.0.0.100", ""), "undionly.kpxe"),
		},
		{
			name: "unknown without range",
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, macUnknown, biosPXE...) },
			want: nil,
		},
		{
			name: "lease time from config",
			cfg:  func(c *Config) { c.LeaseTime = 10 * time.Minute },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1) },
			want: edit(full("OFFER", "10.0.0.11", "node1"), func(r *reply) { r.Lease = 10 * time.Minute }),
		},
		{
			name: "lease time default",
			cfg:  func(c *Config) { c.Inventory.Lease = 0 },
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1) },
			want: edit(full("OFFER", "10.0.0.11", "node1"), func(r *reply) { r.Lease = time.Hour }),
		},
		{
			name: "no router, dns or domain",
			cfg: func(c *Config) {
				c.Inventory.Router, c.Inventory.DNS, c.Inventory.Domain = netip.Addr{}, nil, ""
			},
			req: func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1) },
			want: edit(full("OFFER", "10.0.0.11", "node1"), func(r *reply) {
				r.Router, r.DNS, r.Domain = "", "", ""
			}),
		},
		{
			name: "request selecting",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, mac1, "10.0.0.11", "10.0.0.1", uefi7...)
			},
			want: bootFile(full("ACK", "10.0.0.11", "node1"), "snponly.efi"),
		},
		{
			name: "request init-reboot",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, mac1, "10.0.0.11", "", ipxeUC...)
			},
			want: edit(bootFile(full("ACK", "10.0.0.11", "node1"), ipxeURL1), func(r *reply) { r.Etherboot = []byte{176, 1, 1} }),
		},
		{
			name: "request renewing",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeRequest, mac1, dhcpv4.WithClientIP(net.ParseIP("10.0.0.11")))
			},
			want: edit(full("ACK", "10.0.0.11", "node1"), func(r *reply) { r.CIAddr = "10.0.0.11" }),
		},
		{
			name: "request of another address gets a NAK",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, mac1, "10.0.0.12", "")
			},
			want: &reply{Type: "NAK", ServerID: "10.0.0.1", Message: "10.0.0.12 is not the address of node1 (10.0.0.11)"},
		},
		{
			name: "request for another server",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, mac1, "192.168.1.10", "192.168.1.1")
			},
			want: nil,
		},
		{
			name: "request unknown without range",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, macUnknown, "10.0.0.100", "10.0.0.1")
			},
			want: nil,
		},
		{
			name:   "request unknown after restart gets the free address",
			range_: true,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, macUnknown, "10.0.0.101", "")
			},
			want: full("ACK", "10.0.0.101", ""),
		},
		{
			name:   "request unknown outside range gets a NAK",
			range_: true,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, macUnknown, "10.0.0.50", "")
			},
			want: &reply{Type: "NAK", ServerID: "10.0.0.1", Message: "10.0.0.50 is not available to 52:54:00:aa:bb:cc"},
		},
		{
			name: "inform",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeInform, mac2, dhcpv4.WithClientIP(net.ParseIP("10.0.0.12")))
			},
			want: edit(full("ACK", "", "node2"), func(r *reply) { r.CIAddr = "10.0.0.12"; r.Lease = 0 }),
		},
		{
			name: "inform unknown",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeInform, macUnknown, dhcpv4.WithClientIP(net.ParseIP("10.0.0.77")))
			},
			want: edit(full("ACK", "", ""), func(r *reply) { r.CIAddr = "10.0.0.77"; r.Lease = 0 }),
		},
		{
			name: "release gets no reply",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeRelease, mac1, dhcpv4.WithClientIP(net.ParseIP("10.0.0.11")))
			},
			want: nil,
		},
		{
			name: "bootp gets no reply",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				d := discover(t, mac1, biosPXE...)
				d.Options.Del(dhcpv4.OptionDHCPMessageType)
				return d
			},
			want: nil,
		},
		{
			name: "reply opcode ignored",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				d := discover(t, mac1, biosPXE...)
				d.OpCode = dhcpv4.OpcodeBootReply
				return d
			},
			want: nil,
		},
		{
			name: "non-ethernet ignored",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				d := discover(t, mac1, biosPXE...)
				d.HWType = iana.HWTypeInfiniband
				return d
			},
			want: nil,
		},
		{
			name: "proxy bios offer",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, biosPXE...) },
			want: &reply{Type: "OFFER", SIAddr: "10.0.0.1", ServerID: "10.0.0.1", File: "undionly.kpxe", Opt67: "undionly.kpxe",
				Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
		},
		{
			name: "proxy uefi offer",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac2, uefi7...) },
			want: &reply{Type: "OFFER", SIAddr: "10.0.0.1", ServerID: "10.0.0.1", File: "snponly.efi", Opt67: "snponly.efi",
				Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
		},
		{
			name: "proxy ipxe offer has no 175",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, ipxeUC...) },
			want: &reply{Type: "OFFER", SIAddr: "10.0.0.1", ServerID: "10.0.0.1", File: ipxeURL1, Opt67: ipxeURL1,
				Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
		},
		{
			name: "proxy ignores non-pxe",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1) },
			want: nil,
		},
		{
			name: "proxy ignores unknown",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, macUnknown, biosPXE...) },
			want: nil,
		},
		{
			name: "proxy ignores arm64",
			cfg:  proxy,
			req:  func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, mac1, arm64...) },
			want: nil,
		},
		{
			name: "proxy ignores request on 67",
			cfg:  proxy,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return request(t, mac1, "192.168.1.50", "192.168.1.1", biosPXE...)
			},
			want: nil,
		},
		{
			name: "proxy request on 4011",
			cfg:  proxy,
			port: BootServerPort,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeRequest, mac1, with(ipxeUC, dhcpv4.WithClientIP(net.ParseIP("192.168.1.50")))...)
			},
			want: &reply{Type: "ACK", SIAddr: "10.0.0.1", CIAddr: "192.168.1.50", ServerID: "10.0.0.1", File: ipxeURL1, Opt67: ipxeURL1,
				Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
		},
		{
			name: "proxy inform on 4011",
			cfg:  proxy,
			port: BootServerPort,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeInform, mac2, with(biosPXE, dhcpv4.WithClientIP(net.ParseIP("192.168.1.51")))...)
			},
			want: &reply{Type: "ACK", SIAddr: "10.0.0.1", CIAddr: "192.168.1.51", ServerID: "10.0.0.1", File: "undionly.kpxe", Opt67: "undionly.kpxe",
				Class: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
		},
		{
			name: "4011 ignored in full mode",
			port: BootServerPort,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return message(t, dhcpv4.MessageTypeRequest, mac1, with(biosPXE, dhcpv4.WithClientIP(net.ParseIP("10.0.0.11")))...)
			},
			want: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.range_)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			s := newTestServer(t, cfg)
			port := tc.port
			if port == 0 {
				port = ServerPort
			}
			req := tc.req(t)
			resp, err := s.handle(req, port)
			if err != nil {
				t.Fatalf("handle: %v", err)
			}
			if diff := cmp.Diff(tc.want, summarize(resp)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if resp == nil {
				return
			}
			// The reply answers this client and survives the wire.
			if resp.TransactionID != req.TransactionID || resp.ClientHWAddr.String() != req.ClientHWAddr.String() || resp.OpCode != dhcpv4.OpcodeBootReply {
				t.Errorf("reply header xid %v chaddr %v op %v; want %v %v BootReply", resp.TransactionID, resp.ClientHWAddr, resp.OpCode, req.TransactionID, req.ClientHWAddr)
			}
			back, err := dhcpv4.FromBytes(resp.ToBytes())
			if err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			if diff := cmp.Diff(summarize(resp), summarize(back)); diff != "" {
				t.Errorf("reply changed on the wire (-before +after):\n%s", diff)
			}
		})
	}
}

func TestHandleDynamicLeases(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := testConfig(true)
	// Make the range cover excluded addresses too: .10-.13 holds the two
	// reservations, .14 and .15 are free.
	cfg.Inventory.RangeStart = netip.MustParseAddr("10.0.0.10")
	cfg.Inventory.RangeEnd = netip.MustParseAddr("10.0.0.15")
	cfg.Inventory.DNS = []netip.Addr{netip.MustParseAddr("10.0.0.10")}
	s := newTestServer(t, cfg)
	s.now = func() time.Time { return now }
	macs := []net.HardwareAddr{mustMAC("02:00:00:00:00:01"), mustMAC("02:00:00:00:00:02"), mustMAC("02:00:00:00:00:03"), mustMAC("02:00:00:00:00:04")}

	offer := func(mac net.HardwareAddr) string {
		t.Helper()
		resp, err := s.Handle(discover(t, mac))
		if err != nil {
			t.Fatal(err)
		}
		if resp == nil {
			return ""
		}
		return ipString(resp.YourIPAddr)
	}
	req := func(mac net.HardwareAddr, addr string) string {
		t.Helper()
		resp, err := s.Handle(request(t, mac, addr, "10.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if resp == nil {
			return "none"
		}
		return resp.MessageType().String()
	}
	send := func(mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) {
		t.Helper()
		resp, err := s.Handle(message(t, mt, mac, mods...))
		if err != nil || resp != nil {
			t.Fatalf("%s: reply %v, err %v; want none", mt, resp, err)
		}
	}

	// .10 is DNS, .11/.12 reserved: the first free address is .13.
	if got := offer(macs[0]); got != "10.0.0.13" {
		t.Fatalf("first offer %q, want 10.0.0.13", got)
	}
	if got := offer(macs[0]); got != "10.0.0.13" {
		t.Fatalf("repeated DISCOVER got %q, want the same 10.0.0.13", got)
	}
	if got := req(macs[0], "10.0.0.13"); got != "ACK" {
		t.Fatalf("REQUEST of offered address: %s, want ACK", got)
	}
	if got := offer(macs[1]); got != "10.0.0.14" {
		t.Fatalf("second client offered %q, want 10.0.0.14", got)
	}
	if got := req(macs[1], "10.0.0.13"); got != "NAK" {
		t.Fatalf("REQUEST of another client's address: %s, want NAK", got)
	}
	if got := req(macs[1], "10.0.0.14"); got != "ACK" {
		t.Fatalf("REQUEST of own offer: %s, want ACK", got)
	}
	if got := offer(macs[2]); got != "10.0.0.15" {
		t.Fatalf("third client offered %q, want 10.0.0.15", got)
	}
	if got := offer(macs[3]); got != "" {
		t.Fatalf("fourth client offered %q in an exhausted range, want no reply", got)
	}
	// The third client picks another server's offer: its hold ends.
	if resp, _ := s.Handle(request(t, macs[2], "192.168.9.9", "192.168.9.1")); resp != nil {
		t.Fatalf("REQUEST for another server answered: %v", resp.Summary())
	}
	if got := offer(macs[3]); got != "10.0.0.15" {
		t.Fatalf("after the third client left, fourth offered %q, want 10.0.0.15", got)
	}
	// RELEASE frees .13.
	send(dhcpv4.MessageTypeRelease, macs[0], dhcpv4.WithClientIP(net.ParseIP("10.0.0.13")))
	if got := offer(macs[2]); got != "10.0.0.13" {
		t.Fatalf("after RELEASE offered %q, want 10.0.0.13", got)
	}
	// DECLINE takes .13 out of use.
	send(dhcpv4.MessageTypeDecline, macs[2], dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.13"))))
	if got := offer(macs[0]); got != "" {
		t.Fatalf("after DECLINE offered %q, want none (range exhausted)", got)
	}
	// Offers expire after a minute: .15 (held for macs[3]) frees up.
	now = now.Add(2 * time.Minute)
	if got := offer(macs[0]); got != "10.0.0.15" {
		t.Fatalf("after the offer hold, offered %q, want 10.0.0.15", got)
	}
	// Leases expire: after the lease time .14 (macs[1]) can be taken, but
	// a client whose lease expired and was not reused gets it back.
	now = now.Add(3 * time.Hour)
	if got := offer(macs[1]); got != "10.0.0.14" {
		t.Fatalf("expired client offered %q, want its old 10.0.0.14", got)
	}
	// The declined address is usable again after the lease time.
	if got := offer(macs[2]); got != "10.0.0.13" {
		t.Fatalf("after the decline period offered %q, want 10.0.0.13", got)
	}
	// RENEWING: ciaddr, no option 50.
	resp, err := s.Handle(message(t, dhcpv4.MessageTypeRequest, macs[1], dhcpv4.WithClientIP(net.ParseIP("10.0.0.14"))))
	if err != nil || resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renew: %v, %v; want ACK", resp, err)
	}
	// All three held; a fourth MAC takes the oldest expired lease.
	now = now.Add(3 * time.Hour)
	if got := offer(mustMAC("02:00:00:00:00:05")); got == "" {
		t.Fatalf("new client after every lease expired got no offer")
	}
}

func TestHandleObserve(t *testing.T) {
	type seen struct {
		MAC  string
		Kind ClientKind
	}
	var mu sync.Mutex
	var got []seen
	cfg := testConfig(false)
	cfg.Observe = func(mac net.HardwareAddr, kind ClientKind) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, seen{mac.String(), kind})
	}
	s := newTestServer(t, cfg)
	for _, req := range []*dhcpv4.DHCPv4{
		discover(t, mac1, biosPXE...),
		request(t, mac1, "10.0.0.11", "10.0.0.1", ipxeUC...),
		discover(t, macUnknown, uefi7...), // observed though not answered
		message(t, dhcpv4.MessageTypeInform, mac2, dhcpv4.WithClientIP(net.ParseIP("10.0.0.12"))),
		message(t, dhcpv4.MessageTypeRelease, mac2, dhcpv4.WithClientIP(net.ParseIP("10.0.0.12"))),
	} {
		if _, err := s.Handle(req); err != nil {
			t.Fatal(err)
		}
	}
	want := []seen{
		{"52:54:00:00:00:01", BIOS},
		{"52:54:00:00:00:01", IPXE},
		{"52:54:00:aa:bb:cc", UEFI},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}

func TestClassifyClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		want ClientKind
	}{
		{"plain", nil, NotPXE},
		{"bios", biosPXE, BIOS},
		{"legacy pxe", legacyPXE, BIOS},
		{"arch 0 without class", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}, BIOS},
		{"uefi 7", uefi7, UEFI},
		{"uefi 9", uefi9, UEFI},
		{"ia32 uefi", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_IA32))}, NotPXE},
		{"arm64", arm64, NotPXE},
		{"uefi http", uefiHTTP, UEFIHTTP},
		{"arch 16 without HTTPClient", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}, NotPXE},
		{"malformed option 93", []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
			dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{7}),
		}, NotPXE},
		{"ipxe raw user class", ipxeUC, IPXE},
		{"ipxe rfc 3004", ipxeRFC3004, IPXE},
		{"ipxe 175", ipxe175, IPXE},
		{"other user class", []dhcpv4.Modifier{dhcpv4.WithUserClass("gPXE", false)}, NotPXE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyClient(discover(t, mac1, tc.mods...)); got != tc.want {
				t.Errorf("ClassifyClient = %v, want %v", got, tc.want)
			}
		})
	}
	if got := ClassifyClient(nil); got != NotPXE {
		t.Errorf("ClassifyClient(nil) = %v", got)
	}
	if s := ClientKind(42).String(); s != "ClientKind(42)" {
		t.Errorf("String = %q", s)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" = no error
	}{
		{"ok", func(*Config) {}, ""},
		{"proxy without subnet", func(c *Config) { c.Proxy = true; c.Inventory.Subnet = netip.Prefix{} }, ""},
		{"no interface", func(c *Config) { c.Interface = "" }, "no interface"},
		{"no server ip", func(c *Config) { c.ServerIP = netip.Addr{} }, "not an IPv4 address"},
		{"ipv6 server ip", func(c *Config) { c.ServerIP = netip.MustParseAddr("fe80::1") }, "not an IPv4 address"},
		{"no inventory", func(c *Config) { c.Inventory = nil }, "no inventory"},
		{"no http base", func(c *Config) { c.HTTPBase = "" }, "no HTTP base URL"},
		{"bad http base", func(c *Config) { c.HTTPBase = "10.0.0.1:8080" }, "want http://"},
		{"negative lease", func(c *Config) { c.LeaseTime = -time.Second }, "lease time"},
		{"no subnet", func(c *Config) { c.Inventory.Subnet = netip.Prefix{} }, "no IPv4 subnet"},
		{"half range", func(c *Config) { c.Inventory.RangeEnd = netip.Addr{} }, "want two IPv4 addresses"},
		{"reversed range", func(c *Config) {
			c.Inventory.RangeStart, c.Inventory.RangeEnd = c.Inventory.RangeEnd, c.Inventory.RangeStart
		}, "ends before it starts"},
		{"range outside subnet", func(c *Config) { c.Inventory.RangeEnd = netip.MustParseAddr("10.0.1.5") }, "not inside subnet"},
		{"ipv6 node", func(c *Config) { c.Inventory.Nodes[0].IP = netip.MustParseAddr("fd00::11") }, "is not IPv4"},
		{"bad mac", func(c *Config) { c.Inventory.Nodes[1].MAC = net.HardwareAddr{1, 2, 3} }, "not an Ethernet address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(true)
			tc.mod(&cfg)
			_, err := New(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("New error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestReplyAddr(t *testing.T) {
	peer := &net.UDPAddr{IP: net.ParseIP("10.0.0.50").To4(), Port: 68}
	mk := func(mt dhcpv4.MessageType, ciaddr, giaddr string) (*dhcpv4.DHCPv4, *dhcpv4.DHCPv4) {
		req := message(t, dhcpv4.MessageTypeRequest, mac1)
		if ciaddr != "" {
			req.ClientIPAddr = net.ParseIP(ciaddr).To4()
		}
		if giaddr != "" {
			req.GatewayIPAddr = net.ParseIP(giaddr).To4()
		}
		resp := message(t, mt, mac1)
		return req, resp
	}
	for _, tc := range []struct {
		name           string
		mt             dhcpv4.MessageType
		ciaddr, giaddr string
		port           int
		want           string
	}{
		{"new client", dhcpv4.MessageTypeOffer, "", "", ServerPort, "255.255.255.255:68"},
		{"renewing", dhcpv4.MessageTypeAck, "10.0.0.11", "", ServerPort, "10.0.0.11:68"},
		{"relayed", dhcpv4.MessageTypeOffer, "", "10.1.0.1", ServerPort, "10.1.0.1:67"},
		{"nak", dhcpv4.MessageTypeNak, "10.0.0.11", "", ServerPort, "255.255.255.255:68"},
		{"boot server", dhcpv4.MessageTypeAck, "10.0.0.50", "", BootServerPort, "10.0.0.50:68"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, resp := mk(tc.mt, tc.ciaddr, tc.giaddr)
			if got := replyAddr(req, resp, peer, tc.port).String(); got != tc.want {
				t.Errorf("replyAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBroadcastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/24":    "10.0.0.255",
		"10.0.0.77/23":   "10.0.1.255",
		"192.168.4.0/30": "192.168.4.3",
		"10.0.0.5/32":    "10.0.0.5",
		"0.0.0.0/0":      "255.255.255.255",
	} {
		if got := broadcastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("broadcastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
