package efivar

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoPartition is wrapped by HardDriveFromSfdisk's error when the
// partition table has no partition with the number asked for.
var ErrNoPartition = errors.New("no such partition")

// sfdiskDump is the part of `sfdisk --json DISK` that HardDriveFromSfdisk
// reads.
type sfdiskDump struct {
	PartitionTable *struct {
		Label      string  `json:"label"`
		Unit       string  `json:"unit"`
		SectorSize *uint64 `json:"sectorsize"` // sfdisk ≥ 2.35
		Partitions []struct {
			Node  string  `json:"node"`
			Start *uint64 `json:"start"`
			Size  *uint64 `json:"size"`
			UUID  string  `json:"uuid"`
			Type  string  `json:"type"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// HardDriveFromSfdisk returns the HardDrive of partition number (from 1)
// as `sfdisk --json DISK` describes it: its "start" and "size" in sectors
// and its "uuid" (the PARTUUID). The table must be GPT with 512-byte
// sectors.
//
// sfdisk lists only the partitions in use, so the number is taken from the
// end of each partition's "node" (/dev/sda1, /dev/nvme0n1p1, disk.img1),
// or from the partition's place in the list if it has no node. Errors
// wrap ErrNoPartition when the number is not there, ErrMalformed when the
// output does not have the fields sfdisk writes.
func HardDriveFromSfdisk(out []byte, number uint32) (HardDrive, error) {
	if number == 0 {
		return HardDrive{}, errors.New("sfdisk --json: partition number 0: want one from 1")
	}
	var d sfdiskDump
	if err := json.Unmarshal(out, &d); err != nil {
		return HardDrive{}, fmt.Errorf("sfdisk --json: %w: %w", ErrMalformed, err)
	}
	pt := d.PartitionTable
	switch {
	case pt == nil:
		return HardDrive{}, fmt.Errorf("sfdisk --json: no \"partitiontable\": %w", ErrMalformed)
	case pt.Label != "gpt":
		return HardDrive{}, fmt.Errorf("sfdisk --json: partition table label %q: want gpt, the EFI device path names the partition by its GPT GUID", pt.Label)
	case pt.Unit != "" && pt.Unit != "sectors":
		return HardDrive{}, fmt.Errorf("sfdisk --json: unit %q, want sectors: %w", pt.Unit, ErrMalformed)
	case pt.SectorSize != nil && *pt.SectorSize != 512:
		// TODO: 4Kn disks. The device path counts the disk's own
		// logical blocks, so HardDrive would need a block size;
		// no machine we install has one yet.
		return HardDrive{}, fmt.Errorf("sfdisk --json: sector size %d: only 512-byte sectors are supported", *pt.SectorSize)
	}
	for i, p := range pt.Partitions {
		if partitionNumber(p.Node, i) != number {
			continue
		}
		if p.Start == nil || p.Size == nil || *p.Size == 0 {
			return HardDrive{}, fmt.Errorf("sfdisk --json: partition %d (%s): no start or size: %w", number, p.Node, ErrMalformed)
		}
		if p.UUID == "" {
			return HardDrive{}, fmt.Errorf("sfdisk --json: partition %d (%s): no uuid: %w", number, p.Node, ErrMalformed)
		}
		g, err := ParseGUID(p.UUID)
		if err != nil {
			return HardDrive{}, fmt.Errorf("sfdisk --json: partition %d (%s): %w", number, p.Node, err)
		}
		return HardDrive{Number: number, Start: *p.Start, Size: *p.Size, PartUUID: g}, nil
	}
	return HardDrive{}, fmt.Errorf("sfdisk --json: partition %d: %w (the table lists %d)", number, ErrNoPartition, len(pt.Partitions))
}

// partitionNumber returns the number at the end of node, or i+1 when node
// does not end in one.
func partitionNumber(node string, i int) uint32 {
	digits := node[len(strings.TrimRight(node, "0123456789")):]
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return uint32(i + 1)
	}
	return uint32(n)
}

// ESPType is the GPT partition type GUID of an EFI System Partition
// (UEFI 2.10 §5.3.3), as sfdisk prints it.
const ESPType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// ErrNoESP is wrapped by FindESP's error when the table has no EFI System
// Partition.
var ErrNoESP = errors.New("no EFI System Partition")

// ESP is an EFI System Partition as `sfdisk --json DISK` lists it.
type ESP struct {
	// Number is the partition's number (from 1), Node its device node
	// (/dev/vda2) as sfdisk names it.
	Number uint32
	Node   string
	// HardDrive is its device path node for a boot entry.
	HardDrive HardDrive
}

// FindESP returns the first EFI System Partition of a GPT in `sfdisk
// --json DISK` output. A dos table, no table or a GPT without an ESP give
// an error wrapping ErrNoESP that says which; boot entries name the ESP
// by its GPT GUID, so an ESP in a dos table (type ef) is refused too.
func FindESP(out []byte) (ESP, error) {
	var d sfdiskDump
	if err := json.Unmarshal(out, &d); err != nil {
		return ESP{}, fmt.Errorf("sfdisk --json: %w: %w", ErrMalformed, err)
	}
	pt := d.PartitionTable
	switch {
	case pt == nil:
		return ESP{}, fmt.Errorf("no partition table: %w", ErrNoESP)
	case pt.Label != "gpt":
		for _, p := range pt.Partitions {
			if strings.EqualFold(p.Type, "ef") {
				return ESP{}, fmt.Errorf("a %s partition table (its ESP %s must be on a GPT for a boot entry): %w", pt.Label, p.Node, ErrNoESP)
			}
		}
		return ESP{}, fmt.Errorf("a %s partition table without an ESP: %w", pt.Label, ErrNoESP)
	}
	for i, p := range pt.Partitions {
		if !strings.EqualFold(p.Type, ESPType) {
			continue
		}
		n := partitionNumber(p.Node, i)
		hd, err := HardDriveFromSfdisk(out, n)
		if err != nil {
			return ESP{}, err
		}
		return ESP{Number: n, Node: p.Node, HardDrive: hd}, nil
	}
	return ESP{}, fmt.Errorf("a GPT of %d partitions, none of type %s: %w", len(pt.Partitions), ESPType, ErrNoESP)
}
