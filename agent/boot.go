package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/herdproject/herd/agent/bootloader"
	"github.com/herdproject/herd/agent/efivar"
)

// installBootloader makes the new system boot from its disk: extlinux or
// GRUB for BIOS, the ESP's removable path for UEFI (with a Boot####
// entry, BootOrder and BootNext when efivarfs is there), root=UUID= of
// the plan's root filesystem on the kernel command line.
func (a *agent) installBootloader(ctx context.Context) error {
	ps := a.plan
	root, ok := ps.mountFor("/")
	if !ok {
		return fmt.Errorf("plan %s has no root filesystem (part /) to boot: add one, or say bootloader --location=none", ps.name)
	}
	boot, sep := ps.mountFor("/boot")
	if !sep {
		boot = root
	}
	label := ""
	for _, t := range ps.tables {
		if t.Disk == boot.disk {
			label = t.Label
		}
	}
	cfg := bootloader.Config{
		Disk: boot.disk, Label: label, BootPart: boot.number, Target: ps.target, BootSeparate: sep,
		RootUUID: root.uuid, Timeout: -1, UEFI: a.uefiBoot(),
		Logf: func(f string, args ...any) { a.con.printf("  "+f, args...) },
	}
	if b := ps.plan.Bootloader; b != nil {
		cfg.Append, cfg.Timeout = b.Append, b.Timeout
	}
	esp, hasESP := ps.mountFor("/boot/efi")
	if cfg.UEFI {
		if !hasESP || esp.part.FSType != "vfat" {
			return fmt.Errorf("this node booted by UEFI but plan %s has no EFI System Partition: add part /boot/efi --fstype=efi --size=200", ps.name)
		}
		cfg.ESP = "/boot/efi"
	}
	if a.cfg.AsInit {
		// grub-mkconfig writes root=UUID= only when udev's
		// /dev/disk/by-uuid link exists; herd's initramfs runs no udev.
		linkByUUID("/dev/disk/by-uuid", ps.fs, a.con.printf)
	}
	res, err := bootloader.Install(ctx, cfg)
	if err != nil {
		return err
	}
	a.con.printf("  %s: %s, kernel %s, initrd %s, command line %q", res.Method, res.Config, res.Kernel, orDash(res.Initrd), res.CommandLine)
	if !cfg.UEFI {
		return nil
	}
	if !efivar.Available() {
		a.con.printf("  no efivarfs: the firmware finds %s by the removable path", res.Loader)
		return nil
	}
	out, err := exec.CommandContext(ctx, "sfdisk", "--json", esp.disk).Output()
	if err != nil {
		return fmt.Errorf("read the partition table of %s for the boot entry: %w", esp.disk, err)
	}
	hd, err := efivar.HardDriveFromSfdisk(out, uint32(esp.number))
	if err != nil {
		return fmt.Errorf("boot entry: %w", err)
	}
	return a.addBootEntry(hd, esp.disk, res.Loader)
}

// linkByUUID makes dir/<uuid> (/dev/disk/by-uuid) → the device of each
// plan filesystem, as udev would: the installed system's tools
// (grub-mkconfig, grub-probe) look there to name a filesystem by UUID.
func linkByUUID(dir string, fss []planFS, printf func(string, ...any)) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		printf("  warning: %v: the boot loader may name the root by device", err)
		return
	}
	for _, f := range fss {
		if f.uuid == "" || f.dev == "" {
			continue
		}
		l := filepath.Join(dir, f.uuid)
		_ = os.Remove(l)
		if err := os.Symlink(f.dev, l); err != nil {
			printf("  warning: %v: the boot loader may name %s by device", err, f.dev)
		}
	}
}
