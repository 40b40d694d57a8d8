package agent

import (
	"context"
	"fmt"
	"os/exec"

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
