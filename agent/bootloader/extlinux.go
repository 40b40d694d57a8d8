package bootloader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herdproject/herd/agent/hostsys"
)

// bootCodeSize is the boot code area of a master boot record: the disk
// signature and the partition table follow it, and must not be written.
const bootCodeSize = 440

// installExtlinux installs syslinux's extlinux for BIOS booting:
// extlinux.conf, extlinux --install, the boot flag and the MBR boot code.
func (in *installer) installExtlinux(ctx context.Context, res *Result) error {
	cfg := in.cfg
	if cfg.Label != "dos" && cfg.Label != "gpt" {
		return fmt.Errorf("partition table label %q of %s: want dos or gpt", cfg.Label, cfg.Disk)
	}
	if cfg.BootPart < 1 {
		return fmt.Errorf("boot partition number %d: want the number (1, 2, ...) of the partition of %s holding /boot", cfg.BootPart, cfg.Disk)
	}
	bootDir := filepath.Join(cfg.Target, "boot")
	magic, err := in.fsType(bootDir)
	if err != nil {
		return err
	}
	if magic == magicXFS {
		return fmt.Errorf("%s is on xfs, which extlinux cannot reliably boot from: give /boot an ext4 filesystem of its own (kickstart part /boot --fstype=ext4 --size=512)", bootDir)
	}

	// Find everything before writing anything.
	extlinux, chroot := "", ""
	if p, err := hostsys.Find("extlinux"); err == nil {
		extlinux = p
	} else if p := hostsys.FindIn(cfg.Target, "extlinux"); p != "" {
		extlinux, chroot = p, cfg.Target
	} else {
		return fmt.Errorf("%w, nor in the image under %s: herd's initramfs carries /usr/bin/extlinux (Debian package extlinux); rebuild it, or add extlinux or grub-pc to the image", err, cfg.Target)
	}
	sfdisk, err := hostsys.Find("sfdisk")
	if err != nil {
		return fmt.Errorf("%w: herd's initramfs carries it (Debian package fdisk); rebuild it", err)
	}
	mbr, err := in.readMBR()
	if err != nil {
		return err
	}

	dir := filepath.Join(bootDir, "extlinux")
	conf := filepath.Join(dir, "extlinux.conf")
	if err := in.writeFile(conf, []byte(extlinuxConf(cfg, res.Kernel, res.Initrd))); err != nil {
		return fmt.Errorf("write the extlinux configuration: %w", err)
	}
	res.Config = "/boot/extlinux/extlinux.conf"
	if chroot == "" {
		if _, err := in.run(ctx, extlinux, "--install", dir); err != nil {
			return fmt.Errorf("%w (extlinux needs /boot on ext2/3/4, btrfs or vfat)", err)
		}
	} else {
		undo, err := in.bindSystem(chroot)
		if err != nil {
			return err
		}
		_, err = in.runIn(ctx, chroot, extlinux, "--install", "/boot/extlinux")
		if err != nil {
			err = fmt.Errorf("%w (extlinux needs /boot on ext2/3/4, btrfs or vfat)", err)
		}
		if err := errors.Join(err, undo()); err != nil {
			return err
		}
	}
	if err := in.setBootFlag(ctx, sfdisk); err != nil {
		return err
	}
	return in.writeBootCode(mbr)
}

// readMBR reads syslinux's boot code for the label (mbr.bin for dos,
// gptmbr.bin for gpt): its first 440 bytes.
func (in *installer) readMBR() ([]byte, error) {
	name := "mbr.bin"
	if in.cfg.Label == "gpt" {
		name = "gptmbr.bin"
	}
	dirs := []string{in.cfg.MBRDir}
	if in.cfg.MBRDir == "" {
		dirs = []string{
			DefaultMBRDir,
			filepath.Join(in.cfg.Target, "usr/lib/syslinux/mbr"), // Debian, Ubuntu
			filepath.Join(in.cfg.Target, "usr/share/syslinux"),   // Fedora, RHEL
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read syslinux boot code: %w", err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("syslinux boot code %s is empty: reinstall syslinux-common", p)
		}
		in.logf("boot code %s (%d bytes)", p, len(b))
		return b[:min(len(b), bootCodeSize)], nil
	}
	return nil, fmt.Errorf("syslinux boot code %s not found in %s: add it to herd's initramfs at %s (Debian package syslinux-common), or set Config.MBRDir", name, strings.Join(dirs, ", "), DefaultMBRDir)
}

// setBootFlag marks the boot partition for the MBR boot code: the active
// flag on a dos disk (every other partition's is cleared), the
// LegacyBIOSBootable attribute on a gpt disk (other attributes kept). The
// kernel is not told: the flags change nothing it uses, and the disk's
// partitions are mounted.
func (in *installer) setBootFlag(ctx context.Context, sfdisk string) error {
	cfg := in.cfg
	n := strconv.Itoa(cfg.BootPart)
	if cfg.Label == "dos" {
		if _, err := in.run(ctx, sfdisk, "--no-tell-kernel", "--activate", cfg.Disk, n); err != nil {
			return fmt.Errorf("mark partition %s of %s bootable: %w", n, cfg.Disk, err)
		}
		return nil
	}
	out, err := in.run(ctx, sfdisk, "--part-attrs", cfg.Disk, n)
	if err != nil {
		return fmt.Errorf("read the attributes of partition %s of %s: %w", n, cfg.Disk, err)
	}
	attrs := strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
	for _, a := range attrs {
		if a == "LegacyBIOSBootable" {
			in.logf("partition %s of %s is already LegacyBIOSBootable", n, cfg.Disk)
			return nil
		}
	}
	attrs = append(attrs, "LegacyBIOSBootable")
	if _, err := in.run(ctx, sfdisk, "--no-tell-kernel", "--part-attrs", cfg.Disk, n, strings.Join(attrs, ",")); err != nil {
		return fmt.Errorf("mark partition %s of %s LegacyBIOSBootable: %w", n, cfg.Disk, err)
	}
	return nil
}

// writeBootCode writes code (at most 440 bytes) at the start of the disk,
// before the disk signature and partition table, and reads it back.
func (in *installer) writeBootCode(code []byte) error {
	disk := in.cfg.Disk
	code = code[:min(len(code), bootCodeSize)]
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("write the boot code: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(code, 0); err != nil {
		return fmt.Errorf("write the boot code to %s: %w", disk, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write the boot code to %s: sync: %w", disk, err)
	}
	got := make([]byte, len(code))
	if _, err := f.ReadAt(got, 0); err != nil {
		return fmt.Errorf("read back the boot code of %s: %w", disk, err)
	}
	if !bytes.Equal(got, code) {
		return fmt.Errorf("the boot code read back from %s differs from what was written: check the disk", disk)
	}
	in.logf("wrote %d bytes of boot code to the start of %s", len(code), disk)
	return f.Close()
}
