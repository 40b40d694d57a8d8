package efivar

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// espType is the EFI System Partition type GUID and its on-disk bytes.
const espType = ESPType

var espTypeBytes = [16]byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}

// unhex decodes hex bytes written with spaces, newlines and # comments.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustGUID(t testing.TB, s string) [16]byte {
	t.Helper()
	g, err := ParseGUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// writeVar writes a variable file the way efivarfs shows it.
func writeVar(t testing.TB, dir, name string, attrs uint32, data []byte) {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, attrs)
	if err := os.WriteFile(filepath.Join(dir, name+"-"+GlobalGUID), append(b, data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readFile returns the raw content of a variable file.
func readFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name+"-"+GlobalGUID))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGUID(t *testing.T) {
	for _, s := range []string{espType, strings.ToLower(espType)} {
		g, err := ParseGUID(s)
		if err != nil {
			t.Fatalf("ParseGUID(%q): %v", s, err)
		}
		if g != espTypeBytes {
			t.Errorf("ParseGUID(%q) = % x, want % x", s, g, espTypeBytes)
		}
	}
	if got, want := FormatGUID(espTypeBytes), strings.ToLower(espType); got != want {
		t.Errorf("FormatGUID = %q, want %q", got, want)
	}
	g := [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff}
	if back := mustGUID(t, FormatGUID(g)); back != g {
		t.Errorf("ParseGUID(FormatGUID(% x)) = % x", g, back)
	}
	for _, bad := range []string{
		"",
		"C12A7328F81F11D2BA4B00A0C93EC93B",
		"{C12A7328-F81F-11D2-BA4B-00A0C93EC93B}",
		"C12A7328-F81F-11D2-BA4B-00A0C93EC93",
		"C12A7328-F81F-11D2-BA4B_00A0C93EC93B",
		"G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
		"C12A7328-F81F-11D2-BA4B-00A0C93EC9+B",
	} {
		if _, err := ParseGUID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseGUID(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// herdOption is the load option the agent writes, with its bytes checked
// by hand against UEFI 2.10 §3.1.3 and §10.3.5.
func herdOption(t testing.TB) (LoadOption, []byte) {
	o := LoadOption{
		Attributes:  LoadOptionActive,
		Description: "herd",
		HardDrive: &HardDrive{
			Number:   1,
			Start:    2048,
			Size:     65536,
			PartUUID: mustGUID(t, "5d3a9e41-7c2b-4f10-8e6d-2a9b0c1d3e4f"),
		},
		Path: `\EFI\BOOT\BOOTX64.EFI`,
	}
	b := unhex(t, `
		01 00 00 00             # Attributes: LOAD_OPTION_ACTIVE
		5e 00                   # FilePathListLength: 42 + 48 + 4 = 94
		68 00 65 00 72 00 64 00 00 00  # Description "herd\0"
		# Hard Drive Media Device Path: type 4 subtype 1 length 42
		04 01 2a 00
		01 00 00 00             # PartitionNumber 1
		00 08 00 00 00 00 00 00 # PartitionStart 2048
		00 00 01 00 00 00 00 00 # PartitionSize 65536
		41 9e 3a 5d 2b 7c 10 4f 8e 6d 2a 9b 0c 1d 3e 4f # PartitionSignature
		02                      # PartitionFormat: GPT
		02                      # SignatureType: GUID
		# File Path Media Device Path: type 4 subtype 4 length 4 + 22*2 = 48
		04 04 30 00
		5c 00 45 00 46 00 49 00 5c 00             # \EFI\
		42 00 4f 00 4f 00 54 00 5c 00             # BOOT\
		42 00 4f 00 4f 00 54 00 58 00 36 00 34 00 # BOOTX64
		2e 00 45 00 46 00 49 00 00 00             # .EFI\0
		7f ff 04 00             # End Entire Device Path
	`)
	return o, b
}

func TestEncodeLoadOption(t *testing.T) {
	o, want := herdOption(t)
	got := EncodeLoadOption(o)
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeLoadOption =\n%s\nwant\n%s", hex.Dump(got), hex.Dump(want))
	}
}

func TestLoadOptionRoundTrip(t *testing.T) {
	herd, _ := herdOption(t)
	tests := []struct {
		name string
		o    LoadOption
	}{
		{"herd", herd},
		{"inactive", LoadOption{Description: "off", HardDrive: herd.HardDrive, Path: `\a.efi`}},
		{"empty", LoadOption{}},
		{"no partition", LoadOption{Attributes: LoadOptionActive, Description: "shell", Path: `\EFI\tools\shell.efi`}},
		{"no path", LoadOption{Attributes: LoadOptionActive | 0x100, Description: "disk", HardDrive: herd.HardDrive}},
		{"unicode", LoadOption{Attributes: LoadOptionActive, Description: "Dériveur 🐑", HardDrive: &HardDrive{
			Number: 128, Start: 1<<40 + 7, Size: 1<<63 + 1, PartUUID: espTypeBytes,
		}, Path: `\EFI\Ñ\grubx64.efi`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := EncodeLoadOption(tt.o)
			got, err := DecodeLoadOption(b)
			if err != nil {
				t.Fatalf("DecodeLoadOption(% x): %v", b, err)
			}
			want := tt.o
			want.Raw = b
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decode(Encode(x)) differs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeLoadOption decodes options shaped as firmware and other tools
// write them, and malformed ones.
func TestDecodeLoadOption(t *testing.T) {
	herd, herdBytes := herdOption(t)
	hdNode := herdBytes[16 : 16+42]
	fileNode := herdBytes[16+42 : 16+42+48]
	pciRoot := unhex(t, "02 01 0c 00 d0 41 03 0a 00 00 00 00") // ACPI PciRoot(0)
	pci := unhex(t, "01 01 06 00 00 04")                       // Pci(0x4,0x0)
	end := unhex(t, "7f ff 04 00")
	option := func(desc string, nodes ...[]byte) []byte {
		dp := bytes.Join(nodes, nil)
		b := binary.LittleEndian.AppendUint32(nil, LoadOptionActive)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(dp)))
		b = appendUCS2(b, desc)
		return append(b, dp...)
	}
	mbrNode := bytes.Clone(hdNode)
	mbrNode[40], mbrNode[41] = 0x01, 0x01
	// An option with no description has its device path at offset 8.
	fileA := EncodeLoadOption(LoadOption{Path: `\EFI`})[8:][:4+10]
	fileB := EncodeLoadOption(LoadOption{Path: `BOOT\X.EFI`})[8:][:4+22]
	noNUL := unhex(t, "04 04 08 00 5c 00 41 00") // `\A` without its NUL

	tests := []struct {
		name string
		in   []byte
		want LoadOption // Raw is set to in
	}{
		{"full path and optional data",
			append(option("herd", pciRoot, pci, hdNode, fileNode, end), "optional"...),
			LoadOption{Attributes: LoadOptionActive, Description: "herd", HardDrive: herd.HardDrive, Path: herd.Path}},
		{"MBR partition", option("dos", mbrNode, fileNode, end),
			LoadOption{Attributes: LoadOptionActive, Description: "dos", Path: herd.Path}},
		{"path in two nodes", option("split", fileA, fileB, end),
			LoadOption{Attributes: LoadOptionActive, Description: "split", Path: `\EFI\BOOT\X.EFI`}},
		{"path without NUL", option("nonul", noNUL, end),
			LoadOption{Attributes: LoadOptionActive, Description: "nonul", Path: `\A`}},
		{"second instance ignored", option("two", fileNode, unhex(t, "7f 01 04 00"), fileA, end),
			LoadOption{Attributes: LoadOptionActive, Description: "two", Path: herd.Path}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeLoadOption(tt.in)
			if err != nil {
				t.Fatalf("DecodeLoadOption: %v", err)
			}
			tt.want.Raw = tt.in
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeLoadOption differs (-want +got):\n%s", diff)
			}
		})
	}

	short := bytes.Clone(hdNode)
	short[2] = 41
	bad := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"header only", herdBytes[:5]},
		{"description not terminated", herdBytes[:12]},
		{"list longer than data", herdBytes[:len(herdBytes)-1]},
		{"no End node", option("x", fileNode)},
		{"node header cut", option("x", fileNode, end[:3])},
		{"node length 0", option("x", unhex(t, "04 04 00 00"), end)},
		{"node past the list", option("x", fileNode[:20], end)},
		{"Hard Drive node of 41 bytes", option("x", short[:41], end)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if o, err := DecodeLoadOption(tt.in); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeLoadOption(% x) = %+v, %v; want ErrMalformed", tt.in, o, err)
			}
		})
	}
}

var espHD = HardDrive{
	Number:   1,
	Start:    2048,
	Size:     65536,
	PartUUID: [16]byte{0x41, 0x9e, 0x3a, 0x5d, 0x2b, 0x7c, 0x10, 0x4f, 0x8e, 0x6d, 0x2a, 0x9b, 0x0c, 0x1d, 0x3e, 0x4f},
}

const bootx64 = `\EFI\BOOT\BOOTX64.EFI`

// prefilled returns Vars on a temp directory holding another OS's entry
// Boot0000 and BootOrder 0000.
func prefilled(t *testing.T) Vars {
	t.Helper()
	dir := t.TempDir()
	other := EncodeLoadOption(LoadOption{Attributes: LoadOptionActive, Description: "debian", HardDrive: &espHD, Path: `\EFI\debian\shimx64.efi`})
	writeVar(t, dir, "Boot0000", BootAttrs, other)
	writeVar(t, dir, "BootOrder", BootAttrs, []byte{0, 0})
	return Vars{Dir: dir}
}

// checkBoot asserts BootOrder, BootNext and that all three variables
// carry attributes 7.
func checkBoot(t *testing.T, v Vars, n uint16, order []uint16) {
	t.Helper()
	got, err := v.BootOrder()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(order, got); diff != "" {
		t.Errorf("BootOrder (-want +got):\n%s", diff)
	}
	next, ok, err := v.BootNext()
	if err != nil || !ok || next != n {
		t.Errorf("BootNext = %04X, %v, %v; want %04X", next, ok, err, n)
	}
	for _, name := range []string{BootName(n), "BootOrder", "BootNext"} {
		if b := readFile(t, v.Dir, name); !bytes.HasPrefix(b, []byte{7, 0, 0, 0}) {
			t.Errorf("%s starts % x, want 07 00 00 00", name, b[:min(len(b), 4)])
		}
	}
}

func TestAddBootEntry(t *testing.T) {
	v := prefilled(t)
	n, err := addFirst(v, "herd", espHD, bootx64)
	if err != nil {
		t.Fatalf("AddBootEntry: %v", err)
	}
	if n != 1 {
		t.Errorf("AddBootEntry = Boot%04X, want Boot0001", n)
	}
	checkBoot(t, v, 1, []uint16{1, 0})
	o, err := v.Boot(1)
	if err != nil {
		t.Fatal(err)
	}
	want := LoadOption{Attributes: LoadOptionActive, Description: "herd", HardDrive: &espHD, Path: bootx64, Raw: o.Raw}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("Boot0001 (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(v.Dir, "Boot0001-"+GlobalGUID)); err != nil {
		t.Errorf("Boot0001 not named NAME-GUID: %v", err)
	}

	// Again, with the path in another case: the same entry, listed once.
	n, err = addFirst(v, "herd", espHD, strings.ToLower(bootx64))
	if err != nil || n != 1 {
		t.Fatalf("second AddBootEntry = %04X, %v; want 0001", n, err)
	}
	checkBoot(t, v, 1, []uint16{1, 0})

	// The firmware moved it back and used BootNext: it comes first again.
	writeVar(t, v.Dir, "BootOrder", BootAttrs, []byte{0, 0, 1, 0})
	if err := v.Remove("BootNext"); err != nil {
		t.Fatal(err)
	}
	if n, err = addFirst(v, "herd", espHD, bootx64); err != nil || n != 1 {
		t.Fatalf("third AddBootEntry = %04X, %v; want 0001", n, err)
	}
	checkBoot(t, v, 1, []uint16{1, 0})

	// Another partition is another entry.
	hd2 := espHD
	hd2.Number = 2
	if n, err = addFirst(v, "herd", hd2, bootx64); err != nil || n != 2 {
		t.Fatalf("AddBootEntry(partition 2) = %04X, %v; want 0002", n, err)
	}
	checkBoot(t, v, 2, []uint16{2, 1, 0})
}

func TestAddBootEntryNumbers(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		v := Vars{Dir: t.TempDir()}
		n, err := addFirst(v, "herd", espHD, bootx64)
		if err != nil || n != 0 {
			t.Fatalf("AddBootEntry = %04X, %v; want 0000", n, err)
		}
		checkBoot(t, v, 0, []uint16{0})
	})
	t.Run("lowest free", func(t *testing.T) {
		v := prefilled(t)
		writeVar(t, v.Dir, "Boot0001", BootAttrs, []byte{1, 0, 0, 0, 9}) // malformed: taken, not reused
		writeVar(t, v.Dir, "boot000a", BootAttrs, EncodeLoadOption(LoadOption{Description: "lower case"}))
		writeVar(t, v.Dir, "Boot0003", BootAttrs, EncodeLoadOption(LoadOption{Description: "herd", HardDrive: &espHD, Path: `\other.efi`}))
		writeVar(t, v.Dir, "Boot0002", BootAttrs, EncodeLoadOption(LoadOption{Description: "x"}))
		writeVar(t, v.Dir, "BootFFFF", BootAttrs, EncodeLoadOption(LoadOption{Description: "y"}))
		// Look-alikes that are not load options.
		writeVar(t, v.Dir, "BootCurrent", BootAttrs, []byte{0, 0})
		writeVar(t, v.Dir, "Boot000G", BootAttrs, nil)
		if err := os.WriteFile(filepath.Join(v.Dir, "Boot0004-01234567-89ab-cdef-0123-456789abcdef"), []byte{7, 0, 0, 0}, 0o644); err != nil {
			t.Fatal(err)
		}
		n, err := addFirst(v, "herd", espHD, bootx64)
		if err != nil || n != 4 {
			t.Fatalf("AddBootEntry = %04X, %v; want 0004", n, err)
		}
		checkBoot(t, v, 4, []uint16{4, 0})
	})
	t.Run("reuse lowest match", func(t *testing.T) {
		v := prefilled(t)
		herd := EncodeLoadOption(LoadOption{Description: "herd", HardDrive: &espHD, Path: bootx64}) // inactive
		writeVar(t, v.Dir, "Boot0005", BootAttrs, herd)
		writeVar(t, v.Dir, "Boot0003", AttrNonVolatile, herd)
		n, err := addFirst(v, "herd", espHD, bootx64)
		if err != nil || n != 3 {
			t.Fatalf("AddBootEntry = %04X, %v; want 0003", n, err)
		}
		checkBoot(t, v, 3, []uint16{3, 0})
		if o, err := v.Boot(3); err != nil || o.Attributes != LoadOptionActive {
			t.Errorf("Boot0003 = %+v, %v; want it rewritten active", o, err)
		}
	})
}

func TestAddBootEntryArgs(t *testing.T) {
	noUUID := espHD
	noUUID.PartUUID = [16]byte{}
	whole := espHD
	whole.Number = 0
	empty := espHD
	empty.Size = 0
	tests := []struct {
		name string
		desc string
		hd   HardDrive
		path string
	}{
		{"no description", "", espHD, bootx64},
		{"NUL in description", "a\x00b", espHD, bootx64},
		{"partition 0", "herd", whole, bootx64},
		{"size 0", "herd", empty, bootx64},
		{"no PARTUUID", "herd", noUUID, bootx64},
		{"slashes", "herd", espHD, "/EFI/BOOT/BOOTX64.EFI"},
		{"relative", "herd", espHD, `EFI\BOOT\BOOTX64.EFI`},
		{"too long", "herd", espHD, `\` + strings.Repeat("a", maxPathLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Vars{Dir: t.TempDir()}
			if n, err := addFirst(v, tt.desc, tt.hd, tt.path); err == nil {
				t.Errorf("AddBootEntry = %04X, want an error", n)
			}
			if ents, _ := os.ReadDir(v.Dir); len(ents) != 0 {
				t.Errorf("AddBootEntry wrote %d variables on bad arguments", len(ents))
			}
		})
	}
	if _, err := addFirst((Vars{Dir: filepath.Join(t.TempDir(), "missing")}), "herd", espHD, bootx64); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AddBootEntry on a missing directory = %v, want fs.ErrNotExist", err)
	}
}

// TestVerify corrupts each variable after a good AddBootEntry, as a write
// the firmware truncated or refused would, and checks that verify names
// what differs.
func TestVerify(t *testing.T) {
	opt := EncodeLoadOption(LoadOption{Attributes: LoadOptionActive, Description: "herd", HardDrive: &espHD, Path: bootx64})
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		want    []string // in the message
	}{
		{"truncated Boot0001", func(t *testing.T, dir string) {
			writeVar(t, dir, "Boot0001", BootAttrs, opt[:len(opt)-10])
		}, []string{"Boot0001 reads 100 bytes", "want 110 bytes"}},
		{"Boot0001 attributes", func(t *testing.T, dir string) {
			writeVar(t, dir, "Boot0001", AttrNonVolatile|AttrBootServiceAccess, opt)
		}, []string{"Boot0001 has attributes 0x3, want 0x7"}},
		{"truncated BootOrder", func(t *testing.T, dir string) {
			writeVar(t, dir, "BootOrder", BootAttrs, []byte{1, 0, 0})
		}, []string{"BootOrder reads 3 bytes 010000, want 0001,0000"}},
		{"BootOrder lost the entry", func(t *testing.T, dir string) {
			writeVar(t, dir, "BootOrder", BootAttrs, []byte{0, 0})
		}, []string{"BootOrder reads 0000, want 0001,0000"}},
		{"BootNext and BootOrder", func(t *testing.T, dir string) {
			writeVar(t, dir, "BootNext", BootAttrs, []byte{0, 0})
			writeVar(t, dir, "BootOrder", BootAttrs, nil)
		}, []string{"BootOrder reads nothing, want 0001,0000", "BootNext reads 0000, want 0001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := prefilled(t)
			if _, err := addFirst(v, "herd", espHD, bootx64); err != nil {
				t.Fatal(err)
			}
			if err := v.verify(1, opt, []uint16{1, 0}); err != nil {
				t.Fatalf("verify after AddBootEntry: %v", err)
			}
			tt.corrupt(t, v.Dir)
			err := v.verify(1, opt, []uint16{1, 0})
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("verify = %v, want ErrVerify", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("verify = %q, want it to say %q", err, w)
				}
			}
		})
	}

	t.Run("BootNext gone", func(t *testing.T) {
		v := prefilled(t)
		if _, err := addFirst(v, "herd", espHD, bootx64); err != nil {
			t.Fatal(err)
		}
		if err := v.Remove("BootNext"); err != nil {
			t.Fatal(err)
		}
		err := v.verify(1, opt, []uint16{1, 0})
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "BootNext") {
			t.Errorf("verify = %v, want fs.ErrNotExist naming BootNext", err)
		}
	})
}

func TestVars(t *testing.T) {
	v := Vars{Dir: t.TempDir()}
	if err := v.Set("Test", 0x7, []byte("a longer value")); err != nil {
		t.Fatal(err)
	}
	// A shorter value replaces the whole file, not its start.
	if err := v.Set("Test", 0x3, []byte("short")); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, v.Dir, "Test"), []byte("\x03\x00\x00\x00short"); !bytes.Equal(got, want) {
		t.Errorf("file = %q, want %q", got, want)
	}
	attrs, data, err := v.Get("Test")
	if err != nil || attrs != 3 || string(data) != "short" {
		t.Errorf("Get = %#x, %q, %v", attrs, data, err)
	}
	if err := v.Remove("Test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Get("Test"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "Test") {
		t.Errorf("Get(removed) = %v, want fs.ErrNotExist naming Test", err)
	}
	if err := v.Remove("Test"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove(removed) = %v, want fs.ErrNotExist", err)
	}
	for _, name := range []string{"", "../x", "a\x00"} {
		if err := v.Set(name, 7, nil); err == nil {
			t.Errorf("Set(%q): no error", name)
		}
	}

	// efivarfs shows a variable being deleted as an empty file.
	writeVar(t, v.Dir, "BootNext", 0, nil)
	if err := os.Truncate(filepath.Join(v.Dir, "BootNext-"+GlobalGUID), 0); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := v.BootNext(); ok || err != nil {
		t.Errorf("BootNext(empty file) = %04X, %v, %v; want none", n, ok, err)
	}
	if order, err := v.BootOrder(); order != nil || err != nil {
		t.Errorf("BootOrder(missing) = %v, %v; want nil", order, err)
	}
	if _, err := v.Boot(7); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "Boot0007") {
		t.Errorf("Boot(missing) = %v, want fs.ErrNotExist naming Boot0007", err)
	}

	for name, data := range map[string][]byte{"BootOrder": {1, 0, 2}, "BootNext": {1, 0, 0, 0}, "Boot0007": {1, 0}} {
		writeVar(t, v.Dir, name, BootAttrs, data)
	}
	if _, err := v.BootOrder(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "BootOrder") {
		t.Errorf("BootOrder(3 bytes) = %v, want ErrMalformed naming BootOrder", err)
	}
	if _, _, err := v.BootNext(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "BootNext") {
		t.Errorf("BootNext(4 bytes) = %v, want ErrMalformed naming BootNext", err)
	}
	if _, err := v.Boot(7); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "Boot0007") {
		t.Errorf("Boot(malformed) = %v, want ErrMalformed naming Boot0007", err)
	}
	if err := os.WriteFile(filepath.Join(v.Dir, "X-"+GlobalGUID), []byte{7, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Get("X"); !errors.Is(err, ErrMalformed) {
		t.Errorf("Get(2-byte file) = %v, want ErrMalformed", err)
	}
}

// TestImmutable needs a file system with inode flags and the right to set
// FS_IMMUTABLE_FL (root); efivarfs sets it on most variables.
func TestImmutable(t *testing.T) {
	dir := t.TempDir()
	v := Vars{Dir: dir}
	writeVar(t, dir, "Locked", 7, []byte("old"))
	p := filepath.Join(dir, "Locked-"+GlobalGUID)
	setFlag := func(on bool) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		if on {
			flags |= fsImmutableFL
		} else {
			flags &^= fsImmutableFL
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
	}
	if err := setFlag(true); err != nil {
		t.Skipf("cannot set FS_IMMUTABLE_FL here: %v", err)
	}
	t.Cleanup(func() { _ = setFlag(false) })
	if err := os.WriteFile(p, []byte("x"), 0o644); err == nil {
		t.Fatal("writing an immutable file worked: the test proves nothing")
	}
	if err := v.Set("Locked", 7, []byte("new")); err != nil {
		t.Fatalf("Set(immutable): %v", err)
	}
	if _, data, err := v.Get("Locked"); err != nil || string(data) != "new" {
		t.Errorf("Get = %q, %v; want new", data, err)
	}
	if err := os.Remove(p); err == nil {
		t.Fatal("Set left the file mutable")
	}
	if err := v.Remove("Locked"); err != nil {
		t.Fatalf("Remove(immutable): %v", err)
	}
}

func TestHardDriveFromSfdisk(t *testing.T) {
	out, err := os.ReadFile("testdata/sfdisk-gpt.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		number uint32
		want   HardDrive
	}{
		{1, HardDrive{Number: 1, Start: 2048, Size: 65536, PartUUID: mustGUID(t, "5D3A9E41-7C2B-4F10-8E6D-2A9B0C1D3E4F")}},
		{2, HardDrive{Number: 2, Start: 67584, Size: 61440, PartUUID: mustGUID(t, "9B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9")}},
	} {
		got, err := HardDriveFromSfdisk(out, tt.number)
		if err != nil {
			t.Fatalf("HardDriveFromSfdisk(%d): %v", tt.number, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("HardDriveFromSfdisk(%d) (-want +got):\n%s", tt.number, diff)
		}
	}
	if got := FormatGUID(mustGUID(t, "5D3A9E41-7C2B-4F10-8E6D-2A9B0C1D3E4F")); got != "5d3a9e41-7c2b-4f10-8e6d-2a9b0c1d3e4f" {
		t.Errorf("FormatGUID = %s", got)
	}

	edit := func(old, new string) []byte { return bytes.Replace(out, []byte(old), []byte(new), 1) }
	bad := []struct {
		name   string
		in     []byte
		number uint32
		is     error // nil: any error
	}{
		{"partition 3", out, 3, ErrNoPartition},
		{"partition 0", out, 0, nil},
		{"not JSON", []byte("Disk /dev/sda: 8 GiB"), 1, ErrMalformed},
		{"cut short", out[:len(out)/2], 1, ErrMalformed},
		{"empty", nil, 1, ErrMalformed},
		{"no table", []byte(`{"disk": {}}`), 1, ErrMalformed},
		{"no partitions", []byte(`{"partitiontable": {"label": "gpt"}}`), 1, ErrNoPartition},
		{"dos", edit(`"label": "gpt"`, `"label": "dos"`), 1, nil},
		{"4Kn", edit(`"sectorsize": 512`, `"sectorsize": 4096`), 1, nil},
		{"bytes", edit(`"unit": "sectors"`, `"unit": "bytes"`), 1, ErrMalformed},
		{"negative start", edit(`"start": 2048`, `"start": -1`), 1, ErrMalformed},
		{"no start", edit(`"start": 2048,`, ``), 1, ErrMalformed},
		{"no uuid", edit(`"uuid": "5D3A9E41-7C2B-4F10-8E6D-2A9B0C1D3E4F",`, ``), 1, ErrMalformed},
		{"bad uuid", edit(`5D3A9E41-`, `5D3A9E41+`), 1, ErrMalformed},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			hd, err := HardDriveFromSfdisk(tt.in, tt.number)
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("HardDriveFromSfdisk = %+v, %v; want error %v", hd, err, tt.is)
			}
		})
	}
}

// TestHardDriveFromSfdiskImage partitions a sparse image file with sfdisk,
// leaving slot 1 empty so that list place and partition number differ,
// and reads its `sfdisk --json`.
func TestHardDriveFromSfdiskImage(t *testing.T) {
	sfdisk, err := exec.LookPath("sfdisk")
	if err != nil {
		t.Skip("sfdisk not installed")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	const espUUID = "01234567-89AB-CDEF-0123-456789ABCDEF"
	script := "label: gpt\n" +
		img + "2 : size=32MiB, type=" + espType + ", uuid=" + espUUID + "\n" +
		img + "3 : type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
	cmd := exec.Command(sfdisk, "-q", img)
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, b)
	}
	out, err := exec.Command(sfdisk, "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	t.Logf("sfdisk --json:\n%s", out)

	hd, err := HardDriveFromSfdisk(out, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := HardDrive{Number: 2, Start: 2048, Size: 32 << 20 / 512, PartUUID: mustGUID(t, espUUID)}
	if diff := cmp.Diff(want, hd); diff != "" {
		t.Errorf("HardDriveFromSfdisk(2) (-want +got):\n%s", diff)
	}
	esp, err := FindESP(out)
	if err != nil {
		t.Fatalf("FindESP: %v", err)
	}
	if esp.Number != 2 || esp.Node != img+"2" || esp.HardDrive != want {
		t.Errorf("FindESP = %+v, want partition 2 (%s2) %+v", esp, img, want)
	}
	if _, err := HardDriveFromSfdisk(out, 1); !errors.Is(err, ErrNoPartition) {
		t.Errorf("HardDriveFromSfdisk(1) = %v, want ErrNoPartition", err)
	}

	// The GUID in the device path is the one on disk: GPT entry 2 is at
	// LBA 2 + 128 bytes, its unique GUID at offset 16.
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var onDisk [16]byte
	if _, err := f.ReadAt(onDisk[:], 2*512+128+16); err != nil {
		t.Fatal(err)
	}
	if onDisk != hd.PartUUID {
		t.Errorf("PartUUID % x, GPT entry has % x", hd.PartUUID, onDisk)
	}
	var typ [16]byte
	if _, err := f.ReadAt(typ[:], 2*512+128); err != nil {
		t.Fatal(err)
	}
	if typ != espTypeBytes {
		t.Errorf("ESP type on disk % x, want % x", typ, espTypeBytes)
	}
}

func FuzzDecodeLoadOption(f *testing.F) {
	_, herd := herdOption(f)
	f.Add(herd)
	f.Add(append(bytes.Clone(herd), "optional data"...))
	f.Add(EncodeLoadOption(LoadOption{}))
	f.Add(EncodeLoadOption(LoadOption{Description: "shell", Path: `\EFI\tools\shell.efi`}))
	f.Add(herd[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeLoadOption(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(o.Raw, b) {
			t.Fatalf("Raw = % x, want the input % x", o.Raw, b)
		}
		// What was decoded encodes to bytes that decode the same, if
		// it fits the 16-bit lengths (as AddBootEntry checks).
		if len(utf16.Encode([]rune(o.Path))) > maxPathLen {
			return
		}
		again, err := DecodeLoadOption(EncodeLoadOption(o))
		if err != nil {
			t.Fatalf("decoding the re-encoded %+v: %v", o, err)
		}
		o.Raw, again.Raw = nil, nil
		if diff := cmp.Diff(o, again); diff != "" {
			t.Fatalf("Decode(Encode(Decode(b))) differs (-first +second):\n%s", diff)
		}
	})
}

func FuzzHardDriveFromSfdisk(f *testing.F) {
	out, err := os.ReadFile("testdata/sfdisk-gpt.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(out, uint32(1))
	f.Add(out, uint32(2))
	f.Add(out, uint32(3))
	f.Add([]byte(`{"partitiontable":{"label":"gpt","partitions":[{"start":34,"size":1,"uuid":"`+espType+`"}]}}`), uint32(1))
	f.Add([]byte(`{"partitiontable":{"label":"gpt","sectorsize":4096}}`), uint32(1))
	f.Add([]byte(`null`), uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, number uint32) {
		hd, err := HardDriveFromSfdisk(b, number)
		if err != nil {
			return
		}
		if hd.Number != number || hd.Number == 0 || hd.Size == 0 {
			t.Fatalf("HardDriveFromSfdisk(_, %d) = %+v", number, hd)
		}
		if _, err := ParseGUID(FormatGUID(hd.PartUUID)); err != nil {
			t.Fatal(err)
		}
	})
}

// addFirst is AddBootEntry with First, returning the number.
func addFirst(v Vars, desc string, hd HardDrive, path string) (uint16, error) {
	r, err := v.AddBootEntry(desc, hd, path, First)
	return r.Number, err
}

// TestAddBootEntryAfterCurrent: network first keeps the entry this boot
// came from ahead of the new one.
func TestAddBootEntryAfterCurrent(t *testing.T) {
	for _, tt := range []struct {
		name      string
		order     []uint16 // BootOrder before; nil = none
		current   int      // BootCurrent; -1 = none
		wantOrder []uint16
		wantFirst bool
	}{
		{"network first, disk after", []uint16{0, 2, 3}, 2, []uint16{0, 2, 1, 3}, false},
		{"current is first", []uint16{2, 0}, 2, []uint16{2, 1, 0}, false},
		{"current is last", []uint16{0, 2}, 2, []uint16{0, 2, 1}, false},
		{"no BootCurrent", []uint16{0, 2}, -1, []uint16{1, 0, 2}, true},
		{"current not in BootOrder", []uint16{0, 2}, 7, []uint16{1, 0, 2}, true},
		{"no BootOrder", nil, 2, []uint16{1}, true},
		{"entry already placed elsewhere", []uint16{1, 0, 2}, 2, []uint16{0, 2, 1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := Vars{Dir: t.TempDir()}
			writeVar(t, v.Dir, "Boot0000", BootAttrs, EncodeLoadOption(LoadOption{Attributes: LoadOptionActive, Description: "disk", HardDrive: &espHD, Path: `\other.efi`}))
			if tt.order != nil {
				writeVar(t, v.Dir, "BootOrder", BootAttrs, encodeUint16s(tt.order))
			}
			if tt.current >= 0 {
				writeVar(t, v.Dir, "BootCurrent", AttrBootServiceAccess|AttrRuntimeAccess, encodeUint16s([]uint16{uint16(tt.current)}))
			}
			r, err := v.AddBootEntry("herd", espHD, bootx64, AfterCurrent)
			if err != nil {
				t.Fatalf("AddBootEntry: %v", err)
			}
			if r.Number != 1 {
				t.Errorf("number %04X, want 0001", r.Number)
			}
			if diff := cmp.Diff(tt.wantOrder, r.Order); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			if r.First != tt.wantFirst {
				t.Errorf("First = %v, want %v", r.First, tt.wantFirst)
			}
			checkBoot(t, v, 1, tt.wantOrder)
		})
	}
}

func TestFindESP(t *testing.T) {
	gpt, err := os.ReadFile("testdata/sfdisk-gpt.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := FindESP(gpt)
	if err != nil {
		t.Fatalf("FindESP(testdata/sfdisk-gpt.json): %v", err)
	}
	if got.Number != 1 || got.Node != "disk.img1" || got.HardDrive.Start != 2048 || got.HardDrive.Size != 65536 {
		t.Errorf("FindESP = %+v, want partition 1 disk.img1 at 2048, 65536 sectors", got)
	}
	for _, tt := range []struct {
		name, json, want string
	}{
		{"dos without ESP", `{"partitiontable":{"label":"dos","partitions":[{"node":"/dev/vda1","start":2048,"size":100,"type":"83"}]}}`, "a dos partition table without an ESP"},
		{"dos with ESP", `{"partitiontable":{"label":"dos","partitions":[{"node":"/dev/vda1","start":2048,"size":100,"type":"ef"}]}}`, "its ESP /dev/vda1 must be on a GPT"},
		{"gpt without ESP", `{"partitiontable":{"label":"gpt","partitions":[{"node":"/dev/vda1","start":2048,"size":100,"type":"0FC63DAF-8483-4772-8E79-3D69D8477DE4","uuid":"9B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9"}]}}`, "a GPT of 1 partitions, none of type"},
		{"no table", `{}`, "no partition table"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FindESP([]byte(tt.json))
			if !errors.Is(err, ErrNoESP) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FindESP = %v, want ErrNoESP saying %q", err, tt.want)
			}
		})
	}
	if _, err := FindESP([]byte("{")); !errors.Is(err, ErrMalformed) {
		t.Errorf("FindESP(bad JSON) = %v, want ErrMalformed", err)
	}
}

func FuzzFindESP(f *testing.F) {
	out, err := os.ReadFile("testdata/sfdisk-gpt.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(out)
	f.Add([]byte(`{"partitiontable":{"label":"dos","partitions":[{"node":"x1","type":"ef"}]}}`))
	f.Add([]byte(`{"partitiontable":{"label":"gpt","partitions":[{"node":"x","start":1,"size":1,"type":"` + espType + `"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		esp, err := FindESP(b)
		if err != nil {
			return
		}
		if esp.Number == 0 || esp.HardDrive.Number != esp.Number || esp.HardDrive.Size == 0 {
			t.Fatalf("FindESP = %+v", esp)
		}
	})
}
