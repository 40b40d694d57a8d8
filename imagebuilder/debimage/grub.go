package debimage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
)

// What grub-bios-setup (GRUB 2.06, util/setup.c) does to boot.img and
// core.img when it embeds core.img in a GPT BIOS boot partition, done
// here on bytes so that no device has to be probed. Offsets are GRUB's
// include/grub/i386/pc/boot.h and offsets.h.
const (
	// sectorSize is the disk's logical sector (GRUB_DISK_SECTOR_SIZE).
	sectorSize = 512
	// bootBPBStart..bootBPBEnd is the BIOS parameter block area that
	// setup keeps from the disk's existing first sector
	// (GRUB_BOOT_MACHINE_BPB_START, _END).
	bootBPBStart = 0x03
	bootBPBEnd   = 0x5a
	// bootKernelSector is where boot.img reads the LBA of core.img's
	// first sector, a little-endian u64
	// (GRUB_BOOT_MACHINE_KERNEL_SECTOR).
	bootKernelSector = 0x5c
	// bootDrive is the drive boot.img loads core.img from; 0xff = the
	// one the BIOS booted from, in DL (GRUB_BOOT_MACHINE_BOOT_DRIVE).
	bootDrive = 0x64
	// bootDriveCheck is a 2-byte jump over boot.img's workaround for
	// BIOSes that pass a wrong boot drive; setup replaces it with two
	// NOPs for hard disks (GRUB_BOOT_MACHINE_DRIVE_CHECK).
	bootDriveCheck = 0x66
	// bootTableStart..bootTableEnd is the disk signature, two reserved
	// bytes and the four MBR partition entries that setup keeps
	// (GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC, GRUB_BOOT_MACHINE_PART_END);
	// the 0x55 0xaa signature follows.
	bootTableStart = 0x1b8
	bootTableEnd   = 0x1fe
	// blocklistSize is struct grub_boot_blocklist: start (u64), len
	// (u16), segment (u16); the first one ends diskboot.img, the first
	// sector of core.img, and later ones grow downwards until one with
	// len 0.
	blocklistSize  = 12
	firstBlocklist = sectorSize - blocklistSize
	// kernelRSRedundancy is the u32 in core.img's second sector (the
	// kernel's start, startup_raw.S) that tells the decompressor how
	// many Reed-Solomon bytes follow the image; 0 = none, which setup
	// writes with --no-rs-codes (GRUB_KERNEL_I386_PC_REED_SOLOMON_REDUNDANCY).
	kernelRSRedundancy = 0x10
	// maxCoreSectors is the most core.img may have: it is loaded at
	// 0x9000 and must end below 0x78000 (setup's maxsec).
	maxCoreSectors = (0x78000 - 0x9000) / sectorSize
)

// ErrBadGRUBImage is wrapped by the errors of PatchBootSector and
// PatchCore for input that is not GRUB's boot.img or core.img.
var ErrBadGRUBImage = errors.New("not a GRUB i386-pc image")

// PatchBootSector returns the disk's new first sector: GRUB's boot.img
// (exactly 512 bytes) with the BPB area and the partition table area
// (disk signature, the protective MBR's entries) of the disk's current
// first sector old, the LBA of core.img's first sector, the boot drive
// set to "the BIOS boot drive" and the boot-drive check turned into
// NOPs, as grub-bios-setup writes it for a hard disk.
func PatchBootSector(bootImg, old []byte, coreLBA uint64) ([]byte, error) {
	if len(bootImg) != sectorSize {
		return nil, fmt.Errorf("boot.img is %d bytes, want %d: %w", len(bootImg), sectorSize, ErrBadGRUBImage)
	}
	if len(old) != sectorSize {
		return nil, fmt.Errorf("the disk's first sector is %d bytes, want %d", len(old), sectorSize)
	}
	if bootImg[510] != 0x55 || bootImg[511] != 0xaa {
		return nil, fmt.Errorf("boot.img has no 55 aa boot signature: %w", ErrBadGRUBImage)
	}
	if old[510] != 0x55 || old[511] != 0xaa {
		return nil, errors.New("the disk's first sector has no 55 aa signature: partition the disk first")
	}
	// boot.img has a short jump (0xeb, displacement) over its "testb
	// $0x80, %dl" workaround at the drive check; setup overwrites it.
	if j := bootImg[bootDriveCheck]; j != 0xeb && j != 0x90 {
		return nil, fmt.Errorf("boot.img has %#02x at the drive check (%#x), not a short jump: %w", j, bootDriveCheck, ErrBadGRUBImage)
	}
	out := append([]byte(nil), bootImg...)
	copy(out[bootBPBStart:bootBPBEnd], old[bootBPBStart:bootBPBEnd])
	copy(out[bootTableStart:bootTableEnd], old[bootTableStart:bootTableEnd])
	binary.LittleEndian.PutUint64(out[bootKernelSector:], coreLBA)
	out[bootDrive] = 0xff
	out[bootDriveCheck], out[bootDriveCheck+1] = 0x90, 0x90
	return out, nil
}

// PatchCore returns core.img (grub-mkimage -O i386-pc: diskboot.img,
// then the kernel and modules) padded to whole sectors, with the
// blocklist in its first sector pointing at its remaining sectors, which
// follow the first one on the disk from firstLBA+1, and no Reed-Solomon
// redundancy: what grub-bios-setup --no-rs-codes embeds in a BIOS boot
// partition starting at firstLBA. The blocklist's segment (where
// diskboot.img loads the sectors) is kept.
func PatchCore(core []byte, firstLBA uint64) ([]byte, error) {
	if len(core) < 2*sectorSize {
		return nil, fmt.Errorf("core.img is %d bytes, less than two sectors: %w", len(core), ErrBadGRUBImage)
	}
	sectors := (len(core) + sectorSize - 1) / sectorSize
	if sectors > maxCoreSectors {
		return nil, fmt.Errorf("core.img has %d sectors, more than the %d that fit below 0x78000: leave modules out", sectors, maxCoreSectors)
	}
	out := make([]byte, sectors*sectorSize)
	copy(out, core)
	// diskboot.img ends with its blocklist, then (below it) a zero
	// terminator; its segment is 0x820 (GRUB_BOOT_I386_PC_KERNEL_SEG +
	// 0x20), where the second sector goes.
	seg := binary.LittleEndian.Uint16(out[firstBlocklist+10:])
	if seg == 0 {
		return nil, fmt.Errorf("core.img's first blocklist has segment 0: %w", ErrBadGRUBImage)
	}
	// Clear the blocklists there are (setup's "clean out"), then write
	// one block and the terminator below it.
	for at := firstBlocklist; at > 0 && binary.LittleEndian.Uint16(out[at+8:]) != 0; at -= blocklistSize {
		clear(out[at : at+blocklistSize])
	}
	binary.LittleEndian.PutUint64(out[firstBlocklist:], firstLBA+1)
	binary.LittleEndian.PutUint16(out[firstBlocklist+8:], uint16(sectors-1))
	binary.LittleEndian.PutUint16(out[firstBlocklist+10:], seg)
	clear(out[firstBlocklist-blocklistSize : firstBlocklist])
	binary.LittleEndian.PutUint32(out[sectorSize+kernelRSRedundancy:], 0)
	return out, nil
}

// Modules built into the GRUB images: enough to find the root file
// system by UUID on a GPT disk and to read grub.cfg from it; the rest is
// loaded from /boot/grub/<platform>/ as grub.cfg needs it.
var (
	commonModules = []string{"part_gpt", "part_msdos", "ext2", "search", "search_fs_uuid", "search_label",
		"normal", "configfile", "linux", "echo", "test", "serial", "terminal", "gzio", "ls", "cat", "halt", "reboot"}
	// EFIModules go into BOOTX64.EFI.
	EFIModules = append([]string{"fat", "efi_gop", "efi_uga", "all_video"}, commonModules...)
	// BIOSModules go into core.img.
	BIOSModules = append([]string{"biosdisk"}, commonModules...)
)

// earlyConfig is the configuration built into both GRUB images: find the
// root file system, read its grub.cfg.
func earlyConfig(rootUUID string) string {
	return fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n", rootUUID)
}

// grubConfig is /boot/grub/grub.cfg: one entry, the serial console and
// the screen, a one-second menu. $grub_platform ("pc" or "efi") goes on
// the kernel's command line as herd.grub= so that a booted system shows
// which firmware path it came through.
func grubConfig(rootUUID, kernelVersion string) string {
	return fmt.Sprintf(`# herd debimage: written by the image builder (no grub-mkconfig).
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
set timeout_style=menu
set default=0
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root %[1]s
echo "herd: GRUB on $grub_platform, root $root"

menuentry 'Debian GNU/Linux 12, Linux %[2]s' {
	echo 'Loading Linux %[2]s ...'
	linux /boot/vmlinuz-%[2]s root=UUID=%[1]s ro %[3]s herd.grub=$grub_platform
	echo 'Loading initial ramdisk ...'
	initrd /boot/initrd.img-%[2]s
}
`, rootUUID, kernelVersion, KernelConsole)
}

// KernelConsole is the console part of the kernel's command line.
const KernelConsole = "console=tty0 console=ttyS0,115200"

// grubImages are the two GRUB images made from the root's own GRUB.
type grubImages struct {
	efi, core, boot string // BOOTX64.EFI, core.img, boot.img (files)
}

// makeGRUB runs the root's own grub-mkimage in a chroot of root for
// both platforms, with the early configuration, and copies the modules
// to root/boot/grub/<platform>/ as grub-install would. The images are
// written to dir.
func makeGRUB(ctx context.Context, root, dir, rootUUID string) (grubImages, error) {
	var g grubImages
	cfg := "/tmp/herd-grub-early.cfg"
	if err := os.WriteFile(filepath.Join(root, cfg), []byte(earlyConfig(rootUUID)), 0o644); err != nil {
		return g, err
	}
	defer os.Remove(filepath.Join(root, cfg))
	for _, p := range []struct {
		platform, format string
		modules          []string
		out              *string
	}{
		{"x86_64-efi", "x86_64-efi", EFIModules, &g.efi},
		{"i386-pc", "i386-pc", BIOSModules, &g.core},
	} {
		lib := "/usr/lib/grub/" + p.platform
		if _, err := os.Stat(filepath.Join(root, lib, "kernel.img")); err != nil {
			return g, fmt.Errorf("the image has no GRUB for %s (%w): keep grub-pc-bin and grub-efi-amd64-bin in the packages", p.platform, err)
		}
		inRoot := "/tmp/herd-grub-" + p.platform + ".img"
		args := append([]string{root, "/usr/bin/grub-mkimage", "-O", p.format, "-d", lib, "-c", cfg, "-p", "/boot/grub", "-o", inRoot}, p.modules...)
		if err := run(ctx, "chroot", args...); err != nil {
			return g, fmt.Errorf("grub-mkimage %s: %w", p.platform, err)
		}
		*p.out = filepath.Join(dir, p.platform+".img")
		if err := os.Rename(filepath.Join(root, inRoot), *p.out); err != nil {
			return g, err
		}
		if err := copyModules(filepath.Join(root, lib), filepath.Join(root, "boot/grub", p.platform)); err != nil {
			return g, fmt.Errorf("GRUB modules for %s: %w", p.platform, err)
		}
	}
	g.boot = filepath.Join(root, "/usr/lib/grub/i386-pc/boot.img")
	return g, nil
}

// copyModules copies GRUB's *.mod, *.lst and *.img files from src to dst
// (grub-install's copy of the platform directory).
func copyModules(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst") || strings.HasSuffix(n, ".img")) {
			continue
		}
		if err := buildutil.CopyFile(filepath.Join(src, n), filepath.Join(dst, n), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// installBIOS writes boot.img into the image's first sector and core.img
// into the BIOS boot partition starting at sector coreLBA, which has room
// for maxSectors.
func installBIOS(img string, bootImgFile, coreFile string, coreLBA, maxSectors int64) (coreSectors int, err error) {
	bootImg, err := os.ReadFile(bootImgFile)
	if err != nil {
		return 0, err
	}
	core, err := os.ReadFile(coreFile)
	if err != nil {
		return 0, err
	}
	patched, err := PatchCore(core, uint64(coreLBA))
	if err != nil {
		return 0, err
	}
	if n := int64(len(patched) / sectorSize); n > maxSectors {
		return 0, fmt.Errorf("core.img has %d sectors, the BIOS boot partition %d", n, maxSectors)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	old := make([]byte, sectorSize)
	if _, err := f.ReadAt(old, 0); err != nil {
		return 0, fmt.Errorf("read the first sector: %w", err)
	}
	mbr, err := PatchBootSector(bootImg, old, uint64(coreLBA))
	if err != nil {
		return 0, err
	}
	if _, err := f.WriteAt(patched, coreLBA*sectorSize); err != nil {
		return 0, fmt.Errorf("write core.img: %w", err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("write boot.img: %w", err)
	}
	return len(patched) / sectorSize, f.Close()
}
