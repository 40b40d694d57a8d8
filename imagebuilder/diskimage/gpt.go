package diskimage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/herdproject/herd/agent/efivar"
)

// GUID partition table layout (UEFI 2.10 §5.3.2, §5.3.3): the primary
// header is at LBA 1, its entry array usually at LBA 2 to 33.
const (
	gptSignature  = "EFI PART"
	gptHeaderLBA  = 1
	gptMinHeader  = 92 // the fields of revision 1.0
	gptMinEntry   = 128
	gptMaxEntry   = 4096                            // sane bound: the spec allows 128 * 2^n
	gptNameOffset = 56                              // PartitionName in an entry
	gptNameBytes  = 72                              // 36 UTF-16LE code units
	gptRevision   = 0x00010000                      // Revision of UEFI 2.x headers
	gptHeadBytes  = SectorSize * (gptHeaderLBA + 1) // MBR and header
)

// MaxGPTEntryBytes bounds the partition entry array ParseGPT reads
// (NumEntries * EntrySize): 128 entries of 128 bytes take 16 KiB.
const MaxGPTEntryBytes = 1 << 20

// HeadBytes is how much of an image's start Inspect keeps to read its GPT
// (header at byte 512, entries usually from byte 1024).
const HeadBytes = 1 << 20

// Partition type GUIDs (UEFI 2.10 §5.3.3; the Discoverable Partitions
// Specification; GRUB's BIOS boot partition), as sfdisk prints them.
const (
	GUIDESP                = efivar.ESPType
	GUIDBIOSBoot           = "21686148-6449-6E6F-744E-656564454649"
	GUIDLinuxFilesystem    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	GUIDLinuxSwap          = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	GUIDLinuxLVM           = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	GUIDLinuxRAID          = "A19D880F-05FC-4D3B-A006-743F0F84911E"
	GUIDMicrosoftBasicData = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
	GUIDLinuxRootX86_64    = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
)

var gptTypeNames = map[string]string{
	GUIDESP:                "EFI System",
	GUIDBIOSBoot:           "BIOS boot",
	GUIDLinuxFilesystem:    "Linux filesystem",
	GUIDLinuxSwap:          "Linux swap",
	GUIDLinuxLVM:           "Linux LVM",
	GUIDLinuxRAID:          "Linux RAID",
	GUIDMicrosoftBasicData: "Microsoft basic data",
	GUIDLinuxRootX86_64:    "Linux root (x86-64)",
}

// GPTTypeName returns sfdisk's name for a partition type GUID (any case),
// "" when it is not one herd knows.
func GPTTypeName(guid string) string { return gptTypeNames[strings.ToUpper(guid)] }

// Errors ParseGPT wraps.
var (
	// ErrNoGPT: there is no GPT header ("EFI PART") at LBA 1.
	ErrNoGPT = errors.New("no GPT header")
	// ErrBadGPT: there is one, but it or its entry array is damaged,
	// cut off or out of bounds, so the partitions cannot be trusted.
	ErrBadGPT = errors.New("damaged GPT")
)

// GPTHeader holds the fields of a GPT header (UEFI 2.10 table 5.5).
type GPTHeader struct {
	// Revision is 0x00010000 (1.0) for UEFI 2.x.
	Revision uint32 `json:"revision"`
	// HeaderSize is the bytes HeaderCRC32 covers (92 for 1.0).
	HeaderSize uint32 `json:"header_size"`
	// HeaderCRC32 is the header's CRC32, computed with this field zeroed.
	HeaderCRC32 uint32 `json:"header_crc32"`
	// CurrentLBA is where this header is (1 for the primary);
	// BackupLBA where its backup is (the disk's last sector).
	CurrentLBA uint64 `json:"current_lba"`
	BackupLBA  uint64 `json:"backup_lba"`
	// FirstUsableLBA and LastUsableLBA bound the partitions (inclusive).
	FirstUsableLBA uint64 `json:"first_usable_lba"`
	LastUsableLBA  uint64 `json:"last_usable_lba"`
	// DiskGUID identifies the disk, upper-case as sfdisk prints it.
	DiskGUID string `json:"disk_guid"`
	// EntriesLBA is the first sector of the partition entry array, of
	// NumEntries entries of EntrySize bytes with CRC32 EntriesCRC32.
	EntriesLBA   uint64 `json:"entries_lba"`
	NumEntries   uint32 `json:"num_entries"`
	EntrySize    uint32 `json:"entry_size"`
	EntriesCRC32 uint32 `json:"entries_crc32"`
}

// GPT is a disk's GUID partition table, read from its primary header and
// entry array.
type GPT struct {
	GPTHeader
	// Partitions are the used entries (type GUID not zero), in entry
	// order.
	Partitions []GPTPartition `json:"partitions"`
	// Notes are findings that did not stop the parse: partitions outside
	// the usable sectors or overlapping, a backup header that is not at
	// the image's last sector.
	Notes []string `json:"notes,omitempty"`
}

// Partition attribute bits (UEFI 2.10 table 5.7).
const (
	GPTAttrRequired           = 1 << 0
	GPTAttrNoBlockIOProtocol  = 1 << 1
	GPTAttrLegacyBIOSBootable = 1 << 2
)

// GPTPartition is one used entry of a GPT.
type GPTPartition struct {
	// Number is the entry's index in the array plus one: Linux's
	// partition number (sda1 is entry 0).
	Number int `json:"number"`
	// TypeGUID is the partition type, TypeName sfdisk's name for it (""
	// when unknown).
	TypeGUID string `json:"type"`
	TypeName string `json:"type_name,omitempty"`
	// GUID is the partition's unique GUID (PARTUUID).
	GUID string `json:"guid"`
	// Start is the first sector, Sectors the count (EndingLBA - Start + 1)
	// of SectorSize sectors.
	Start   uint64 `json:"start"`
	Sectors uint64 `json:"sectors"`
	// Attributes are the entry's attribute bits (GPTAttrRequired, ...;
	// bits 48-63 belong to the partition type).
	Attributes uint64 `json:"attributes"`
	// Name is the partition's name (PARTLABEL), decoded from UTF-16LE.
	Name string `json:"name"`
}

// Offset is the partition's first byte in the image.
func (p GPTPartition) Offset() int64 { return int64(p.Start) * SectorSize }

// Size is the partition's length in bytes.
func (p GPTPartition) Size() int64 { return int64(p.Sectors) * SectorSize }

// Attrs spells the attributes as sfdisk does ("RequiredPartition
// LegacyBIOSBootable GUID:60,63"); "" for none.
func (p GPTPartition) Attrs() string {
	var words []string
	for _, a := range []struct {
		bit  uint64
		name string
	}{{GPTAttrRequired, "RequiredPartition"}, {GPTAttrNoBlockIOProtocol, "NoBlockIOProtocol"}, {GPTAttrLegacyBIOSBootable, "LegacyBIOSBootable"}} {
		if p.Attributes&a.bit != 0 {
			words = append(words, a.name)
		}
	}
	var bits []string
	for b := 3; b < 64; b++ {
		if p.Attributes&(1<<b) != 0 {
			bits = append(bits, strconv.Itoa(b))
		}
	}
	if len(bits) > 0 {
		words = append(words, "GUID:"+strings.Join(bits, ","))
	}
	return strings.Join(words, " ")
}

// MarshalJSON writes the attributes as hex ("0x8000000000000004": 64 bits
// do not fit a JSON number exactly) and as sfdisk spells them, and the
// offset and size in bytes besides the sectors.
func (p GPTPartition) MarshalJSON() ([]byte, error) {
	type plain GPTPartition // its fields, without this method
	return json.Marshal(struct {
		plain
		Offset     int64  `json:"offset"`
		Size       int64  `json:"size"`
		Attributes string `json:"attributes"` // shadows plain's
		Attrs      string `json:"attrs,omitempty"`
	}{plain(p), p.Offset(), p.Size(), fmt.Sprintf("0x%016x", p.Attributes), p.Attrs()})
}

// Find returns the first partition of the given type GUID (any case).
func (g *GPT) Find(typeGUID string) (GPTPartition, bool) {
	if g == nil {
		return GPTPartition{}, false
	}
	for _, p := range g.Partitions {
		if strings.EqualFold(p.TypeGUID, typeGUID) {
			return p, true
		}
	}
	return GPTPartition{}, false
}

// ESP returns the first EFI System Partition.
func (g *GPT) ESP() (GPTPartition, bool) { return g.Find(GUIDESP) }

// BIOSBoot returns the first BIOS boot partition (GRUB's core.img).
func (g *GPT) BIOSBoot() (GPTPartition, bool) { return g.Find(GUIDBIOSBoot) }

// formatGUID formats the 16 on-disk (mixed-endian) bytes of a GUID in the
// upper-case form sfdisk prints; "" for fewer bytes.
func formatGUID(b []byte) string {
	if len(b) < 16 {
		return ""
	}
	return strings.ToUpper(efivar.FormatGUID([16]byte(b[:16])))
}

// ParseGPT reads the primary GUID partition table from the first bytes
// of a disk image, b: at least the header at byte 512 and the entry
// array where the header puts it (Inspect keeps the first HeadBytes).
// The header's signature, size, CRC32, own LBA, usable range and entry
// geometry, and the entry array's CRC32 are checked (UEFI 2.10 §5.3.2).
// ParseGPT does not look for the protective MBR, nor at the backup
// header.
//
// No header is an error wrapping ErrNoGPT; a damaged header or entry
// array, or one cut off by the end of b, an error wrapping ErrBadGPT.
func ParseGPT(b []byte) (*GPT, error) {
	return parseGPT(b, fmt.Sprintf("the %d bytes given", len(b)))
}

// parseGPT is ParseGPT; end names what ends at len(b) in errors.
func parseGPT(b []byte, end string) (*GPT, error) {
	if len(b) < gptHeadBytes {
		return nil, fmt.Errorf("%w: the header at byte %d is past %s", ErrNoGPT, gptHeaderLBA*SectorSize, end)
	}
	h, err := parseGPTHeader(b[gptHeaderLBA*SectorSize : gptHeadBytes])
	if err != nil {
		return nil, err
	}
	g := &GPT{GPTHeader: h}
	if h.Revision>>16 != gptRevision>>16 {
		g.Notes = append(g.Notes, fmt.Sprintf("header revision %d.%d: herd knows 1.0", h.Revision>>16, h.Revision&0xffff))
	}

	// The entry array: within b, within the sane limit, matching its CRC.
	arrayBytes := uint64(h.NumEntries) * uint64(h.EntrySize) // both 32-bit: no overflow
	if arrayBytes > MaxGPTEntryBytes {
		return nil, fmt.Errorf("%w: %d entries of %d bytes make %d bytes, more than herd reads (%d)", ErrBadGPT, h.NumEntries, h.EntrySize, arrayBytes, MaxGPTEntryBytes)
	}
	if h.EntriesLBA > uint64(len(b))/SectorSize {
		return nil, fmt.Errorf("%w: the partition entries at sector %d are past %s", ErrBadGPT, h.EntriesLBA, end)
	}
	off := h.EntriesLBA * SectorSize
	if off+arrayBytes > uint64(len(b)) {
		return nil, fmt.Errorf("%w: the partition entries, bytes %d to %d, are cut off by %s", ErrBadGPT, off, off+arrayBytes, end)
	}
	array := b[off : off+arrayBytes]
	if sum := crc32.ChecksumIEEE(array); sum != h.EntriesCRC32 {
		return nil, fmt.Errorf("%w: the partition entries' CRC32 is 0x%08x, the header says 0x%08x (entries damaged or overwritten)", ErrBadGPT, sum, h.EntriesCRC32)
	}
	if arraySectors := (arrayBytes + SectorSize - 1) / SectorSize; h.EntriesLBA+arraySectors > h.FirstUsableLBA {
		g.Notes = append(g.Notes, fmt.Sprintf("the partition entries (sectors %d to %d) reach into the usable sectors (from %d)", h.EntriesLBA, h.EntriesLBA+arraySectors-1, h.FirstUsableLBA))
	}

	for i := uint32(0); i < h.NumEntries; i++ {
		e := array[uint64(i)*uint64(h.EntrySize):][:h.EntrySize]
		if allZero(e[0:16]) {
			continue
		}
		first, last := binary.LittleEndian.Uint64(e[32:40]), binary.LittleEndian.Uint64(e[40:48])
		n := int(i) + 1
		if last < first {
			g.Notes = append(g.Notes, fmt.Sprintf("entry %d ends (sector %d) before it starts (sector %d): not listed", n, last, first))
			continue
		}
		p := GPTPartition{
			Number:     n,
			TypeGUID:   formatGUID(e[0:16]),
			GUID:       formatGUID(e[16:32]),
			Start:      first,
			Sectors:    last - first + 1,
			Attributes: binary.LittleEndian.Uint64(e[48:56]),
			Name:       decodeName(e[gptNameOffset : gptNameOffset+gptNameBytes]),
		}
		p.TypeName = GPTTypeName(p.TypeGUID)
		if first < h.FirstUsableLBA || last > h.LastUsableLBA {
			g.Notes = append(g.Notes, fmt.Sprintf("partition %d (sectors %d to %d) is outside the usable sectors %d to %d", n, first, last, h.FirstUsableLBA, h.LastUsableLBA))
		}
		g.Partitions = append(g.Partitions, p)
	}
	g.Notes = append(g.Notes, overlaps(g.Partitions)...)
	return g, nil
}

// parseGPTHeader decodes and checks a GPT header sector.
func parseGPTHeader(s []byte) (GPTHeader, error) {
	if string(s[0:8]) != gptSignature {
		return GPTHeader{}, fmt.Errorf("%w: no %q signature at byte %d", ErrNoGPT, gptSignature, gptHeaderLBA*SectorSize)
	}
	h := GPTHeader{
		Revision:       binary.LittleEndian.Uint32(s[8:12]),
		HeaderSize:     binary.LittleEndian.Uint32(s[12:16]),
		HeaderCRC32:    binary.LittleEndian.Uint32(s[16:20]),
		CurrentLBA:     binary.LittleEndian.Uint64(s[24:32]),
		BackupLBA:      binary.LittleEndian.Uint64(s[32:40]),
		FirstUsableLBA: binary.LittleEndian.Uint64(s[40:48]),
		LastUsableLBA:  binary.LittleEndian.Uint64(s[48:56]),
		DiskGUID:       formatGUID(s[56:72]),
		EntriesLBA:     binary.LittleEndian.Uint64(s[72:80]),
		NumEntries:     binary.LittleEndian.Uint32(s[80:84]),
		EntrySize:      binary.LittleEndian.Uint32(s[84:88]),
		EntriesCRC32:   binary.LittleEndian.Uint32(s[88:92]),
	}
	if h.HeaderSize < gptMinHeader || h.HeaderSize > SectorSize {
		return h, fmt.Errorf("%w: header size %d (want %d to %d)", ErrBadGPT, h.HeaderSize, gptMinHeader, SectorSize)
	}
	hdr := make([]byte, h.HeaderSize)
	copy(hdr, s)
	clear(hdr[16:20])
	if sum := crc32.ChecksumIEEE(hdr); sum != h.HeaderCRC32 {
		return h, fmt.Errorf("%w: the header's CRC32 is 0x%08x, it says 0x%08x (header damaged or overwritten)", ErrBadGPT, sum, h.HeaderCRC32)
	}
	switch {
	case h.CurrentLBA != gptHeaderLBA:
		return h, fmt.Errorf("%w: the header at sector %d says it is at sector %d", ErrBadGPT, gptHeaderLBA, h.CurrentLBA)
	case h.FirstUsableLBA > h.LastUsableLBA:
		return h, fmt.Errorf("%w: first usable sector %d is after the last, %d", ErrBadGPT, h.FirstUsableLBA, h.LastUsableLBA)
	case h.EntrySize < gptMinEntry || h.EntrySize > gptMaxEntry || h.EntrySize&(h.EntrySize-1) != 0:
		return h, fmt.Errorf("%w: entry size %d (want 128 * 2^n, at most %d)", ErrBadGPT, h.EntrySize, gptMaxEntry)
	case h.EntriesLBA <= gptHeaderLBA:
		return h, fmt.Errorf("%w: the partition entries are at sector %d, over the MBR or the header", ErrBadGPT, h.EntriesLBA)
	}
	return h, nil
}

// decodeName decodes a UTF-16LE partition name up to its first NUL.
func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// overlaps notes the partitions that share sectors.
func overlaps(parts []GPTPartition) []string {
	s := append([]GPTPartition(nil), parts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Start < s[j].Start })
	var notes []string
	for i := 1; i < len(s); i++ {
		prev := s[i-1]
		if s[i].Start-prev.Start < prev.Sectors {
			notes = append(notes, fmt.Sprintf("partitions %d and %d overlap (at sector %d)", prev.Number, s[i].Number, s[i].Start))
		}
	}
	return notes
}

// checkBounds notes partitions that end past an image of size bytes, and
// a backup header that is not at the image's last sector (an image
// truncated, or taken from a disk of another size: sgdisk -e moves it).
func (g *GPT) checkBounds(size int64) {
	sectors := uint64(size) / SectorSize
	for _, p := range g.Partitions {
		if end := p.Start + p.Sectors; end > sectors || end < p.Start {
			g.Notes = append(g.Notes, fmt.Sprintf("partition %d ends at sector %d, past the image's end (%d sectors): the image is truncated, or was taken from a larger disk", p.Number, p.Start+p.Sectors, sectors))
		}
	}
	if sectors > 0 && g.BackupLBA != sectors-1 {
		g.Notes = append(g.Notes, fmt.Sprintf("the backup GPT header should be at the image's last sector, %d, the header says %d: the image is truncated, or was taken from a disk of another size", sectors-1, g.BackupLBA))
	}
}
