package bootloader

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// espBootDir is the removable-media directory on the ESP, where
// RemovableLoader lives.
const espBootDir = "EFI/BOOT"

// checkESP checks that the EFI System Partition is mounted, vfat, at
// Config.ESP in the target.
func (in *installer) checkESP() error {
	esp := filepath.Join(in.cfg.Target, in.cfg.ESP)
	magic, err := in.fsType(esp)
	if err != nil {
		return fmt.Errorf("EFI System Partition: %w: mount it at %s (kickstart part %s --fstype=efi)", err, esp, in.cfg.ESP)
	}
	if magic != magicVFAT {
		return fmt.Errorf("EFI System Partition %s is on %s, not vfat: mount the ESP (a vfat partition: kickstart part %s --fstype=efi) there before installing the boot loader", esp, fsName(magic), in.cfg.ESP)
	}
	in.logf("EFI System Partition %s is vfat", esp)
	return nil
}

// installSystemdBoot installs the image's systemd-boot at the removable
// path with the kernel and initrd copied to ESP/herd/ and one entry.
func (in *installer) installSystemdBoot(res *Result) error {
	cfg := in.cfg
	esp := filepath.Join(cfg.Target, cfg.ESP)
	if err := in.copyFile(filepath.Join(cfg.Target, systemdBootEFI), filepath.Join(esp, espBootDir, "BOOTX64.EFI")); err != nil {
		return fmt.Errorf("install systemd-boot: %w", err)
	}
	kernel, initrd, err := in.copyKernel(res, esp, "herd")
	if err != nil {
		return err
	}
	if err := in.writeFile(filepath.Join(esp, "loader/loader.conf"), []byte(loaderConf(cfg.timeout()))); err != nil {
		return fmt.Errorf("write systemd-boot's loader.conf: %w", err)
	}
	entry := loaderEntry(osName(cfg.Target), kernel, initrd, res.CommandLine)
	if err := in.writeFile(filepath.Join(esp, "loader/entries/herd.conf"), []byte(entry)); err != nil {
		return fmt.Errorf("write systemd-boot's entry: %w", err)
	}
	res.Config = path.Join(cfg.ESP, "loader/entries/herd.conf")
	return nil
}

// installSyslinuxEFI installs the image's syslinux.efi and ldlinux.e64 at
// the removable path, with the kernel, initrd and syslinux.cfg beside
// them.
func (in *installer) installSyslinuxEFI(res *Result) error {
	cfg := in.cfg
	esp := filepath.Join(cfg.Target, cfg.ESP)
	dir := filepath.Join(esp, espBootDir)
	if err := in.copyFile(filepath.Join(cfg.Target, syslinuxEFI), filepath.Join(dir, "BOOTX64.EFI")); err != nil {
		return fmt.Errorf("install syslinux.efi: %w", err)
	}
	if err := in.copyFile(filepath.Join(cfg.Target, syslinuxLdlinux), filepath.Join(dir, "ldlinux.e64")); err != nil {
		return fmt.Errorf("install ldlinux.e64: %w", err)
	}
	kernel, initrd, err := in.copyKernel(res, esp, espBootDir)
	if err != nil {
		return err
	}
	text := syslinuxConf(kernel, initrd, res.CommandLine, cfg.timeout())
	if err := in.writeFile(filepath.Join(dir, "syslinux.cfg"), []byte(text)); err != nil {
		return fmt.Errorf("write syslinux.cfg: %w", err)
	}
	res.Config = path.Join(cfg.ESP, espBootDir, "syslinux.cfg")
	return nil
}

// copyKernel copies the kernel and initrd into dir on the ESP and returns
// their paths as the loader reads them from the ESP ("/herd/vmlinuz-...").
func (in *installer) copyKernel(res *Result, esp, dir string) (kernel, initrd string, err error) {
	for _, f := range []struct {
		src string
		dst *string
	}{{res.Kernel, &kernel}, {res.Initrd, &initrd}} {
		if f.src == "" {
			continue
		}
		*f.dst = "/" + path.Join(dir, path.Base(f.src))
		if err := in.copyFile(filepath.Join(in.cfg.Target, f.src), filepath.Join(esp, *f.dst)); err != nil {
			return "", "", fmt.Errorf("copy the kernel to the EFI System Partition (is it big enough?): %w", err)
		}
	}
	return kernel, initrd, nil
}

// loaderConf is systemd-boot's loader/loader.conf.
func loaderConf(timeout int) string {
	return "# Written by herd's installer.\ndefault herd.conf\ntimeout " + strconv.Itoa(timeout) + "\n"
}

// loaderEntry is a systemd-boot (boot loader specification) entry; the
// paths are on the ESP.
func loaderEntry(title, kernel, initrd, cmdline string) string {
	var b strings.Builder
	b.WriteString("# Written by herd's installer.\n")
	fmt.Fprintf(&b, "title %s\n", title)
	fmt.Fprintf(&b, "linux %s\n", kernel)
	if initrd != "" {
		fmt.Fprintf(&b, "initrd %s\n", initrd)
	}
	fmt.Fprintf(&b, "options %s\n", cmdline)
	return b.String()
}

// osName is the installed system's PRETTY_NAME from os-release, else
// "Linux".
func osName(target string) string {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := os.ReadFile(filepath.Join(target, p))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "PRETTY_NAME=")
			if !ok {
				continue
			}
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = strings.Trim(v, `"'`)
			}
			if v != "" {
				return v
			}
		}
	}
	return "Linux"
}
