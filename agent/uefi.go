package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herdproject/herd/agent/efivar"
	"github.com/herdproject/herd/ring/blockdev"
	"golang.org/x/sys/unix"
)

// loaderNames are the EFI loaders a vendor directory (\EFI\debian,
// \EFI\fedora, \EFI\systemd...) may hold, in the order herd prefers them:
// shim first (it chains to GRUB and keeps Secure Boot working), then GRUB,
// then systemd-boot.
var loaderNames = []string{"shimx64.efi", "grubx64.efi", "systemd-bootx64.efi"}

// removableLoader is the removable-media path every UEFI firmware tries
// on a disk without a boot entry (UEFI 2.10 §3.5.1.1).
const removableLoader = `\EFI\BOOT\BOOTX64.EFI`

// uefiDiskBoot makes a whole disk this UEFI node just received bootable
// by the firmware: it finds the disk's EFI System Partition and the
// loader on it, writes a Boot#### entry for it, puts that entry in
// BootOrder right after the network entry this boot came from (herd's
// policy: network first, the script's exit falls through to the disk)
// and sets BootNext to it, and reads all three back. A disk without an
// ESP or loader, or variables that cannot be written or do not read back
// as written, fail the node: it would never boot what it reported done.
// Sessions that wrote no whole disk are left alone.
func (a *agent) uefiDiskBoot(ctx context.Context) error {
	disks := a.wholeDisks()
	if len(disks) == 0 {
		a.con.printf("  no whole disk among the outputs: no boot entry to write")
		return nil
	}
	var why []string
	for _, disk := range disks {
		err := a.uefiBootDisk(ctx, disk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, efivar.ErrNoESP) && !errors.Is(err, errNoLoader) {
			return err
		}
		why = append(why, err.Error())
	}
	return fmt.Errorf("this node booted by UEFI, but it could not boot what it received: %s; send an image with a GPT, an EFI System Partition and a loader on it (herd image build makes one), or switch this node's firmware to legacy BIOS boot", strings.Join(why, "; "))
}

// errNoLoader is wrapped when an ESP holds none of the loaders herd
// looks for.
var errNoLoader = errors.New("no EFI loader")

// uefiBootDisk writes the boot entry for one disk's ESP.
func (a *agent) uefiBootDisk(ctx context.Context, disk string) error {
	// customize has made the kernel read the disk's new table
	// (rereadPartitions): the ESP's node is there.
	out, err := exec.CommandContext(ctx, "sfdisk", "--json", disk).Output()
	if err != nil {
		// sfdisk exits non-zero on a disk without a partition table.
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(out) == 0 {
			return fmt.Errorf("%s: no partition table (%s): %w", disk, strings.TrimSpace(string(ee.Stderr)), efivar.ErrNoESP)
		}
		return fmt.Errorf("read the partition table of %s: %w", disk, err)
	}
	esp, err := efivar.FindESP(out)
	if err != nil {
		return fmt.Errorf("%s: %w", disk, err)
	}
	loader, err := espLoader(esp.Node)
	if err != nil {
		return fmt.Errorf("%s: %w", disk, err)
	}
	a.con.printf("  %s: EFI System Partition %s (partition %d), loader %s", disk, esp.Node, esp.Number, loader)
	if !efivar.Available() {
		return fmt.Errorf("no writable EFI variables (efivarfs is not mounted on %s): herd cannot write the boot entry for %s on %s; check that the kernel has efivarfs and that the firmware exposes runtime variables", efivar.DefaultDir, loader, esp.Node)
	}
	return a.addBootEntry(esp.HardDrive, disk, loader)
}

// addBootEntry writes herd's Boot#### entry for loader on the partition
// hd of disk (network first: after BootCurrent; BootNext) and says what
// it did. It is also the last step of a plan's UEFI bootloader.
func (a *agent) addBootEntry(hd efivar.HardDrive, disk, loader string) error {
	desc := "herd " + a.id.Hostname
	r, err := efivar.Vars{}.AddBootEntry(desc, hd, loader, efivar.AfterCurrent)
	if err != nil {
		if errors.Is(err, efivar.ErrVerify) {
			return fmt.Errorf("the firmware did not keep the boot entry as written (%w): this node would not boot its disk; update its firmware or set the boot order by hand", err)
		}
		return fmt.Errorf("write the boot entry (EFI variables in %s): %w; check that efivarfs is mounted read-write and that the firmware's variable store is not full", efivar.DefaultDir, err)
	}
	order := make([]string, len(r.Order))
	for i, n := range r.Order {
		order[i] = fmt.Sprintf("%04X", n)
	}
	a.con.printf("  Boot%04X %q → %s on %s partition %d; BootOrder %s, BootNext %04X (read back)", r.Number, desc, loader, disk, hd.Number, strings.Join(order, ","), r.Number)
	if r.First {
		if r.HasCurrent {
			a.con.printf("  warning: this boot's entry Boot%04X is not in BootOrder, so Boot%04X went first: later resets boot the disk without asking herd, and `herd nodes reinstall` needs a network boot chosen at the console or through the BMC", r.Current, r.Number)
		} else {
			a.con.printf("  warning: the firmware gives no BootCurrent, so Boot%04X went first: later resets boot the disk without asking herd, and `herd nodes reinstall` needs a network boot chosen at the console or through the BMC", r.Number)
		}
	}
	return nil
}

// wholeDisks returns the outputs of this session that are whole block
// devices (not partitions), in session order, each once.
func (a *agent) wholeDisks() []string {
	var disks []string
	for _, f := range a.files {
		if f.Discard || isStage2(f) || !strings.HasPrefix(f.Output, "/dev/") {
			continue
		}
		st, err := os.Stat(f.Output)
		if err != nil || !blockdev.IsBlock(st.Mode()) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/block", filepath.Base(f.Output), "partition")); err == nil {
			continue
		}
		if !slices.Contains(disks, f.Output) {
			disks = append(disks, f.Output)
		}
	}
	return disks
}

// espLoader mounts the ESP at node read-only and returns the loader the
// boot entry should start, as a UEFI path (`\EFI\debian\grubx64.efi`).
func espLoader(node string) (string, error) {
	mnt, err := os.MkdirTemp("", "herd-esp-")
	if err != nil {
		return "", err
	}
	defer os.Remove(mnt)
	if err := unix.Mount(node, mnt, "vfat", unix.MS_RDONLY, ""); err != nil {
		return "", fmt.Errorf("mount the EFI System Partition %s (vfat): %w (is it formatted FAT32?)", node, err)
	}
	defer unix.Unmount(mnt, 0)
	p, err := findLoader(mnt)
	if err != nil {
		return "", fmt.Errorf("EFI System Partition %s: %w", node, err)
	}
	return p, nil
}

// findLoader looks for a loader under root, the top of a mounted ESP:
// \EFI\<vendor>\ shim, GRUB or systemd-boot (vendors in name order), then
// the removable path. Names match without case, as on FAT; the path is
// returned with the names as they are on disk.
func findLoader(root string) (string, error) {
	efi, ok := lookupFold(root, "EFI")
	if !ok {
		return "", fmt.Errorf("no \\EFI directory: %w", errNoLoader)
	}
	vendors, err := os.ReadDir(filepath.Join(root, efi))
	if err != nil {
		return "", err
	}
	for _, name := range loaderNames {
		for _, v := range vendors {
			if !v.IsDir() || strings.EqualFold(v.Name(), "BOOT") {
				continue
			}
			if f, ok := lookupFold(filepath.Join(root, efi, v.Name()), name); ok {
				return `\` + efi + `\` + v.Name() + `\` + f, nil
			}
		}
	}
	if boot, ok := lookupFold(filepath.Join(root, efi), "BOOT"); ok {
		if f, ok := lookupFold(filepath.Join(root, efi, boot), "BOOTX64.EFI"); ok {
			return `\` + efi + `\` + boot + `\` + f, nil
		}
	}
	return "", fmt.Errorf("none of \\EFI\\*\\{%s} or %s: %w", strings.Join(loaderNames, ","), removableLoader, errNoLoader)
}

// lookupFold returns the name of the entry of dir that equals name
// without case.
func lookupFold(dir, name string) (string, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) {
			return e.Name(), true
		}
	}
	return "", false
}
