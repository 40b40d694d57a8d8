// Package partition lays out an install plan's partitions on one disk and
// writes the partition table with sfdisk.
//
// Compute is pure: it turns kickstart parts into a Table of MiB-aligned
// partitions, following kickstart's semantics (sizes in MiB, --grow takes
// the room left in proportion to the minimum sizes, up to --maxsize) and
// ka-deploy's explicit primary, extended and logical partitions. Apply
// writes a Table to the disk after checking that nothing on it is in use,
// and waits until the kernel shows the new partitions.
package partition

import (
	"fmt"
	"strings"

	"github.com/herdproject/herd/kickstart"
)

// MiB is the unit of every start and size in a Table.
const MiB = 1 << 20

// Table is a partition table computed for one disk.
type Table struct {
	Disk  string      // whole-disk device node, e.g. /dev/vda, /dev/loop3, /dev/nvme0n1
	Label string      // "dos" or "gpt"
	Size  int64       // the disk's size in bytes
	Parts []Partition // in partition-number order, the extended one included
}

// Partition is one partition of a Table.
type Partition struct {
	// Part is the plan's partition; for an extended partition Compute
	// made itself, Kind is Extended, FSType and Mount are empty and Line
	// is the line of its first logical partition.
	Part kickstart.Part
	// Number is 1-based; dos logicals are 5, 6, ...
	Number int
	// Start and Size are in bytes, MiB-aligned.
	Start int64
	Size  int64
	// Type is the sfdisk type: dos "83" linux, "82" swap, "ef" EFI (vfat
	// on /boot/efi), "c" vfat other, "5" extended; gpt: the GUID names
	// sfdisk knows (L, S, U ...) or full GUIDs.
	Type string
	// Bootable is the dos boot flag; on gpt, the LegacyBIOSBootable
	// attribute.
	Bootable bool
	// Device is the partition's device node; set by Apply (empty when
	// the disk is a regular file).
	Device string
}

// Script returns t as sfdisk input: a header naming the label, then one
// line per partition, e.g.
//
//	/dev/sda1 : start=1MiB, size=512MiB, type=83, bootable
//
// Starts and sizes are written in MiB, so the script means the same on
// disks with 512-byte and 4096-byte sectors. Each line names its
// partition's device (DeviceName), from which sfdisk takes the partition
// number: dos logicals are 5, 6, ... whatever the number of primaries.
func (t *Table) Script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "label: %s\n\n", t.Label)
	for _, p := range t.Parts {
		fmt.Fprintf(&b, "%s : start=%dMiB, size=%dMiB, type=%s", DeviceName(t.Disk, p.Number), p.Start/MiB, p.Size/MiB, p.Type)
		if p.Bootable {
			if t.Label == "gpt" {
				b.WriteString(`, attrs="LegacyBIOSBootable"`)
			} else {
				b.WriteString(", bootable")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// DeviceName returns the device node of partition n of disk, the way the
// kernel names partitions: a "p" goes between a disk name that ends in a
// digit and the number (/dev/sda → /dev/sda1; /dev/loop3, /dev/nvme0n1,
// /dev/mmcblk0 → /dev/loop3p1, /dev/nvme0n1p1, /dev/mmcblk0p1).
func DeviceName(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}
