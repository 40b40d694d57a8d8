package efivar

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// LoadOptionActive is the LOAD_OPTION_ACTIVE attribute of a load option
// (UEFI 2.10 §3.1.3): the boot manager tries only active options.
const LoadOptionActive uint32 = 0x1

// Device path node types and subtypes (UEFI 2.10 §10.3).
const (
	dpTypeMedia       = 0x04
	dpSubHardDrive    = 0x01 // §10.3.5.1
	dpSubFilePath     = 0x04 // §10.3.5.4
	dpTypeEnd         = 0x7f
	dpSubEndInstance  = 0x01
	dpSubEndEntire    = 0xff
	hardDriveNodeLen  = 42
	hdPartitionGPT    = 0x02 // Partition Format: GUID Partition Table
	hdSignatureGUID   = 0x02 // Signature Type: GUID
	loadOptionHdrSize = 6    // Attributes + FilePathListLength
)

// HardDrive identifies a GPT partition for a Hard Drive Media Device Path
// node (UEFI 2.10 §10.3.5.1).
type HardDrive struct {
	Number uint32 // the partition number, from 1 (0 would mean the whole disk)
	Start  uint64 // the partition's first LBA, in 512-byte sectors
	Size   uint64 // the partition's length, in 512-byte sectors
	// PartUUID is the GPT partition's unique GUID in on-disk
	// (mixed-endian) byte order: ParseGUID of the PARTUUID blkid and
	// sfdisk print.
	PartUUID [16]byte
}

// LoadOption is a decoded Boot#### variable, an EFI_LOAD_OPTION (UEFI 2.10
// §3.1.3).
type LoadOption struct {
	Attributes  uint32 // LoadOptionActive and the other LOAD_OPTION_* bits
	Description string // shown by the firmware's boot menu
	// HardDrive is the first Hard Drive node of the first device path
	// that names a GPT partition by its GUID; nil if there is none (an
	// MBR Hard Drive node also gives nil).
	HardDrive *HardDrive
	// Path is the File Path node, e.g. `\EFI\BOOT\BOOTX64.EFI`; several
	// File Path nodes in a row are joined with `\`. "" if there is none.
	Path string
	// Raw is the whole variable data DecodeLoadOption read, including
	// any optional data after the device paths. EncodeLoadOption
	// ignores it.
	Raw []byte
}

// EncodeLoadOption returns the variable data of a Boot#### for o: the
// attributes, FilePathListLength, the NUL-terminated UCS-2 description,
// then one device path: a GPT Hard Drive node if o.HardDrive is set, a File
// Path node if o.Path is not empty, and the End node. It writes no
// optional data.
//
// It does not validate o: a Description or Path with a NUL, or one too
// long for the 16-bit lengths (about 32000 characters), does not decode
// back to o. AddBootEntry checks its arguments.
func EncodeLoadOption(o LoadOption) []byte {
	var dp []byte
	if hd := o.HardDrive; hd != nil {
		dp = append(dp, dpTypeMedia, dpSubHardDrive)
		dp = binary.LittleEndian.AppendUint16(dp, hardDriveNodeLen)
		dp = binary.LittleEndian.AppendUint32(dp, hd.Number)
		dp = binary.LittleEndian.AppendUint64(dp, hd.Start)
		dp = binary.LittleEndian.AppendUint64(dp, hd.Size)
		dp = append(dp, hd.PartUUID[:]...)
		dp = append(dp, hdPartitionGPT, hdSignatureGUID)
	}
	if o.Path != "" {
		name := appendUCS2(nil, o.Path)
		dp = append(dp, dpTypeMedia, dpSubFilePath)
		dp = binary.LittleEndian.AppendUint16(dp, uint16(4+len(name)))
		dp = append(dp, name...)
	}
	dp = append(dp, dpTypeEnd, dpSubEndEntire, 4, 0)

	b := binary.LittleEndian.AppendUint32(nil, o.Attributes)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dp)))
	b = appendUCS2(b, o.Description)
	return append(b, dp...)
}

// DecodeLoadOption decodes the data of a Boot#### variable. It reads the
// first device path of the FilePathList (up to its first End node) and
// keeps the optional data only in Raw. Errors wrap ErrMalformed.
func DecodeLoadOption(b []byte) (LoadOption, error) {
	if len(b) < loadOptionHdrSize {
		return LoadOption{}, fmt.Errorf("load option: %d bytes, want at least %d: %w", len(b), loadOptionHdrSize, ErrMalformed)
	}
	o := LoadOption{
		Attributes: binary.LittleEndian.Uint32(b),
		Raw:        bytes.Clone(b),
	}
	listLen := int(binary.LittleEndian.Uint16(b[4:]))
	desc, n, ok := cutUCS2(b[loadOptionHdrSize:])
	if !ok {
		return LoadOption{}, fmt.Errorf("load option: description is not NUL-terminated: %w", ErrMalformed)
	}
	o.Description = desc
	rest := b[loadOptionHdrSize+n:]
	if listLen > len(rest) {
		return LoadOption{}, fmt.Errorf("load option %q: FilePathListLength %d, but %d bytes follow the description: %w", desc, listLen, len(rest), ErrMalformed)
	}
	if err := o.decodeDevicePath(rest[:listLen]); err != nil {
		return LoadOption{}, fmt.Errorf("load option %q: %w", desc, err)
	}
	return o, nil
}

// decodeDevicePath walks the nodes of the first device path in dp and
// fills o.HardDrive and o.Path.
func (o *LoadOption) decodeDevicePath(dp []byte) error {
	for off := 0; off < len(dp); {
		if len(dp)-off < 4 {
			return fmt.Errorf("device path: %d bytes at offset %d, too short for a node header: %w", len(dp)-off, off, ErrMalformed)
		}
		typ, sub := dp[off], dp[off+1]
		n := int(binary.LittleEndian.Uint16(dp[off+2:]))
		if n < 4 || n > len(dp)-off {
			return fmt.Errorf("device path: node type %#x subtype %#x at offset %d: length %d, %d bytes left: %w", typ, sub, off, n, len(dp)-off, ErrMalformed)
		}
		node := dp[off+4 : off+n]
		switch {
		case typ == dpTypeEnd && (sub == dpSubEndEntire || sub == dpSubEndInstance):
			return nil
		case typ == dpTypeMedia && sub == dpSubHardDrive:
			if n != hardDriveNodeLen {
				return fmt.Errorf("device path: Hard Drive node of %d bytes, want %d: %w", n, hardDriveNodeLen, ErrMalformed)
			}
			if o.HardDrive == nil && node[36] == hdPartitionGPT && node[37] == hdSignatureGUID {
				hd := &HardDrive{
					Number: binary.LittleEndian.Uint32(node[0:]),
					Start:  binary.LittleEndian.Uint64(node[4:]),
					Size:   binary.LittleEndian.Uint64(node[12:]),
				}
				copy(hd.PartUUID[:], node[20:36])
				o.HardDrive = hd
			}
		case typ == dpTypeMedia && sub == dpSubFilePath:
			// The spec wants the name NUL-terminated; take the whole
			// node from firmware that leaves the NUL out.
			name, _, ok := cutUCS2(node)
			if !ok {
				name = decodeUCS2(node)
			}
			o.Path = joinPath(o.Path, name)
		}
		off += n
	}
	return fmt.Errorf("device path: no End node: %w", ErrMalformed)
}

// joinPath joins two File Path node names with one `\` between them.
func joinPath(a, b string) string {
	switch {
	case b == "":
		return a
	case a == "":
		return b
	case a[len(a)-1] == '\\' || b[0] == '\\':
		return a + b
	}
	return a + `\` + b
}

// appendUCS2 appends s as NUL-terminated little-endian UTF-16 (UCS-2 for
// the characters firmware displays).
func appendUCS2(b []byte, s string) []byte {
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, 0, 0)
}

// cutUCS2 decodes the NUL-terminated little-endian UTF-16 string at the
// start of b and returns it with the bytes it took including the NUL;
// ok is false if b has no NUL character.
func cutUCS2(b []byte) (s string, n int, ok bool) {
	for i := 0; i+1 < len(b); i += 2 {
		if b[i] == 0 && b[i+1] == 0 {
			return decodeUCS2(b[:i]), i + 2, true
		}
	}
	return "", 0, false
}

// decodeUCS2 decodes little-endian UTF-16 without a terminator, dropping
// an odd last byte.
func decodeUCS2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
