// Package bootlayout owns the boot tree's layout: the names of the files
// `herd build boot` writes and the boot services serve (TFTP, HTTP, the
// DHCP boot file names), where Debian's packages keep the firmware
// binaries, and Prepare, which puts those in a tree.
//
// It writes nothing but the binaries it copies and serves nothing:
// builders (imagebuilder/boottree) and servers (pxe/...) both import it.
package bootlayout

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herdproject/herd/internal/atomicfile"
)

// Names in the boot tree.
const (
	// Kernel is the kernel the install entries boot.
	Kernel = "vmlinuz"
	// InitramfsBase is herd's initramfs without its compression's
	// extension: InitramfsGz (the default) or InitramfsZst.
	InitramfsBase = "initramfs.cpio"
	InitramfsGz   = InitramfsBase + ".gz"
	InitramfsZst  = InitramfsBase + ".zst"
	// IPXEScript is the default iPXE script (boot the local disk) for
	// machines herd has no install for.
	IPXEScript = "boot.ipxe"
	// PxelinuxDefault is pxelinux's default configuration, likewise.
	PxelinuxDefault = "pxelinux.cfg/default"

	// BIOSiPXE is iPXE for BIOS PXE firmware (DHCP's default BIOS file).
	BIOSiPXE = "undionly.kpxe"
	// Pxelinux is pxelinux for BIOS clients (herd serve --pxelinux), and
	// Ldlinux the module it loads next.
	Pxelinux = "pxelinux.0"
	Ldlinux  = "ldlinux.c32"
	// UEFISNP is iPXE driving the NIC through the firmware's SNP (DHCP's
	// default UEFI file); UEFIiPXE is iPXE with its own NIC drivers.
	UEFISNP  = "snponly.efi"
	UEFIiPXE = "ipxe.efi"
)

// Binaries are the firmware binaries Prepare copies into a boot tree,
// each from the first of its places that exists (Debian's ipxe, pxelinux
// and syslinux-common packages).
var Binaries = map[string][]string{
	BIOSiPXE: {"/usr/lib/ipxe/undionly.kpxe"},
	UEFIiPXE: {"/usr/lib/ipxe/ipxe.efi"},
	UEFISNP:  {"/usr/lib/ipxe/snponly.efi"},
	Pxelinux: {"/usr/lib/PXELINUX/pxelinux.0"},
	Ldlinux:  {"/usr/lib/syslinux/modules/bios/ldlinux.c32"},
}

// Prepare creates dir and copies the Binaries it lacks into it. A binary
// found nowhere is not an error (a site may serve only UEFI, say): warn
// is called with a message naming the packages to install.
func Prepare(dir string, warn func(string)) error {
	if dir == "" {
		return errors.New("no boot directory: give --boot-dir")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("boot directory: %w", err)
	}
	names := make([]string, 0, len(Binaries))
	for name := range Binaries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		dst := filepath.Join(dir, name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		copied := false
		for _, src := range Binaries[name] {
			if err := atomicfile.Copy(src, dst, 0o644); err == nil {
				copied = true
				break
			}
		}
		if !copied && warn != nil {
			warn(fmt.Sprintf("%s is missing from %s and from Debian's packages: apt-get install ipxe pxelinux syslinux-common", name, dir))
		}
	}
	return nil
}

// Initramfs is the initramfs name the tree in dir holds: InitramfsGz, or
// InitramfsZst when only that one is there (herd build boot --compress
// zstd); InitramfsGz when neither is.
func Initramfs(dir string) string {
	for _, n := range []string{InitramfsGz, InitramfsZst} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return n
		}
	}
	return InitramfsGz
}

// Errors of Rel.
var (
	// ErrOutside is a request with a ".." element.
	ErrOutside = errors.New("outside the boot tree")
	// ErrEmpty is a request that names no file (only "/" and ".").
	ErrEmpty = errors.New("no file named")
)

// Rel maps a path a client asked for (over TFTP or HTTP) to one relative
// to the boot tree: empty and "." elements are skipped, and a ".."
// element is refused (ErrOutside) even when it would stay inside. The
// servers open the result through an os.Root of the tree, which confines
// the rest, symlinks included.
func Rel(p string) (string, error) {
	var elems []string
	for _, e := range strings.Split(p, "/") {
		switch e {
		case "", ".":
		case "..":
			return "", ErrOutside
		default:
			elems = append(elems, e)
		}
	}
	if len(elems) == 0 {
		return "", ErrEmpty
	}
	return strings.Join(elems, "/"), nil
}
