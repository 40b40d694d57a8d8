// Package bootloader installs the boot loader of a freshly installed
// system: the on-disk part of both BIOS and UEFI booting. The caller has
// partitioned the disk, made and mounted every filesystem under a target
// root (/mnt/sysimage) and unpacked the root tree there; Install then
// makes that disk boot the kernel found under the target's /boot.
//
// The method is chosen from what the node booted with (Config.UEFI) and
// what the image carries (chooseMethod):
//
// BIOS:
//
//   - grub-bios, when the image has grub-install and grub's i386-pc
//     modules: grub-install --target=i386-pc DISK in a chroot of the target
//     (with /dev, /proc and /sys bound into it), then grub-mkconfig, or a
//     minimal grub.cfg when the image has no grub-mkconfig;
//   - extlinux otherwise (herd's initramfs carries it, or the image's own):
//     /boot/extlinux/extlinux.conf, extlinux --install, syslinux's mbr.bin
//     (dos) or gptmbr.bin (gpt) in the disk's first 440 bytes, and the boot
//     partition marked bootable (dos: the active flag; gpt: the
//     LegacyBIOSBootable attribute).
//
// UEFI (the EFI System Partition must be mounted, vfat, at Config.ESP):
// the loader goes to the removable-media path \EFI\BOOT\BOOTX64.EFI, which
// firmware boots without an NVRAM entry (package agent/efivar adds one):
//
//   - grub-efi: grub-install --target=x86_64-efi --removable --no-nvram in
//     a chroot, then grub.cfg as for BIOS;
//   - systemd-boot: the image's systemd-bootx64.efi, the kernel and initrd
//     copied to ESP/herd/, loader/loader.conf and loader/entries/herd.conf;
//   - syslinux-efi: the image's syslinux.efi and ldlinux.e64 with the kernel,
//     initrd and syslinux.cfg in ESP/EFI/BOOT/.
//
// The kernel command line is "root=UUID=<Config.RootUUID> rw" followed by
// Config.Append (grub-mkconfig adds its own "ro" before them: the later
// "rw" wins).
package bootloader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Config says where the installed system is and how it boots.
type Config struct {
	// Disk is the whole-disk device the system boots from (/dev/vda,
	// /dev/loop3). Required for BIOS; unused for UEFI.
	Disk string
	// Label is Disk's partition table: "dos" or "gpt". Required for the
	// extlinux method (it picks mbr.bin or gptmbr.bin and the boot flag).
	Label string
	// BootPart is the number (1-based) of the partition holding /boot: the
	// separate /boot partition, else the root partition. Required for the
	// extlinux method.
	BootPart int
	// Target is the target root directory with every filesystem of the
	// install mounted under it (/mnt/sysimage). Required.
	Target string
	// BootSeparate says /boot is a filesystem of its own: paths in the boot
	// menu are then relative to it ("/vmlinuz-..."), else to the root
	// ("/boot/vmlinuz-...").
	BootSeparate bool
	// RootUUID is the root filesystem's UUID: the kernel boots with
	// root=UUID=<RootUUID>. Required.
	RootUUID string
	// Append is extra kernel arguments (kickstart bootloader --append);
	// "" = none.
	Append string
	// Timeout is the boot menu's timeout in seconds; 0 boots at once; <0
	// means the default, 5 seconds.
	Timeout int
	// UEFI says the node booted by UEFI: the loader goes to the EFI System
	// Partition. false = BIOS.
	UEFI bool
	// ESP is the EFI System Partition's mount point inside Target
	// ("/boot/efi"). Required when UEFI.
	ESP string
	// MBRDir is the directory holding syslinux's mbr.bin and gptmbr.bin.
	// "" = /usr/lib/syslinux/mbr (where herd's initramfs carries them),
	// then the image's own /usr/lib/syslinux/mbr and /usr/share/syslinux.
	MBRDir string
	// Logf receives a line for every step: what is run, what is written.
	// nil = discard.
	Logf func(format string, args ...any)
}

// Result says what was installed.
type Result struct {
	// Method is one of MethodExtlinux, MethodGrubBIOS, MethodGrubEFI,
	// MethodSystemdBoot, MethodSyslinuxEFI.
	Method string
	// Kernel and Initrd are the booted kernel and initrd, as paths inside
	// Target ("/boot/vmlinuz-6.1.0-56-amd64"); Initrd is "" when the image
	// has none.
	Kernel, Initrd string
	// Config is the boot menu file written, as a path inside Target
	// ("/boot/extlinux/extlinux.conf").
	Config string
	// Loader is, for UEFI, the loader's path on the ESP as firmware names
	// it (`\EFI\BOOT\BOOTX64.EFI`); "" for BIOS.
	Loader string
	// CommandLine is the kernel command line the menu's entry boots with.
	CommandLine string
}

// Methods, the values of Result.Method.
const (
	MethodExtlinux    = "extlinux"
	MethodGrubBIOS    = "grub-bios"
	MethodGrubEFI     = "grub-efi"
	MethodSystemdBoot = "systemd-boot"
	MethodSyslinuxEFI = "syslinux-efi"
)

// RemovableLoader is the UEFI removable-media boot path for x86-64, where
// every UEFI method puts its loader (Result.Loader).
const RemovableLoader = `\EFI\BOOT\BOOTX64.EFI`

// DefaultTimeout is the boot menu's timeout in seconds when
// Config.Timeout is negative.
const DefaultTimeout = 5

// DefaultMBRDir is where herd's initramfs carries syslinux's mbr.bin.
const DefaultMBRDir = "/usr/lib/syslinux/mbr"

// ErrNoKernel is wrapped by FindKernel's and Install's error when the
// target has no kernel under /boot.
var ErrNoKernel = errors.New("the image must carry /boot/vmlinuz*")

// ErrNoUEFILoader is Install's error when the node booted by UEFI and the
// image carries none of the UEFI loaders herd installs.
var ErrNoUEFILoader = errors.New("the image carries no UEFI boot loader (grub-efi, systemd-boot or syslinux-efi): add one to the image, or boot the nodes in BIOS mode")

// Files in the target that choose the method.
var (
	grubInstallPaths = []string{"usr/sbin/grub-install", "usr/bin/grub-install", "usr/sbin/grub2-install", "usr/bin/grub2-install"}
	grubI386PC       = "usr/lib/grub/i386-pc"
	grubX8664EFI     = "usr/lib/grub/x86_64-efi"
	systemdBootEFI   = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	syslinuxEFI      = "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"
	syslinuxLdlinux  = "usr/lib/syslinux/modules/efi64/ldlinux.e64"
)

// Install installs the boot loader described by cfg and says what it did.
// See the package comment for the methods.
func Install(ctx context.Context, cfg Config) (Result, error) {
	return newInstaller(cfg).install(ctx)
}

// installer is one Install: the config with its defaults filled in and
// the system calls that tests replace.
type installer struct {
	cfg  Config
	logf func(format string, args ...any)
	// fsType returns the statfs filesystem magic of the filesystem
	// holding a path.
	fsType func(path string) (int64, error)
}

func newInstaller(cfg Config) *installer {
	cfg.Target = filepath.Clean(cfg.Target)
	cfg.Timeout = cfg.timeout()
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &installer{cfg: cfg, logf: logf, fsType: statfsType}
}

func (in *installer) install(ctx context.Context) (Result, error) {
	cfg := in.cfg
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if cfg.Target == "" || cfg.Target == "." {
		return Result{}, errors.New("install boot loader: Config.Target is empty: give the directory the installed system is mounted at")
	}
	if st, err := os.Stat(cfg.Target); err != nil {
		return Result{}, fmt.Errorf("install boot loader: target: %w", err)
	} else if !st.IsDir() {
		return Result{}, fmt.Errorf("install boot loader: target %s is not a directory", cfg.Target)
	}
	if cfg.RootUUID == "" {
		return Result{}, errors.New("install boot loader: Config.RootUUID is empty: give the root filesystem's UUID (blkid -s UUID)")
	}
	if cfg.UEFI {
		if cfg.ESP == "" || !path.IsAbs(cfg.ESP) || strings.Contains(cfg.ESP, "..") {
			return Result{}, fmt.Errorf("install boot loader: Config.ESP %q: want the EFI System Partition's mount point inside the target, like /boot/efi (kickstart part /boot/efi --fstype=efi)", cfg.ESP)
		}
	} else if cfg.Disk == "" {
		return Result{}, errors.New("install boot loader: Config.Disk is empty: give the whole-disk device to boot from (/dev/vda)")
	}
	kernel, initrd, err := FindKernel(cfg.Target)
	if err != nil {
		return Result{}, fmt.Errorf("install boot loader: %w", err)
	}
	in.logf("kernel %s, initrd %s", kernel, orNone(initrd))
	method := chooseMethod(cfg)
	if method == "" {
		return Result{}, ErrNoUEFILoader
	}
	in.logf("boot loader: %s (%s)", method, firmware(cfg.UEFI))
	res := Result{Method: method, Kernel: kernel, Initrd: initrd, CommandLine: commandLine(cfg)}
	if cfg.UEFI {
		res.Loader = RemovableLoader
		if err := in.checkESP(); err != nil {
			return Result{}, fmt.Errorf("install boot loader (%s): %w", method, err)
		}
	}
	switch method {
	case MethodExtlinux:
		err = in.installExtlinux(ctx, &res)
	case MethodGrubBIOS, MethodGrubEFI:
		err = in.installGrub(ctx, &res)
	case MethodSystemdBoot:
		err = in.installSystemdBoot(&res)
	case MethodSyslinuxEFI:
		err = in.installSyslinuxEFI(&res)
	}
	if err != nil {
		return Result{}, fmt.Errorf("install boot loader (%s): %w", method, err)
	}
	in.logf("installed %s: %s boots %s with %q", method, res.Config, res.Kernel, res.CommandLine)
	return res, nil
}

// chooseMethod picks the install method from the firmware and the files
// in the target; "" when the node booted by UEFI and the target has no
// UEFI loader herd installs. Under BIOS, extlinux is the fallback
// whatever the target carries (herd's initramfs brings it).
func chooseMethod(cfg Config) string {
	has := func(rel string) bool {
		_, err := os.Stat(filepath.Join(cfg.Target, rel))
		return err == nil
	}
	grub := false
	for _, p := range grubInstallPaths {
		grub = grub || has(p)
	}
	if !cfg.UEFI {
		if grub && has(grubI386PC) {
			return MethodGrubBIOS
		}
		return MethodExtlinux
	}
	switch {
	case grub && has(grubX8664EFI):
		return MethodGrubEFI
	case has(systemdBootEFI):
		return MethodSystemdBoot
	case has(syslinuxEFI) && has(syslinuxLdlinux):
		return MethodSyslinuxEFI
	}
	return ""
}

// commandLine is the kernel command line herd's menus boot with.
func commandLine(cfg Config) string {
	s := "root=UUID=" + cfg.RootUUID + " rw"
	if a := strings.Join(strings.Fields(cfg.Append), " "); a != "" {
		s += " " + a
	}
	return s
}

// bootPath is a path inside the target (/boot/vmlinuz-...) as the boot
// loader reads it from the /boot filesystem.
func bootPath(cfg Config, p string) string {
	if p == "" || !cfg.BootSeparate {
		return p
	}
	return strings.TrimPrefix(p, "/boot")
}

// syslinuxConf is an extlinux.conf or syslinux.cfg: one entry, booted
// without a prompt after timeout seconds (the paths as the loader reads
// them).
func syslinuxConf(kernel, initrd, cmdline string, timeout int) string {
	var b strings.Builder
	b.WriteString("# Written by herd's installer.\n")
	b.WriteString("DEFAULT herd\n")
	b.WriteString("PROMPT 0\n")
	fmt.Fprintf(&b, "TIMEOUT %d\n", timeout*10)
	b.WriteString("\nLABEL herd\n")
	fmt.Fprintf(&b, "  LINUX %s\n", kernel)
	if initrd != "" {
		fmt.Fprintf(&b, "  INITRD %s\n", initrd)
	}
	fmt.Fprintf(&b, "  APPEND %s\n", cmdline)
	return b.String()
}

// extlinuxConf is extlinux.conf for cfg, booting kernel and initrd (paths
// inside the target).
func extlinuxConf(cfg Config, kernel, initrd string) string {
	return syslinuxConf(bootPath(cfg, kernel), bootPath(cfg, initrd), commandLine(cfg), cfg.timeout())
}

// timeout is the menu timeout in seconds, the default filled in.
func (cfg Config) timeout() int {
	if cfg.Timeout < 0 {
		return DefaultTimeout
	}
	return cfg.Timeout
}

func firmware(uefi bool) string {
	if uefi {
		return "UEFI"
	}
	return "BIOS"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
