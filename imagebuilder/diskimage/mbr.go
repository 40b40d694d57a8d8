package diskimage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SectorSize is the sector size MBR addresses count in. Disks with 4 KiB
// logical sectors exist, but the images herd builds and clones use 512.
const SectorSize = 512

// MaxLogical bounds the chain of extended boot records a table may have
// (Linux itself stops at 256 partitions per disk; fdisk at 60).
const MaxLogical = 128

// Offsets in a master boot record (and in an extended boot record, which
// has the same layout).
const (
	mbrBootCode  = 440 // bytes of boot code that mbr.bin fills
	mbrDiskID    = 440 // 32-bit disk signature
	mbrTable     = 446 // four 16-byte partition entries
	mbrEntrySize = 16
	mbrSignature = 510 // 0x55 0xAA
)

// noteProtective is ParseMBR's note on a protective MBR; Inspect drops it
// when it has read the GPT.
const noteProtective = "protective MBR of a GUID partition table: only the MBR's entries are listed"

// ErrNoMBR is wrapped by the error ParseMBR returns for a sector that is
// not a master boot record with a partition table.
var ErrNoMBR = errors.New("no MBR partition table")

// Partition is one entry of an MBR partition table, primary (numbers 1-4)
// or logical (5 on, in the chain of extended boot records).
type Partition struct {
	// Number is the partition's number as Linux names it (sda1 ... sda4,
	// sda5 for the first logical partition).
	Number int `json:"number"`
	// Type is the system ID byte (0x83 Linux, 0x0e FAT16 LBA, 0x05
	// extended, ...).
	Type byte `json:"type"`
	// TypeName is fdisk's name for Type ("" when unknown).
	TypeName string `json:"type_name,omitempty"`
	// Bootable is the active flag (status byte 0x80).
	Bootable bool `json:"bootable"`
	// Start and Sectors are the first sector (LBA, from the start of the
	// disk) and the length in SectorSize sectors.
	Start   uint64 `json:"start"`
	Sectors uint64 `json:"sectors"`
}

// MarshalJSON writes the type as sfdisk-style hex ("0x83"), and the
// offset and size in bytes besides the sectors.
func (p Partition) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Number   int    `json:"number"`
		Type     string `json:"type"`
		TypeName string `json:"type_name,omitempty"`
		Bootable bool   `json:"bootable"`
		Start    uint64 `json:"start"`
		Sectors  uint64 `json:"sectors"`
		Offset   int64  `json:"offset"`
		Size     int64  `json:"size"`
	}{p.Number, fmt.Sprintf("0x%02x", p.Type), p.TypeName, p.Bootable, p.Start, p.Sectors, p.Offset(), p.Size()})
}

// Extended reports whether p is a container for logical partitions.
func (p Partition) Extended() bool { return isExtended(p.Type) }

// Offset is the partition's first byte in the image.
func (p Partition) Offset() int64 { return int64(p.Start) * SectorSize }

// Size is the partition's length in bytes.
func (p Partition) Size() int64 { return int64(p.Sectors) * SectorSize }

// Table is a disk's MBR partition table.
type Table struct {
	// Label is "dos" for an MBR table, "gpt" for a protective MBR in front
	// of a GUID partition table (not read here: see ParseGPT and
	// Info.GPT).
	Label string `json:"label"`
	// DiskID is the 32-bit disk signature at offset 440, as sfdisk prints
	// it ("0x12345678").
	DiskID string `json:"disk_id"`
	// BootCode says whether the first 440 bytes hold boot code (any
	// non-zero byte), such as syslinux's mbr.bin.
	BootCode bool `json:"boot_code"`
	// Partitions in number order: the primary entries that are used,
	// then the logical ones.
	Partitions []Partition `json:"partitions"`
	// Notes are findings that did not stop the parse: a chain of extended
	// boot records that ends early, a partition past the image's end.
	Notes []string `json:"notes,omitempty"`
}

// ParseMBR reads the partition table of a disk's first sector (at least
// SectorSize bytes; more are ignored). Extended partitions are listed as
// they are; ReadTable also follows them to the logical partitions.
//
// A sector without the 0x55AA signature, or whose entries have a status
// byte other than 0x00 or 0x80 (a filesystem's boot sector, which also
// ends in 0x55AA), is an error wrapping ErrNoMBR.
func ParseMBR(sector []byte) (*Table, error) {
	if len(sector) < SectorSize {
		return nil, fmt.Errorf("%w: %d bytes, a sector is %d", ErrNoMBR, len(sector), SectorSize)
	}
	if sector[mbrSignature] != 0x55 || sector[mbrSignature+1] != 0xAA {
		return nil, fmt.Errorf("%w: no 0x55AA signature at offset 510 (a blank disk, or not a disk image)", ErrNoMBR)
	}
	entries, err := parseEntries(sector)
	if looksLikeFAT(sector) && (err != nil || entries == [4]Partition{}) {
		// As Linux's msdos partition parser: a FAT boot sector whose
		// table is empty or invalid is a file system, not a table.
		return nil, fmt.Errorf("%w: the first sector is a FAT boot sector (a file system image without a partition table?)", ErrNoMBR)
	}
	if err != nil {
		return nil, err
	}
	t := &Table{
		Label:    "dos",
		DiskID:   fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(sector[mbrDiskID:])),
		BootCode: !allZero(sector[:mbrBootCode]),
	}
	for i, e := range entries {
		if e.Type == 0 {
			continue
		}
		e.Number = i + 1
		if e.Type == 0xEE {
			t.Label = "gpt"
		}
		t.Partitions = append(t.Partitions, e)
	}
	if t.Label == "gpt" {
		t.Notes = append(t.Notes, noteProtective)
	}
	return t, nil
}

// parseEntries decodes the four 16-byte entries of an MBR or EBR.
func parseEntries(sector []byte) ([4]Partition, error) {
	var out [4]Partition
	for i := range out {
		e := sector[mbrTable+i*mbrEntrySize : mbrTable+(i+1)*mbrEntrySize]
		status := e[0]
		if status != 0x00 && status != 0x80 {
			return out, fmt.Errorf("%w: entry %d has status byte 0x%02x (want 0x00 or 0x80)", ErrNoMBR, i+1, status)
		}
		out[i] = Partition{
			Type:     e[4],
			TypeName: TypeName(e[4]),
			Bootable: status == 0x80,
			Start:    uint64(binary.LittleEndian.Uint32(e[8:12])),
			Sectors:  uint64(binary.LittleEndian.Uint32(e[12:16])),
		}
	}
	return out, nil
}

// looksLikeFAT recognizes a FAT boot sector: a jump instruction and a
// "FAT" file system type string.
func looksLikeFAT(s []byte) bool {
	if s[0] != 0xEB && s[0] != 0xE9 {
		return false
	}
	return string(s[0x36:0x39]) == "FAT" || string(s[0x52:0x55]) == "FAT"
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

// ReadTable reads the partition table of the disk image r: the MBR's
// primary entries, then the logical partitions in the chain of extended
// boot records (at most MaxLogical; a chain that loops, leaves the
// extended partition or has a bad EBR ends with a note).
func ReadTable(r io.ReaderAt) (*Table, error) {
	buf := make([]byte, SectorSize)
	if _, err := r.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read the first sector: %w", err)
	}
	tr, err := newTableReader(buf)
	if err != nil {
		return nil, err
	}
	for {
		lba, ok := tr.want()
		if !ok {
			break
		}
		if _, err := r.ReadAt(buf, int64(lba)*SectorSize); err != nil {
			tr.fail(fmt.Sprintf("extended boot record at sector %d cannot be read (%v): logical partitions from there on are not listed", lba, err))
			continue
		}
		tr.feed(buf)
	}
	return tr.t, nil
}

// tableReader walks the extended boot record chain one sector at a time,
// so that a stream (a compressed image) can feed it sectors as they pass:
// want names the next sector it needs, feed gives it.
type tableReader struct {
	t        *Table
	extStart uint64 // first sector of the extended partition, 0 = none
	extEnd   uint64 // its end (exclusive)
	next     uint64 // next EBR to read, 0 = done
	seen     map[uint64]bool
	number   int
}

// newTableReader parses the MBR and finds the extended partition (the
// first, as Linux does).
func newTableReader(sector []byte) (*tableReader, error) {
	t, err := ParseMBR(sector)
	if err != nil {
		return nil, err
	}
	tr := &tableReader{t: t, seen: map[uint64]bool{}, number: 4}
	if t.Label != "dos" {
		return tr, nil
	}
	for _, p := range t.Partitions {
		if p.Extended() && p.Start > 0 {
			tr.extStart, tr.extEnd, tr.next = p.Start, p.Start+p.Sectors, p.Start
			break
		}
	}
	return tr, nil
}

// want returns the next sector the reader needs, if any.
func (tr *tableReader) want() (uint64, bool) { return tr.next, tr.next != 0 }

// fail ends the chain with a note.
func (tr *tableReader) fail(note string) {
	tr.t.Notes = append(tr.t.Notes, note)
	tr.next = 0
}

// feed takes the sector want asked for: one extended boot record. Its
// first entry is a logical partition (start relative to the EBR), its
// second links the next EBR (start relative to the extended partition).
func (tr *tableReader) feed(sector []byte) {
	lba := tr.next
	tr.seen[lba] = true
	if len(sector) < SectorSize || sector[mbrSignature] != 0x55 || sector[mbrSignature+1] != 0xAA {
		tr.fail(fmt.Sprintf("extended boot record at sector %d has no 0x55AA signature: logical partitions from there on are not listed", lba))
		return
	}
	entries, err := parseEntries(sector)
	if err != nil {
		tr.fail(fmt.Sprintf("extended boot record at sector %d: %v", lba, err))
		return
	}
	if l := entries[0]; l.Type != 0 && l.Sectors > 0 {
		tr.number++
		l.Number = tr.number
		l.Start += lba
		tr.t.Partitions = append(tr.t.Partitions, l)
	}
	link := entries[1]
	switch {
	case link.Type == 0 || link.Start == 0:
		tr.next = 0
	case !isExtended(link.Type):
		tr.fail(fmt.Sprintf("extended boot record at sector %d links to a partition of type 0x%02x, not an extended one: the chain ends there", lba, link.Type))
	case tr.number-4 >= MaxLogical:
		tr.fail(fmt.Sprintf("more than %d logical partitions: the rest are not listed", MaxLogical))
	default:
		next := tr.extStart + link.Start
		if next < tr.extStart || next >= tr.extEnd || tr.seen[next] {
			tr.fail(fmt.Sprintf("extended boot record at sector %d links to sector %d, outside the extended partition or already read: the chain ends there", lba, next))
			return
		}
		tr.next = next
	}
}

// checkBounds notes partitions that end past an image of size bytes.
func (t *Table) checkBounds(size int64) {
	for _, p := range t.Partitions {
		if p.Extended() {
			continue
		}
		if end := p.Offset() + p.Size(); end > size {
			t.Notes = append(t.Notes, fmt.Sprintf("partition %d ends at byte %d, past the image's end (%d): the image is truncated, or was taken from a smaller disk", p.Number, end, size))
		}
	}
}

// TypeName returns fdisk's name for an MBR partition type, "" when it is
// not one herd knows.
func TypeName(t byte) string {
	return typeNames[t]
}

var typeNames = map[byte]string{
	0x01: "FAT12",
	0x04: "FAT16 <32M",
	0x05: "Extended",
	0x06: "FAT16",
	0x07: "HPFS/NTFS/exFAT",
	0x0b: "W95 FAT32",
	0x0c: "W95 FAT32 (LBA)",
	0x0e: "W95 FAT16 (LBA)",
	0x0f: "W95 Ext'd (LBA)",
	0x11: "Hidden FAT12",
	0x12: "Compaq diagnostics",
	0x1b: "Hidden W95 FAT32",
	0x1c: "Hidden W95 FAT32 (LBA)",
	0x1e: "Hidden W95 FAT16 (LBA)",
	0x27: "Hidden NTFS WinRE",
	0x42: "SFS",
	0x82: "Linux swap / Solaris",
	0x83: "Linux",
	0x85: "Linux extended",
	0x8e: "Linux LVM",
	0xa5: "FreeBSD",
	0xa6: "OpenBSD",
	0xa9: "NetBSD",
	0xee: "GPT",
	0xef: "EFI (FAT-12/16/32)",
	0xfd: "Linux raid autodetect",
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
