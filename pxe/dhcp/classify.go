package dhcp

import (
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ClientKind is what boots behind a DHCP request, as far as herd cares.
type ClientKind int

// Client kinds.
const (
	// NotPXE is any client herd sends no boot file to: an operating system,
	// the herd agent, or PXE firmware of an architecture without a boot
	// file here.
	NotPXE ClientKind = iota
	// BIOS is legacy BIOS PXE firmware.
	BIOS
	// UEFI is x86-64 UEFI PXE firmware.
	UEFI
	// IPXE is iPXE, whatever it was loaded by.
	IPXE
	// UEFIHTTP is x86-64 UEFI HTTP boot firmware (option 93 = 16 and
	// option 60 "HTTPClient", UEFI 2.10 §24.7.2): it gets the URL of the
	// EFI iPXE on herd's HTTP service instead of a TFTP file name.
	UEFIHTTP
)

// String returns "not-pxe", "bios", "uefi", "ipxe" or "uefi-http".
func (k ClientKind) String() string {
	switch k {
	case NotPXE:
		return "not-pxe"
	case BIOS:
		return "bios"
	case UEFI:
		return "uefi"
	case IPXE:
		return "ipxe"
	case UEFIHTTP:
		return "uefi-http"
	}
	return "ClientKind(" + strconv.Itoa(int(k)) + ")"
}

// pxeClassPrefix starts option 60 of every PXE client (PXE specification
// 2.1, §2.2.1: "PXEClient:Arch:xxxxx:UNDI:yyyzzz").
const pxeClassPrefix = "PXEClient"

// httpClassPrefix starts option 60 of UEFI HTTP boot clients, and must be
// option 60 of the offers they take (UEFI 2.10 §24.7.2.1).
const httpClassPrefix = "HTTPClient"

// ipxeUserClass is the user class (option 77) iPXE sends, raw rather than
// in RFC 3004's length-prefixed form.
const ipxeUserClass = "iPXE"

// isPXEClient reports whether option 60 says the client is PXE firmware
// (or iPXE, which says the same).
func isPXEClient(req *dhcpv4.DHCPv4) bool {
	return strings.HasPrefix(req.ClassIdentifier(), pxeClassPrefix)
}

// ClassifyClient tells which kind of client sent req:
//
//   - IPXE when option 77 (user class) is "iPXE", raw or as one of RFC
//     3004's classes, or when option 175 (iPXE's encapsulated options) is
//     present; this takes precedence;
//   - else by option 93 (client system architecture, RFC 4578 §2.1): 0 →
//     BIOS; 7 and 9 → UEFI (both are x86-64 UEFI in practice); 16 (x86-64
//     UEFI HTTP) with option 60 starting with "HTTPClient" → UEFIHTTP;
//     any other architecture → NotPXE, as herd has no boot file for it;
//   - else BIOS when option 60 starts with "PXEClient" (PXE 2.1 firmware
//     predating option 93 is BIOS);
//   - else NotPXE.
func ClassifyClient(req *dhcpv4.DHCPv4) ClientKind {
	if req == nil || req.Options == nil {
		return NotPXE
	}
	if req.Options.Has(dhcpv4.OptionEtherboot) {
		return IPXE
	}
	if string(req.Options.Get(dhcpv4.OptionUserClassInformation)) == ipxeUserClass {
		return IPXE
	}
	for _, uc := range req.UserClass() {
		if uc == ipxeUserClass {
			return IPXE
		}
	}
	if req.Options.Has(dhcpv4.OptionClientSystemArchitectureType) {
		archs := req.ClientArch()
		if len(archs) == 0 {
			return NotPXE
		}
		switch archs[0] {
		case iana.INTEL_X86PC:
			return BIOS
		case iana.EFI_X86_64, iana.EFI_BC: // 7 and 9
			return UEFI
		case iana.EFI_X86_64_HTTP: // 16
			if strings.HasPrefix(req.ClassIdentifier(), httpClassPrefix) {
				return UEFIHTTP
			}
		}
		return NotPXE
	}
	if isPXEClient(req) {
		return BIOS
	}
	return NotPXE
}
