package qemutests

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf16"
)

// The layout of OVMF's variable store (its VARS file) as EDK2 writes it:
// a firmware volume header, then a variable store header (authenticated
// variables, the format of Debian's OVMF_VARS_4M.fd), then variables, each
// an AUTHENTICATED_VARIABLE_HEADER (60 bytes), its UTF-16 name and its
// data, 4-byte aligned (EDK2 MdeModulePkg/Include/Guid/VariableFormat.h).
const (
	varStartID  = 0x55aa
	varAdded    = 0x3f // State of a live variable
	varDeleted  = 0xfd // State &= varDeleted marks it deleted
	varHeader   = 60
	varStoreHdr = 28
	fvHeaderLen = 0x30 // offset of the FV header's HeaderLength
	efiAttrs    = 7    // NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
)

// efiGlobal is EFI_GLOBAL_VARIABLE (8be4df61-93ca-11d2-aa0d-00e098032b8c)
// as stored.
var efiGlobal = []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}

// BootOption is one Boot#### variable of a UEFI node's variable store.
type BootOption struct {
	// Num is #### (Boot0002 is 2).
	Num uint16
	// Description is the option's name as the boot manager shows it,
	// e.g. "UEFI PXEv4 (MAC:525400252021)".
	Description string
	// Active is LOAD_OPTION_ACTIVE.
	Active bool
}

func (o BootOption) String() string { return fmt.Sprintf("Boot%04X %q", o.Num, o.Description) }

// efiVar is one live variable of the store and where its record is.
type efiVar struct {
	name string
	guid []byte
	data []byte
	off  int
}

// readVars returns the store's live variables and the offset after the
// last record.
func readVars(store []byte) ([]efiVar, int, error) {
	if len(store) < fvHeaderLen+2 {
		return nil, 0, errors.New("not an OVMF variable store: too short")
	}
	off := int(binary.LittleEndian.Uint16(store[fvHeaderLen:])) + varStoreHdr
	off = (off + 3) &^ 3
	var vars []efiVar
	for off+varHeader <= len(store) && binary.LittleEndian.Uint16(store[off:]) == varStartID {
		ns := int(binary.LittleEndian.Uint32(store[off+36:]))
		ds := int(binary.LittleEndian.Uint32(store[off+40:]))
		end := off + varHeader + ns + ds
		if end > len(store) || ns%2 != 0 {
			return nil, 0, fmt.Errorf("variable at %#x: sizes %d+%d beyond the store", off, ns, ds)
		}
		if store[off+2] == varAdded {
			name := store[off+varHeader : off+varHeader+ns]
			vars = append(vars, efiVar{name: utf16String(name), guid: store[off+44 : off+60],
				data: store[off+varHeader+ns : end], off: off})
		}
		off = (end + 3) &^ 3
	}
	return vars, off, nil
}

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return strings.TrimRight(string(utf16.Decode(u)), "\x00")
}

func utf16Bytes(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

// BootOrder reads a UEFI node's variable store (stop its VM first, or
// accept a snapshot) and returns the options of its BootOrder, in that
// order.
func (n Node) BootOrder() ([]BootOption, error) {
	if n.Vars == "" {
		return nil, fmt.Errorf("node %s: no UEFI variable store (%v)", n.Name, n.Firmware)
	}
	store, err := os.ReadFile(n.Vars)
	if err != nil {
		return nil, err
	}
	vars, _, err := readVars(store)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Vars, err)
	}
	opts := map[uint16]BootOption{}
	var order []uint16
	for _, v := range vars {
		if !bytes.Equal(v.guid, efiGlobal) {
			continue
		}
		var num uint16
		switch {
		case v.name == "BootOrder":
			order = order[:0]
			for i := 0; i+1 < len(v.data); i += 2 {
				order = append(order, binary.LittleEndian.Uint16(v.data[i:]))
			}
		case len(v.name) == 8 && v.name[:4] == "Boot":
			if _, err := fmt.Sscanf(v.name[4:], "%04X", &num); err != nil || len(v.data) < 6 {
				continue
			}
			attr := binary.LittleEndian.Uint32(v.data)
			desc := v.data[6:]
			for i := 0; i+1 < len(desc); i += 2 {
				if desc[i] == 0 && desc[i+1] == 0 {
					desc = desc[:i]
					break
				}
			}
			opts[num] = BootOption{Num: num, Description: utf16String(desc), Active: attr&1 != 0}
		}
	}
	var out []BootOption
	for _, num := range order {
		o, ok := opts[num]
		if !ok {
			o = BootOption{Num: num, Description: "(no such Boot####)"}
		}
		out = append(out, o)
	}
	return out, nil
}

// AddDiskBootOption writes Boot<num> into a UEFI node's variable store,
// an active option named desc that loads file (e.g.
// `\EFI\debian\grubx64.efi`) from GPT partition part of the node's disk
// (its unique GUID as sfdisk prints it, first sector and size in
// sectors), as the short-form HD()/File() device path efibootmgr writes;
// and puts it first in BootOrder. That is what an installed system's
// bootloader installation does. The VM must not run.
func (n Node) AddDiskBootOption(num uint16, desc string, part int, guid string, start, size uint64, file string) error {
	store, err := os.ReadFile(n.Vars)
	if err != nil {
		return err
	}
	vars, end, err := readVars(store)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Vars, err)
	}
	sig, err := guidBytes(guid)
	if err != nil {
		return err
	}
	// HD(part, GPT, guid, start, size)/File(file)/End (UEFI 2.10 §10.3.5).
	var dp []byte
	dp = append(dp, 4, 1, 42, 0)
	dp = binary.LittleEndian.AppendUint32(dp, uint32(part))
	dp = binary.LittleEndian.AppendUint64(dp, start)
	dp = binary.LittleEndian.AppendUint64(dp, size)
	dp = append(dp, sig...)
	dp = append(dp, 2, 2) // GPT, GUID signature
	path := utf16Bytes(file)
	dp = append(dp, 4, 4)
	dp = binary.LittleEndian.AppendUint16(dp, uint16(4+len(path)))
	dp = append(dp, path...)
	dp = append(dp, 0x7f, 0xff, 4, 0)
	opt := binary.LittleEndian.AppendUint32(nil, 1) // LOAD_OPTION_ACTIVE
	opt = binary.LittleEndian.AppendUint16(opt, uint16(len(dp)))
	opt = append(opt, utf16Bytes(desc)...)
	opt = append(opt, dp...)

	order := binary.LittleEndian.AppendUint16(nil, num)
	for _, v := range vars {
		if v.name == "BootOrder" && bytes.Equal(v.guid, efiGlobal) {
			for i := 0; i+1 < len(v.data); i += 2 {
				if k := binary.LittleEndian.Uint16(v.data[i:]); k != num {
					order = binary.LittleEndian.AppendUint16(order, k)
				}
			}
		}
		if (v.name == "BootOrder" || v.name == fmt.Sprintf("Boot%04X", num)) && bytes.Equal(v.guid, efiGlobal) {
			store[v.off+2] &= varDeleted
		}
	}
	for _, v := range []struct {
		name string
		data []byte
	}{{fmt.Sprintf("Boot%04X", num), opt}, {"BootOrder", order}} {
		name := utf16Bytes(v.name)
		rec := binary.LittleEndian.AppendUint16(nil, varStartID)
		rec = append(rec, varAdded, 0)
		rec = binary.LittleEndian.AppendUint32(rec, efiAttrs)
		rec = append(rec, make([]byte, 8+16+4)...) // MonotonicCount, TimeStamp, PubKeyIndex
		rec = binary.LittleEndian.AppendUint32(rec, uint32(len(name)))
		rec = binary.LittleEndian.AppendUint32(rec, uint32(len(v.data)))
		rec = append(rec, efiGlobal...)
		rec = append(rec, name...)
		rec = append(rec, v.data...)
		if end+len(rec) > len(store) || !allFF(store[end:end+len(rec)]) {
			return fmt.Errorf("%s: no room for %s", n.Vars, v.name)
		}
		copy(store[end:], rec)
		end = (end + len(rec) + 3) &^ 3
	}
	return os.WriteFile(n.Vars, store, 0o644)
}

func allFF(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// guidBytes encodes a GUID ("BB50B9D3-FE94-E241-821E-AD6261DC34C8") as
// EFI stores it: the first three fields little-endian.
func guidBytes(s string) ([]byte, error) {
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || strings.Count(s, "-") != 4 {
		return nil, fmt.Errorf("GUID %q: want 8-4-4-4-12 hex digits", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("GUID %q: %w", s, err)
	}
	return []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}, nil
}
