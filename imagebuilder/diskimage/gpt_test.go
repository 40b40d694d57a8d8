package diskimage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/agent/efivar"
)

// sfdiskImage makes a sparse image file of size bytes and partitions it
// with sfdisk reading script; the test is skipped without sfdisk.
func sfdiskImage(t *testing.T, dir, name string, size int64, script string) string {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("no sfdisk here (apt-get install fdisk)")
	}
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command("sfdisk", "-q", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return p
}

// sfdiskTable is what `sfdisk --json` says of a GPT disk.
type sfdiskTable struct {
	Label      string `json:"label"`
	ID         string `json:"id"`
	FirstLBA   uint64 `json:"firstlba"`
	LastLBA    uint64 `json:"lastlba"`
	Partitions []struct {
		Node  string `json:"node"`
		Start uint64 `json:"start"`
		Size  uint64 `json:"size"`
		Type  string `json:"type"`
		UUID  string `json:"uuid"`
		Name  string `json:"name"`
		Attrs string `json:"attrs"`
	} `json:"partitions"`
}

func sfdiskJSON(t *testing.T, path string) sfdiskTable {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var v struct {
		Table sfdiskTable `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return v.Table
}

// readHead reads the first n bytes of the file at path (fewer if it is
// shorter).
func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[:min(n, len(b))]
}

// biosESPRoot is the layout of herd's Debian images: a BIOS boot
// partition, an ESP and a Linux root, named.
const biosESPRoot = `label: gpt
label-id: 0C5E7F31-1B2A-4D3C-9E8F-A1B2C3D4E5F6
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios", attrs="LegacyBIOSBootable"
size=20M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system partition", uuid=11111111-2222-3333-4444-555555555555
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root ü", attrs="RequiredPartition GUID:60,63"
`

func TestParseGPTAgainstSfdisk(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		size   int64
		script string
	}{
		{"bios esp root", 40 << 20, biosESPRoot},
		{"gaps, short table, first-lba 34", 20 << 20, `label: gpt
first-lba: 34
table-length: 64
@2 : start=34, size=100, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name="lvm"
@5 : start=2048, size=4096, type=A19D880F-05FC-4D3B-A006-743F0F84911E
@7 : size=1M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name="a much longer name of 36 characters!"
`},
		{"other types, long table", 30 << 20, `label: gpt
table-length: 256
size=4M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="DATA", attrs="NoBlockIOProtocol GUID:48"
size=4M, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root-x86-64"
size=4M, type=3B8F8425-20E0-4F3B-907F-1A25A76F98E8
`},
		{"empty", 10 << 20, "label: gpt\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := sfdiskImage(t, dir, "d"+strconv.Itoa(i)+".img", tt.size, strings.ReplaceAll(tt.script, "@", filepath.Join(dir, "d"+strconv.Itoa(i)+".img")))
			want := sfdiskJSON(t, img)
			g, err := ParseGPT(readHead(t, img, HeadBytes))
			if err != nil {
				t.Fatal(err)
			}
			if want.Label != "gpt" || g.DiskGUID != want.ID || g.FirstUsableLBA != want.FirstLBA || g.LastUsableLBA != want.LastLBA {
				t.Errorf("disk GUID %s, usable %d-%d; sfdisk: %s %s, %d-%d", g.DiskGUID, g.FirstUsableLBA, g.LastUsableLBA, want.Label, want.ID, want.FirstLBA, want.LastLBA)
			}
			if g.CurrentLBA != 1 || g.BackupLBA != uint64(tt.size/SectorSize-1) || g.Revision != 0x00010000 || g.HeaderSize != 92 || g.EntrySize != 128 {
				t.Errorf("header %+v", g.GPTHeader)
			}
			if len(g.Notes) != 0 {
				t.Errorf("notes %q", g.Notes)
			}
			if len(g.Partitions) != len(want.Partitions) {
				t.Fatalf("%d partitions, sfdisk %d:\n%+v", len(g.Partitions), len(want.Partitions), g.Partitions)
			}
			for j, w := range want.Partitions {
				n, _ := strconv.Atoi(strings.TrimPrefix(w.Node, img))
				p := g.Partitions[j]
				got := []any{p.Number, p.Start, p.Sectors, p.TypeGUID, p.GUID, p.Name, p.Attrs()}
				if d := cmp.Diff([]any{n, w.Start, w.Size, w.Type, w.UUID, w.Name, w.Attrs}, got); d != "" {
					t.Errorf("partition %d (-sfdisk +ParseGPT):\n%s", j, d)
				}
			}
		})
	}
}

// TestGPTTypeNames checks herd's names against sfdisk's list.
func TestGPTTypeNames(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("no sfdisk here")
	}
	out, err := exec.Command("sfdisk", "--label", "gpt", "-T").Output()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if guid, name, ok := strings.Cut(sc.Text(), "  "); ok && len(guid) == 36 {
			names[guid] = strings.TrimSpace(name)
		}
	}
	for guid, name := range gptTypeNames {
		if names[guid] != name {
			t.Errorf("%s: herd %q, sfdisk %q", guid, name, names[guid])
		}
	}
	if GPTTypeName(strings.ToLower(GUIDESP)) != "EFI System" || GPTTypeName("00000000-0000-0000-0000-000000000001") != "" {
		t.Error("GPTTypeName: case or unknown GUIDs")
	}
}

func TestFormatGUID(t *testing.T) {
	// The ESP's type GUID as it is on disk (UEFI 2.10 table 5.7).
	b, _ := hex.DecodeString("28732AC11FF8D211BA4B00A0C93EC93B")
	if got := formatGUID(b); got != GUIDESP {
		t.Errorf("formatGUID = %s, want %s", got, GUIDESP)
	}
	if formatGUID(b[:15]) != "" {
		t.Error("formatGUID of 15 bytes")
	}
}

// guidBytes is formatGUID's inverse, for building tables.
func guidBytes(s string) []byte {
	g, err := efivar.ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g[:]
}

// gptEntry is a partition for buildGPT.
type gptEntry struct {
	index       int
	typ, guid   string
	first, last uint64
	attrs       uint64
	name        string
}

// buildGPT builds the first sectors of a disk of the given sectors: a
// protective MBR, a primary GPT header with 128 entries of 128 bytes at
// LBA 2 (usable sectors 34 to sectors-34), and the entries.
func buildGPT(sectors uint64, entries ...gptEntry) []byte {
	return buildGPTn(sectors, 128, entries...)
}

// buildGPTn is buildGPT with n entries (a multiple of 4).
func buildGPTn(sectors uint64, n int, entries ...gptEntry) []byte {
	const size = 128
	b := make([]byte, (2+n*size/SectorSize)*SectorSize)
	copy(b, sector(0, true, entry{0, 0xee, 1, uint32(min(sectors-1, 0xffffffff))}))
	arr := b[2*SectorSize:]
	for _, e := range entries {
		o := arr[e.index*size:]
		copy(o[0:], guidBytes(e.typ))
		copy(o[16:], guidBytes(e.guid))
		binary.LittleEndian.PutUint64(o[32:], e.first)
		binary.LittleEndian.PutUint64(o[40:], e.last)
		binary.LittleEndian.PutUint64(o[48:], e.attrs)
		for i, u := range []rune(e.name) { // BMP only, enough for tests
			binary.LittleEndian.PutUint16(o[56+2*i:], uint16(u))
		}
	}
	h := b[SectorSize:]
	copy(h, gptSignature)
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1)
	binary.LittleEndian.PutUint64(h[32:], sectors-1)
	binary.LittleEndian.PutUint64(h[40:], 34)
	binary.LittleEndian.PutUint64(h[48:], sectors-34)
	copy(h[56:], guidBytes("01234567-89AB-CDEF-0123-456789ABCDEF"))
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], uint32(n))
	binary.LittleEndian.PutUint32(h[84:], size)
	fixCRCs(b)
	return b
}

// fixCRCs recomputes the header's CRC32s of a table changed on purpose,
// so that the parser's other checks are reached.
func fixCRCs(b []byte) {
	h := b[SectorSize : 2*SectorSize]
	lba := binary.LittleEndian.Uint64(h[72:])
	n, size := uint64(binary.LittleEndian.Uint32(h[80:])), uint64(binary.LittleEndian.Uint32(h[84:]))
	if end := lba*SectorSize + n*size; lba < 64 && n*size <= MaxGPTEntryBytes && end <= uint64(len(b)) {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[lba*SectorSize:end]))
	}
	hs := binary.LittleEndian.Uint32(h[12:])
	if hs > SectorSize {
		hs = 92
	}
	clear(h[16:20])
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
}

func TestParseGPTDamaged(t *testing.T) {
	const disk = 1 << 16 // sectors: 32 MiB
	good := func() []byte {
		return buildGPT(disk,
			gptEntry{0, GUIDBIOSBoot, "AAAAAAAA-0000-0000-0000-000000000001", 2048, 4095, GPTAttrLegacyBIOSBootable, "bios"},
			gptEntry{1, GUIDESP, "AAAAAAAA-0000-0000-0000-000000000002", 4096, 8191, 0, "esp"})
	}
	set32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v); fixCRCs(b) }
	}
	set64 := func(off int, v uint64) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v); fixCRCs(b) }
	}
	const hdr = SectorSize
	tests := []struct {
		name    string
		change  func([]byte) []byte
		wantErr error
		errText string
	}{
		{"no signature", func(b []byte) []byte { b[hdr] = 'e'; return b }, ErrNoGPT, `no "EFI PART" signature`},
		{"shorter than the header", func(b []byte) []byte { return b[:hdr+100] }, ErrNoGPT, "past the 612 bytes given"},
		{"header CRC", func(b []byte) []byte { b[hdr+60] ^= 1; return b }, ErrBadGPT, "header's CRC32"},
		{"entries CRC", func(b []byte) []byte { b[2*hdr+56] ^= 1; return b }, ErrBadGPT, "partition entries' CRC32"},
		{"truncated entries", func(b []byte) []byte { return b[:4*SectorSize] }, ErrBadGPT, "cut off by the 2048 bytes given"},
		{"header size 91", func(b []byte) []byte { set32(hdr+12, 91)(b); return b }, ErrBadGPT, "header size 91"},
		{"header size 513", func(b []byte) []byte { set32(hdr+12, 513)(b); return b }, ErrBadGPT, "header size 513"},
		{"entry size 130", func(b []byte) []byte { set32(hdr+84, 130)(b); return b }, ErrBadGPT, "entry size 130"},
		{"entry size 0", func(b []byte) []byte { set32(hdr+84, 0)(b); return b }, ErrBadGPT, "entry size 0"},
		{"too many entries", func(b []byte) []byte { set32(hdr+80, 1<<30)(b); return b }, ErrBadGPT, "more than herd reads"},
		{"entries far away", func(b []byte) []byte { set64(hdr+72, 1<<62)(b); return b }, ErrBadGPT, "are past the"},
		{"entries over the header", func(b []byte) []byte { set64(hdr+72, 1)(b); return b }, ErrBadGPT, "over the MBR or the header"},
		{"not at LBA 1", func(b []byte) []byte { set64(hdr+24, 5)(b); return b }, ErrBadGPT, "says it is at sector 5"},
		{"usable range reversed", func(b []byte) []byte { set64(hdr+40, disk)(b); return b }, ErrBadGPT, "first usable sector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := ParseGPT(tt.change(good()))
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("err = %v, want %v with %q (table %+v)", err, tt.wantErr, tt.errText, g)
			}
		})
	}
	if _, err := ParseGPT(good()); err != nil {
		t.Fatalf("the undamaged table: %v", err)
	}
}

func TestParseGPTNotes(t *testing.T) {
	const disk = 1 << 16
	g, err := ParseGPT(buildGPT(disk,
		gptEntry{0, GUIDLinuxFilesystem, "AAAAAAAA-0000-0000-0000-000000000001", 2048, 8191, 0, "a"},
		gptEntry{1, GUIDLinuxSwap, "AAAAAAAA-0000-0000-0000-000000000002", 8000, 9000, 0, "b"},
		gptEntry{2, GUIDLinuxLVM, "AAAAAAAA-0000-0000-0000-000000000003", 10, 20, 0, "c"},
		gptEntry{3, GUIDLinuxRAID, "AAAAAAAA-0000-0000-0000-000000000004", 30000, 29999, 0, "d"},
		gptEntry{127, "DEADBEEF-0000-0000-0000-000000000000", "AAAAAAAA-0000-0000-0000-000000000005", 40000, 40000, 0, "Ωmega"},
	))
	if err != nil {
		t.Fatal(err)
	}
	var nums []int
	for _, p := range g.Partitions {
		nums = append(nums, p.Number)
	}
	if d := cmp.Diff([]int{1, 2, 3, 128}, nums); d != "" {
		t.Errorf("numbers (-want +got):\n%s", d)
	}
	if p := g.Partitions[3]; p.TypeName != "" || p.Name != "Ωmega" || p.Sectors != 1 {
		t.Errorf("last partition %+v", p)
	}
	want := []string{"partition 3 (sectors 10 to 20) is outside", "entry 4 ends", "partitions 1 and 2 overlap"}
	if len(g.Notes) != len(want) {
		t.Fatalf("notes %q, want %d", g.Notes, len(want))
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(g.Notes, "\n"), w) {
			t.Errorf("notes %q lack %q", g.Notes, w)
		}
	}
	g.checkBounds(8192 * SectorSize)
	for _, w := range []string{"partition 2 ends at sector 9001, past the image's end (8192 sectors)", "backup GPT header should be at the image's last sector, 8191, the header says 65535"} {
		if !strings.Contains(strings.Join(g.Notes, "\n"), w) {
			t.Errorf("after checkBounds, notes %q lack %q", g.Notes, w)
		}
	}
}

func TestGPTPartitionJSON(t *testing.T) {
	p := GPTPartition{Number: 2, TypeGUID: GUIDESP, TypeName: "EFI System", GUID: "11111111-2222-3333-4444-555555555555",
		Start: 4096, Sectors: 2048, Attributes: 1<<63 | GPTAttrLegacyBIOSBootable, Name: "esp"}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"number":2,"type":"C12A7328-F81F-11D2-BA4B-00A0C93EC93B","type_name":"EFI System","guid":"11111111-2222-3333-4444-555555555555","start":4096,"sectors":2048,"name":"esp","offset":2097152,"size":1048576,"attributes":"0x8000000000000004","attrs":"LegacyBIOSBootable GUID:63"}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}

func TestInspectGPT(t *testing.T) {
	dir := t.TempDir()
	const size = 40 << 20
	img := sfdiskImage(t, dir, "gpt.img", size, biosESPRoot)
	want, err := ParseGPT(readHead(t, img, HeadBytes))
	if err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, info.GPT); d != "" {
		t.Errorf("GPT (-ParseGPT +Inspect):\n%s", d)
	}
	if info.NoGPT != "" || info.Table == nil || info.Table.Label != "gpt" || len(info.Table.Notes) != 0 {
		t.Errorf("NoGPT %q, table %+v: want the protective MBR without its note", info.NoGPT, info.Table)
	}
	esp, ok := info.ESP()
	if !ok || esp.Number != 2 || esp.Start != 4096 || esp.Size() != 20<<20 || esp.Name != "EFI system partition" || !info.HasESP() {
		t.Errorf("ESP() = %+v, %v; HasESP %v", esp, ok, info.HasESP())
	}
	if bb, ok := info.BIOSBoot(); !ok || bb.Number != 1 || bb.Attributes != GPTAttrLegacyBIOSBootable {
		t.Errorf("BIOSBoot() = %+v, %v", bb, ok)
	}

	// Compressed: the GPT read from the decoded stream is the same.
	sub := t.TempDir()
	src := filepath.Join(sub, "gpt.img")
	b, _ := os.ReadFile(img)
	os.WriteFile(src, b, 0o644)
	zst := compressWith(t, FormatZstd, src)
	zinfo, err := Inspect(context.Background(), zst)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, zinfo.GPT); d != "" || zinfo.Format != FormatZstd || zinfo.SHA256 != info.SHA256 {
		t.Errorf("zstd: format %s, sha %s; GPT (-raw +zstd):\n%s", zinfo.Format, zinfo.SHA256, d)
	}
	// The head alone: the same tables, from the raw and the compressed
	// image, without reading the rest.
	for _, p := range []string{img, zst} {
		h, err := InspectHead(context.Background(), p)
		if err != nil {
			t.Fatalf("InspectHead(%s): %v", p, err)
		}
		if d := cmp.Diff(want, h.GPT); d != "" || !h.HasESP() || h.SHA256 != "" || h.Size != 0 {
			t.Errorf("InspectHead(%s): HasESP %v, SHA256 %q, Size %d; GPT (-want +got):\n%s", p, h.HasESP(), h.SHA256, h.Size, d)
		}
	}
	js, _ := json.Marshal(zinfo)
	if !bytes.Contains(js, []byte(`"gpt":{"revision":65536`)) || !bytes.Contains(js, []byte(`"type_name":"EFI System"`)) {
		t.Errorf("JSON lacks the GPT: %s", js)
	}
}

func TestInspectGPTDamaged(t *testing.T) {
	dir := t.TempDir()
	const size = 40 << 20
	img := sfdiskImage(t, dir, "gpt.img", size, biosESPRoot)
	orig, _ := os.ReadFile(img)
	tests := []struct {
		name    string
		content func() []byte
		noGPT   string
		notes   []string
	}{
		{"header CRC", func() []byte { b := bytes.Clone(orig); b[SectorSize+56] ^= 0xff; return b }, "the header's CRC32", nil},
		{"entries CRC", func() []byte { b := bytes.Clone(orig); b[2*SectorSize+56] ^= 0xff; return b }, "the partition entries' CRC32", nil},
		{"cut in the entries", func() []byte { return orig[:3*SectorSize] }, "cut off by the image's end (it is 1536 bytes: truncated?)", nil},
		{"cut in the partitions", func() []byte { return orig[:20<<20] }, "", []string{
			"partition 2 ends at sector 45056, past the image's end (40960 sectors)",
			"partition 3 ends at sector 79872, past the image's end",
			"the backup GPT header should be at the image's last sector, 40959, the header says 81919"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.img")
			if err := os.WriteFile(p, tt.content(), 0o644); err != nil {
				t.Fatal(err)
			}
			info, err := Inspect(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if tt.noGPT != "" {
				if info.GPT != nil || !strings.Contains(info.NoGPT, tt.noGPT) || !strings.HasPrefix(info.NoGPT, ErrBadGPT.Error()) {
					t.Errorf("GPT %v, NoGPT %q: want %q", info.GPT, info.NoGPT, tt.noGPT)
				}
				if _, ok := info.ESP(); ok || info.HasESP() {
					t.Error("an ESP in a GPT that could not be read")
				}
				if info.Table == nil || len(info.Table.Notes) == 0 || info.Table.Notes[0] != noteProtective {
					t.Errorf("table %+v: want the protective MBR and its note", info.Table)
				}
				return
			}
			if info.GPT == nil {
				t.Fatalf("no GPT: %s", info.NoGPT)
			}
			if len(info.GPT.Notes) != len(tt.notes) {
				t.Fatalf("notes %q, want %d", info.GPT.Notes, len(tt.notes))
			}
			for i, w := range tt.notes {
				if !strings.HasPrefix(info.GPT.Notes[i], w) {
					t.Errorf("note %q, want %q...", info.GPT.Notes[i], w)
				}
			}
		})
	}
}

// TestInspectHeadShort: an image shorter than HeadBytes, and one with no
// partition table: Size is what was read, and no ESP.
func TestInspectHeadShort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "short.img")
	if err := os.WriteFile(p, make([]byte, 3*SectorSize), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := InspectHead(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if h.Size != 3*SectorSize || h.HasESP() || h.Table != nil || h.NoTable == "" {
		t.Errorf("InspectHead = size %d, HasESP %v, table %+v, NoTable %q", h.Size, h.HasESP(), h.Table, h.NoTable)
	}
}

func TestHasESPOnMBR(t *testing.T) {
	esp, err := ParseMBR(sector(1, true, entry{0x80, 0xef, 2048, 4096}, entry{0, 0x83, 6144, 4096}))
	if err != nil {
		t.Fatal(err)
	}
	noESP, _ := ParseMBR(sector(1, true, entry{0x80, 0x0e, 2048, 4096}))
	for _, tt := range []struct {
		info *Info
		want bool
	}{
		{&Info{Table: esp}, true},
		{&Info{Table: noESP}, false},
		{&Info{}, false},
	} {
		if got := tt.info.HasESP(); got != tt.want {
			t.Errorf("HasESP(%+v) = %v", tt.info.Table, got)
		}
		if _, ok := tt.info.ESP(); ok {
			t.Error("ESP() without a GPT")
		}
	}
}

// FuzzParseGPT feeds arbitrary image heads to ParseGPT: it must not
// panic, must stay within its bounds, and what it returns must agree with
// the header: numbers increasing within NumEntries, partitions that do
// not end before they start.
func FuzzParseGPT(f *testing.F) {
	// Small seeds (4 entries, not 128): the fuzzer mutates and minimizes
	// them faster, and the parser's paths are the same.
	f.Add(buildGPTn(1<<16, 4,
		gptEntry{0, GUIDBIOSBoot, "AAAAAAAA-0000-0000-0000-000000000001", 2048, 4095, GPTAttrLegacyBIOSBootable, "bios"},
		gptEntry{1, GUIDESP, "AAAAAAAA-0000-0000-0000-000000000002", 4096, 8191, 0, "esp"},
		gptEntry{3, GUIDLinuxFilesystem, "AAAAAAAA-0000-0000-0000-000000000003", 8000, 65000, 0, "root"}))
	f.Add(buildGPTn(100, 4, gptEntry{2, GUIDLinuxSwap, "AAAAAAAA-0000-0000-0000-000000000001", 50, 40, 0, "x"}))
	wide := buildGPTn(1<<10, 8)
	binary.LittleEndian.PutUint32(wide[SectorSize+80:], 4)
	binary.LittleEndian.PutUint32(wide[SectorSize+84:], 256)
	fixCRCs(wide)
	f.Add(wide)
	f.Add(append(make([]byte, SectorSize), []byte(gptSignature)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParseGPT(t, data)
		// Mutations rarely keep the CRC32s right: parse the input with
		// them recomputed too, to reach the header's other checks and
		// the entries.
		if len(data) >= gptHeadBytes {
			fixed := bytes.Clone(data)
			fixCRCs(fixed)
			checkParseGPT(t, fixed)
		}
	})
}

// checkParseGPT is FuzzParseGPT's check of one input.
func checkParseGPT(t *testing.T, data []byte) {
	t.Helper()
	g, err := ParseGPT(data)
	if err != nil {
		if !errors.Is(err, ErrNoGPT) && !errors.Is(err, ErrBadGPT) {
			t.Fatalf("error %v wraps neither ErrNoGPT nor ErrBadGPT", err)
		}
		if g != nil {
			t.Fatal("a table and an error")
		}
		return
	}
	if uint64(g.NumEntries)*uint64(g.EntrySize) > MaxGPTEntryBytes || g.EntrySize < 128 || g.HeaderSize < 92 || g.HeaderSize > SectorSize {
		t.Fatalf("accepted header %+v", g.GPTHeader)
	}
	if end := g.EntriesLBA*SectorSize + uint64(g.NumEntries)*uint64(g.EntrySize); end > uint64(len(data)) {
		t.Fatalf("entries end at byte %d, past the %d given", end, len(data))
	}
	last := 0
	for _, p := range g.Partitions {
		if p.Number <= last || p.Number > int(g.NumEntries) {
			t.Fatalf("partition number %d after %d (%d entries)", p.Number, last, g.NumEntries)
		}
		last = p.Number
		if p.Sectors == 0 && p.Start != 0 {
			t.Fatalf("partition %+v: no sectors", p)
		}
		if len(p.TypeGUID) != 36 || len(p.GUID) != 36 || p.TypeGUID == "00000000-0000-0000-0000-000000000000" {
			t.Fatalf("partition %+v: GUIDs", p)
		}
	}
	if _, err := json.Marshal(g); err != nil {
		t.Fatal(err)
	}
	g.checkBounds(int64(len(data)))
}
