package qemutests

import (
	"fmt"
	"io"
	"os"
)

// Firmware is a node's boot firmware and the way its virtio-net card
// network-boots. Every kind boots the network first and the disk second;
// herd's script decides: install, or exit to the disk.
type Firmware int

const (
	// BIOS is SeaBIOS with iPXE's BIOS option ROM (ROM) on the card, and
	// -boot n.
	BIOS Firmware = iota
	// UEFIPXE is OVMF with no option ROM on the card (romfile=""): OVMF's
	// own driver and PXE client do DHCP with architecture 7, TFTP the EFI
	// iPXE herd names (snponly.efi or ipxe.efi), and that iPXE fetches the
	// node's script over HTTP.
	UEFIPXE
	// UEFIiPXE is OVMF with iPXE's EFI option ROM (EFIROM) on the card:
	// iPXE drives the card and runs from the firmware's boot option; it
	// does DHCP as iPXE and fetches the node's script directly.
	UEFIiPXE
)

// String is the kind's name as the tests log it.
func (f Firmware) String() string {
	switch f {
	case BIOS:
		return "BIOS"
	case UEFIPXE:
		return "UEFI-PXE"
	case UEFIiPXE:
		return "UEFI-iPXE"
	}
	return fmt.Sprintf("Firmware(%d)", int(f))
}

// UEFI reports whether f is OVMF.
func (f Firmware) UEFI() bool { return f == UEFIPXE || f == UEFIiPXE }

// OVMF is Debian's ovmf: the code (read-only pflash, shared) and the
// template of the variable store each UEFI node gets a private copy of.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// EFIROM is the iPXE option ROM of UEFIiPXE nodes: Debian ipxe-qemu's
// combined BIOS and EFI image for virtio-net. Both of its images carry PCI
// IDs 1af4:1041 (the modern virtio-net device), as ROM does, so UEFI
// nodes' cards are modern-only too (disable-legacy=on).
const EFIROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"

// StartPattern is the regular expression of the console line a firmware
// prints early at each start (power-on, reset, reboot), before it runs
// anything from the network or the disk, and only then:
//
//   - BIOS: SeaBIOS's banner;
//   - UEFIPXE: OVMF's PXE client starting; the card's options come first
//     (bootindex=1), and OVMF prints its "BdsDxe: loading Boot####" line
//     only once LoadImage returned, i.e. after the PXE download;
//   - UEFIiPXE: the iPXE ROM opening the card with its own virtio-net
//     driver. OVMF starts the ROM as the card's first option without a
//     "BdsDxe: loading" line (iPXE boots from inside the firmware's
//     LoadFile call), and the iPXE banner is no mark: when the ROM's
//     iPXE exits, OVMF's own PXE over the ROM's SNP (the option "UEFI
//     PXEv4 (MAC:...) 2") loads an EFI iPXE, whose banner is the same and
//     which drives the card through SNP.
func (f Firmware) StartPattern() string {
	switch f {
	case UEFIPXE:
		return `>>Start PXE over IPv4`
	case UEFIiPXE:
		return `net0: [0-9a-f:]+ using virtio-net on `
	}
	return `SeaBIOS \(version`
}

// missingFirmware says what the harness lacks to run nodes with firmware
// f, or "".
func missingFirmware(f Firmware) string {
	if !f.UEFI() {
		return ""
	}
	for _, p := range []string{OVMFCode, OVMFVars} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("no OVMF %s for %s nodes: apt-get install ovmf", p, f)
		}
	}
	if f == UEFIiPXE {
		if _, err := os.Stat(EFIROM); err != nil {
			return fmt.Sprintf("no iPXE EFI ROM %s for %s nodes: apt-get install ipxe-qemu", EFIROM, f)
		}
	}
	return ""
}

// vmArgs are the firmware, card and disk arguments of node n's QEMU. BIOS
// nodes boot with -boot n; UEFI nodes get bootindex 1 on the card and 2 on
// the disk, as an administrator orders a rack's boot devices, and OVMF
// rebuilds BootOrder from them at every start: first the card's options
// (PXEv4, HTTPv4), then the disk's (any Boot#### whose device path is on
// the disk, the node's own too, before OVMF's "UEFI Misc Device"), then
// the options that match no bootindex (UiApp, the shell), kept. OVMF's variables are the
// node's own file (Node.Vars), so what the firmware or the node writes
// there persists across resets and restarts.
func (f Firmware) vmArgs(n Node) []string {
	net := "virtio-net-pci,netdev=n0,mac=" + n.MAC + ",disable-legacy=on"
	if !f.UEFI() {
		return []string{
			"-boot", "n",
			"-device", net + ",romfile=" + ROM,
			"-drive", "file=" + n.Disk + ",format=raw,if=virtio",
		}
	}
	rom := "" // OVMF's own virtio-net driver and PXE
	if f == UEFIiPXE {
		rom = EFIROM
	}
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + n.Vars,
		"-device", net + ",romfile=" + rom + ",bootindex=1",
		"-drive", "file=" + n.Disk + ",format=raw,if=none,id=disk0",
		"-device", "virtio-blk-pci,drive=disk0,bootindex=2",
		// The boot network is IPv4 only (herd answers no DHCPv6), so
		// OVMF's IPv6 stack goes, with its PXEv6 and HTTPv6 boot options:
		// each would make an exit to the disk wait a minute for an
		// answer.
		"-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no",
	}
}

// copyVars makes dst a fresh copy of OVMF's variable store template.
func copyVars(dst string) error {
	in, err := os.Open(OVMFVars)
	if err != nil {
		return fmt.Errorf("OVMF variables: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("OVMF variables: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("OVMF variables to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("OVMF variables to %s: %w", dst, err)
	}
	return nil
}
