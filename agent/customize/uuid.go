package customize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNoUUID is wrapped by FindUUID's error when dev holds no filesystem
// it knows, or one without a UUID.
var ErrNoUUID = errors.New("no filesystem UUID")

// probeSize is how much of a device FindUUID reads: btrfs's superblock
// is at 64 KiB.
const probeSize = 64<<10 + 4096

// FindUUID returns the UUID of the filesystem or swap area on dev (a
// block device or an image file), as blkid prints it: ext2/3/4 (the
// superblock's s_uuid at 1024+104), XFS (sb_uuid at 32), btrfs (fsid at
// 64 KiB+32), swap (SWAPSPACE2, uuid at 1036) in lower-case 8-4-4-4-12
// form; vfat's 32-bit volume serial as "ABCD-1234". Pure Go: it reads
// the first 68 KiB and needs no tools.
func FindUUID(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", fmt.Errorf("find UUID: %w", err)
	}
	defer f.Close()
	buf := make([]byte, probeSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("find UUID: read %s: %w", dev, err)
	}
	u, err := probeUUID(buf[:n])
	if err != nil {
		return "", fmt.Errorf("find UUID of %s: %w", dev, err)
	}
	return u, nil
}

// probeUUID finds the UUID in a device's first bytes. Swap comes first:
// its signature is the strongest (mkswap keeps the first 1024 bytes,
// which may still hold a boot sector).
func probeUUID(b []byte) (string, error) {
	at := func(off int, n int) []byte {
		if off+n > len(b) {
			return nil
		}
		return b[off : off+n]
	}
	// swap: "SWAPSPACE2" ends the first page, whatever the page size.
	for _, ps := range []int{4096, 8192, 16384, 65536} {
		sig := at(ps-10, 10)
		if sig == nil {
			break
		}
		switch string(sig) {
		case "SWAPSPACE2":
			return uuidString(at(1036, 16), "swap")
		case "SWAP-SPACE":
			return "", fmt.Errorf("%w: old-style (v0) swap has none", ErrNoUUID)
		}
	}
	// ext2/3/4: s_magic 0xEF53 at 1024+56.
	if m := at(1024+56, 2); m != nil && binary.LittleEndian.Uint16(m) == 0xEF53 {
		return uuidString(at(1024+104, 16), "ext")
	}
	// XFS: "XFSB" at 0.
	if m := at(0, 4); m != nil && string(m) == "XFSB" {
		return uuidString(at(32, 16), "xfs")
	}
	// btrfs: "_BHRfS_M" at 64 KiB+64.
	if m := at(65536+64, 8); m != nil && string(m) == "_BHRfS_M" {
		return uuidString(at(65536+32, 16), "btrfs")
	}
	if id, ok := vfatSerial(b); ok {
		return id, nil
	}
	return "", fmt.Errorf("%w: no ext2/3/4, XFS, btrfs, vfat or swap signature", ErrNoUUID)
}

// uuidString formats 16 bytes as a UUID; all zeros is no UUID.
func uuidString(u []byte, what string) (string, error) {
	if len(u) != 16 {
		return "", fmt.Errorf("%w: %s superblock truncated", ErrNoUUID, what)
	}
	if bytes.Equal(u, make([]byte, 16)) {
		return "", fmt.Errorf("%w: the %s UUID is all zeros", ErrNoUUID, what)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// vfatSerial reads a FAT boot sector's volume serial number (FAT32: at
// 0x43, FAT12/16: at 0x27, each after the extended boot signature 0x29),
// formatted as blkid does. The BIOS parameter block is checked enough to
// not take an MBR or another boot sector for FAT.
func vfatSerial(b []byte) (string, bool) {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return "", false
	}
	bps := binary.LittleEndian.Uint16(b[11:13])
	spc := b[13]
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 {
		return "", false
	}
	if binary.LittleEndian.Uint16(b[14:16]) == 0 || b[16] == 0 { // reserved sectors, FAT count
		return "", false
	}
	var serial []byte
	switch {
	case binary.LittleEndian.Uint16(b[22:24]) == 0 && string(b[82:87]) == "FAT32":
		if b[66] != 0x29 {
			return "", false
		}
		serial = b[67:71]
	case string(b[54:57]) == "FAT" || string(b[54:59]) == "MSDOS":
		if b[38] != 0x29 {
			return "", false
		}
		serial = b[39:43]
	default:
		return "", false
	}
	return fmt.Sprintf("%02X%02X-%02X%02X", serial[3], serial[2], serial[1], serial[0]), true
}
