package debimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herdproject/herd/internal/uuid"
)

// layout is where the partitions go, in sectors.
type layout struct {
	biosStart, biosSectors int64
	espStart, espSectors   int64
	rootStart, rootSectors int64
}

// newLayout places the partitions: BIOS boot at 1 MiB, the ESP after it,
// the root to 1 MiB before the end (room for the backup GPT, aligned).
func newLayout(size, esp int64) layout {
	var l layout
	l.biosStart, l.biosSectors = align/sectorSize, biosBootSize/sectorSize
	l.espStart, l.espSectors = l.biosStart+l.biosSectors, esp/sectorSize
	l.rootStart = l.espStart + l.espSectors
	l.rootSectors = (size-align)/sectorSize - l.rootStart
	return l
}

// makeDisk makes the sparse image file and its GPT with sfdisk.
func makeDisk(ctx context.Context, img string, size int64, l layout) (string, []Partition, error) {
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		return "", nil, err
	}
	disk, err := uuid.New()
	if err != nil {
		return "", nil, err
	}
	parts := []Partition{
		{Number: 1, Name: "BIOS boot", Type: TypeBIOSBoot, Start: l.biosStart, Sectors: l.biosSectors},
		{Number: 2, Name: "EFI system", Type: TypeESP, Start: l.espStart, Sectors: l.espSectors},
		{Number: 3, Name: "root", Type: TypeLinux, Start: l.rootStart, Sectors: l.rootSectors},
	}
	var script strings.Builder
	fmt.Fprintf(&script, "label: gpt\nlabel-id: %s\nunit: sectors\n\n", strings.ToUpper(disk))
	for i := range parts {
		p := &parts[i]
		if p.UUID, err = uuid.New(); err != nil {
			return "", nil, err
		}
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s, uuid=%s, name=%q\n", p.Start, p.Sectors, p.Type, strings.ToUpper(p.UUID), p.Name)
	}
	if err := runIn(ctx, []byte(script.String()), "sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "never", img); err != nil {
		return "", nil, fmt.Errorf("partition table: %w", err)
	}
	return disk, parts, nil
}

// makeESP makes the FAT32 file system of the EFI system partition in the
// image and copies GRUB there, at the removable-media path and Debian's.
func makeESP(ctx context.Context, img string, l layout, volID uint32, efi string) error {
	kib := l.espSectors * sectorSize / 1024
	start := strconv.FormatInt(l.espStart, 10)
	// mkfs.fat picks the cluster size from the whole file's size, not the
	// partition's, and can leave FAT32 with fewer clusters than it must
	// have (65525), which firmware and mtools then take for FAT16: pick
	// it here, at most 4 KiB.
	spc := int64(8)
	for spc > 1 && l.espSectors/spc < 66000 {
		spc /= 2
	}
	if err := run(ctx, "mkfs.fat", "--offset", start, "-h", start, "-F", "32", "-s", strconv.FormatInt(spc, 10), "-n", "EFI", "-i", fmt.Sprintf("%08X", volID),
		img, strconv.FormatInt(kib, 10)); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	at := fmt.Sprintf("%s@@%d", img, l.espStart*sectorSize)
	if err := run(ctx, "mmd", "-i", at, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	for _, dst := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/EFI/debian/grubx64.efi"} {
		if err := run(ctx, "mcopy", "-o", "-i", at, efi, dst); err != nil {
			return fmt.Errorf("EFI system partition: %w", err)
		}
	}
	return nil
}

// makeRoot makes the ext4 root file system from dir in the image.
func makeRoot(ctx context.Context, img string, l layout, dir, uuid string) error {
	kib := l.rootSectors * sectorSize / 1024
	// -T default: 4 KiB blocks and 256-byte inodes; nodiscard: never
	// punch the rest of the file (the other partitions).
	if err := run(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-T", "default", "-L", RootLabel, "-U", uuid,
		"-d", dir, "-E", fmt.Sprintf("offset=%d,nodiscard", l.rootStart*sectorSize), img, strconv.FormatInt(kib, 10)+"k"); err != nil {
		return fmt.Errorf("root file system: %w", err)
	}
	return nil
}

// treeSize is the bytes the files under dir take (apparent sizes,
// rounded up to 4 KiB blocks).
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += roundUp(info.Size(), 4096)
		return nil
	})
	return n, err
}
