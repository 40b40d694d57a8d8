package efivar

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"unicode/utf16"
)

// ErrVerify is wrapped by AddBootEntry's error when a variable read back
// differs from what it wrote; the message names the variables and how
// they differ.
var ErrVerify = errors.New("read-back differs from what was written")

// maxPathLen bounds AddBootEntry's path, in UTF-16 code units: far more
// than a FAT path holds, far less than the 16-bit node length allows.
const maxPathLen = 4096

// BootName returns the name of load option n, "Boot" and four upper-case
// hex digits (UEFI 2.10 §3.3).
func BootName(n uint16) string { return fmt.Sprintf("Boot%04X", n) }

// BootOrder returns the BootOrder variable, the boot manager's list of
// Boot#### numbers to try; nil if the variable does not exist.
func (v Vars) BootOrder() ([]uint16, error) {
	_, data, err := v.Get("BootOrder")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(data)%2 != 0 {
		return nil, fmt.Errorf("BootOrder: %d bytes, want a list of 16-bit numbers: %w", len(data), ErrMalformed)
	}
	order := make([]uint16, len(data)/2)
	for i := range order {
		order[i] = binary.LittleEndian.Uint16(data[2*i:])
	}
	return order, nil
}

// BootNext returns the BootNext variable, the Boot#### number the firmware
// tries once at the next boot (and then deletes); ok is false if the
// variable does not exist.
func (v Vars) BootNext() (n uint16, ok bool, err error) { return v.uint16Var("BootNext") }

// uint16Var reads a variable holding one 16-bit number (BootNext,
// BootCurrent); ok is false if it does not exist.
func (v Vars) uint16Var(name string) (n uint16, ok bool, err error) {
	_, data, err := v.Get(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(data) != 2 {
		return 0, false, fmt.Errorf("%s: %d bytes, want 2: %w", name, len(data), ErrMalformed)
	}
	return binary.LittleEndian.Uint16(data), true, nil
}

// Boot reads and decodes load option n, the variable Boot####. A missing
// variable gives an error wrapping fs.ErrNotExist, a malformed one an
// error wrapping ErrMalformed.
func (v Vars) Boot(n uint16) (LoadOption, error) {
	_, data, err := v.Get(BootName(n))
	if err != nil {
		return LoadOption{}, err
	}
	o, err := DecodeLoadOption(data)
	if err != nil {
		return LoadOption{}, fmt.Errorf("%s: %w", BootName(n), err)
	}
	return o, nil
}

// Placement says where AddBootEntry puts its entry in BootOrder.
type Placement int

const (
	// First puts the entry first in BootOrder: the machine boots its
	// disk at every reset, and a reinstall needs BootNext set from the
	// installed system or by the BMC.
	First Placement = iota
	// AfterCurrent puts the entry right after BootCurrent, the option
	// this boot came from (for herd's agent: the network entry), so the
	// machine keeps booting through the network first, where herd
	// decides: the installer, or an iPXE `exit` that falls through to
	// the entry. When BootCurrent is missing or not in BootOrder, the
	// entry goes first (AddBootEntry says so in its result).
	AfterCurrent
)

// String names the placement as herd's messages do.
func (p Placement) String() string {
	switch p {
	case First:
		return "first"
	case AfterCurrent:
		return "after the current boot entry"
	}
	return fmt.Sprintf("Placement(%d)", int(p))
}

// Added is what AddBootEntry did.
type Added struct {
	// Number is the entry's Boot#### number.
	Number uint16
	// Order is BootOrder as written (and read back).
	Order []uint16
	// Current is BootCurrent (valid when HasCurrent).
	Current    uint16
	HasCurrent bool
	// First is true when AfterCurrent could not keep the current entry
	// ahead (no BootCurrent, or it is not in BootOrder) and the entry
	// went first.
	First bool
}

// AddBootEntry makes the file path (`\EFI\BOOT\BOOTX64.EFI`) on the GPT
// partition hd the next boot choice, under the menu name desc, and puts
// it in BootOrder as place says:
//
//   - it writes an active Boot#### load option, reusing the number of an
//     existing option with the same description, partition and path
//     (compared without case, as FAT does), else the lowest free number;
//   - it puts that number in BootOrder, first or right after BootCurrent,
//     removing it from other places;
//   - it sets BootNext to it, so that the next boot tries it whatever
//     the order;
//   - it reads the three variables back and compares them with what it
//     wrote.
//
// All three are written with BootAttrs; a variable that already holds the
// wanted value is not written again, to spare the firmware's flash. A
// read-back difference gives an error wrapping ErrVerify that names the
// variables, returned with the number.
func (v Vars) AddBootEntry(desc string, hd HardDrive, path string, place Placement) (Added, error) {
	var res Added
	if err := checkEntry(desc, hd, path); err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	opt := EncodeLoadOption(LoadOption{Attributes: LoadOptionActive, Description: desc, HardDrive: &hd, Path: path})
	n, err := v.bootNumber(desc, hd, path)
	if err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	res.Number = n
	if err := v.setIfChanged(BootName(n), opt); err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	old, err := v.BootOrder()
	if err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	if place == AfterCurrent {
		if res.Current, res.HasCurrent, err = v.BootCurrent(); err != nil {
			return res, fmt.Errorf("add boot entry %q: %w", desc, err)
		}
	}
	var at int
	res.Order, at = placeEntry(old, n, place, res.Current, res.HasCurrent)
	res.First = at == 0 && place == AfterCurrent
	if err := v.setIfChanged("BootOrder", encodeUint16s(res.Order)); err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	if err := v.setIfChanged("BootNext", encodeUint16s([]uint16{n})); err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	if err := v.verify(n, opt, res.Order); err != nil {
		return res, fmt.Errorf("add boot entry %q: %w", desc, err)
	}
	return res, nil
}

// placeEntry returns old with n removed and put back at the place asked
// for, and n's index in it: first, or right after cur when cur is valid,
// in old and not n itself.
func placeEntry(old []uint16, n uint16, place Placement, cur uint16, hasCur bool) ([]uint16, int) {
	rest := make([]uint16, 0, len(old)+1)
	for _, m := range old {
		if m != n {
			rest = append(rest, m)
		}
	}
	at := 0
	if place == AfterCurrent && hasCur && cur != n {
		for i, m := range rest {
			if m == cur {
				at = i + 1
				break
			}
		}
	}
	order := append(rest[:at:at], n)
	return append(order, rest[at:]...), at
}

// BootCurrent returns the BootCurrent variable, the Boot#### number this
// boot came from; ok is false if the variable does not exist.
func (v Vars) BootCurrent() (n uint16, ok bool, err error) { return v.uint16Var("BootCurrent") }

// checkEntry validates AddBootEntry's arguments.
func checkEntry(desc string, hd HardDrive, path string) error {
	switch {
	case desc == "" || strings.ContainsRune(desc, 0):
		return fmt.Errorf("description %q: want a non-empty name without NUL", desc)
	case hd.Number == 0:
		return errors.New("partition number 0: want the ESP's number, from 1")
	case hd.Size == 0:
		return fmt.Errorf("partition %d: size 0: want its length in 512-byte sectors", hd.Number)
	case hd.PartUUID == [16]byte{}:
		return fmt.Errorf("partition %d: zero PARTUUID: want the GPT partition's unique GUID", hd.Number)
	case !strings.HasPrefix(path, `\`) || strings.ContainsAny(path, "/\x00"):
		return fmt.Errorf("path %q: want an absolute path with backslashes, like \\EFI\\BOOT\\BOOTX64.EFI", path)
	case len(utf16.Encode([]rune(path))) > maxPathLen:
		return fmt.Errorf("path of %d characters: want at most %d", len(path), maxPathLen)
	}
	return nil
}

// bootNumber returns the number of an existing load option matching desc,
// hd and path, the lowest one if several match, else the lowest unused
// Boot#### number.
func (v Vars) bootNumber(desc string, hd HardDrive, path string) (uint16, error) {
	ents, err := os.ReadDir(v.dir())
	if err != nil {
		return 0, fmt.Errorf("list Boot#### variables: %w", err)
	}
	used := make(map[uint16]bool)
	match, found := uint16(0), false
	for _, e := range ents {
		n, ok := parseBootName(e.Name())
		if !ok {
			continue
		}
		used[n] = true
		o, err := v.Boot(n)
		if err != nil {
			// Unreadable or malformed: not ours, but its number
			// stays taken.
			continue
		}
		if o.Description == desc && o.HardDrive != nil && *o.HardDrive == hd &&
			strings.EqualFold(o.Path, path) && (!found || n < match) {
			match, found = n, true
		}
	}
	if found {
		return match, nil
	}
	for n := range 1 << 16 {
		if !used[uint16(n)] {
			return uint16(n), nil
		}
	}
	return 0, errors.New("all 65536 Boot#### numbers are taken: delete unused entries (efibootmgr -b XXXX -B)")
}

// parseBootName returns n for an efivarfs file name Boot####-GlobalGUID.
// It accepts lower-case hex digits, which some firmware writes.
func parseBootName(file string) (uint16, bool) {
	name, ok := strings.CutSuffix(strings.ToLower(file), "-"+GlobalGUID)
	if !ok || len(name) != 8 || !strings.HasPrefix(name, "boot") {
		return 0, false
	}
	n, err := strconv.ParseUint(name[4:], 16, 16)
	if err != nil {
		return 0, false
	}
	return uint16(n), true
}

// setIfChanged writes name with BootAttrs and data unless it already holds
// exactly that.
func (v Vars) setIfChanged(name string, data []byte) error {
	attrs, old, err := v.Get(name)
	if err == nil && attrs == BootAttrs && bytes.Equal(old, data) {
		return nil
	}
	return v.Set(name, BootAttrs, data)
}

// verify reads back Boot####, BootOrder and BootNext and compares them
// with what AddBootEntry wrote: the attributes BootAttrs, opt as the load
// option, order and n. A read error is returned as it is; differences
// are gathered into one error wrapping ErrVerify.
func (v Vars) verify(n uint16, opt []byte, order []uint16) error {
	var diffs []string
	check := func(name string, want []byte, show func([]byte) string) error {
		attrs, got, err := v.Get(name)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if attrs != BootAttrs {
			diffs = append(diffs, fmt.Sprintf("%s has attributes %#x, want %#x", name, attrs, BootAttrs))
		}
		if !bytes.Equal(got, want) {
			diffs = append(diffs, fmt.Sprintf("%s reads %s, want %s", name, show(got), show(want)))
		}
		return nil
	}
	showOption := func(b []byte) string {
		o, err := DecodeLoadOption(b)
		if err != nil {
			return fmt.Sprintf("%d bytes (%v)", len(b), err)
		}
		s := fmt.Sprintf("%d bytes (%q %s", len(b), o.Description, o.Path)
		if hd := o.HardDrive; hd != nil {
			s += fmt.Sprintf(" on partition %d %s start %d size %d", hd.Number, FormatGUID(hd.PartUUID), hd.Start, hd.Size)
		}
		return s + ")"
	}
	if err := check(BootName(n), opt, showOption); err != nil {
		return err
	}
	if err := check("BootOrder", encodeUint16s(order), showUint16s); err != nil {
		return err
	}
	if err := check("BootNext", encodeUint16s([]uint16{n}), showUint16s); err != nil {
		return err
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %s", ErrVerify, strings.Join(diffs, "; "))
	}
	return nil
}

// encodeUint16s returns the little-endian bytes of a BootOrder or BootNext.
func encodeUint16s(ns []uint16) []byte {
	b := make([]byte, 0, 2*len(ns))
	for _, n := range ns {
		b = binary.LittleEndian.AppendUint16(b, n)
	}
	return b
}

// showUint16s formats a BootOrder or BootNext value as efibootmgr does,
// "0001,0000"; an odd length as hex bytes.
func showUint16s(b []byte) string {
	if len(b)%2 != 0 {
		return fmt.Sprintf("%d bytes %s", len(b), hex.EncodeToString(b))
	}
	if len(b) == 0 {
		return "nothing"
	}
	s := make([]string, len(b)/2)
	for i := range s {
		s[i] = fmt.Sprintf("%04X", binary.LittleEndian.Uint16(b[2*i:]))
	}
	return strings.Join(s, ",")
}
