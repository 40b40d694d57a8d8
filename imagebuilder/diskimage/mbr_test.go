package diskimage

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// entry is a partition table entry for building test sectors.
type entry struct {
	status, typ    byte
	start, sectors uint32
}

// sector builds an MBR or EBR with the given entries (up to 4).
func sector(diskID uint32, sig bool, entries ...entry) []byte {
	s := make([]byte, SectorSize)
	binary.LittleEndian.PutUint32(s[mbrDiskID:], diskID)
	for i, e := range entries {
		o := mbrTable + i*mbrEntrySize
		s[o] = e.status
		s[o+4] = e.typ
		binary.LittleEndian.PutUint32(s[o+8:], e.start)
		binary.LittleEndian.PutUint32(s[o+12:], e.sectors)
	}
	if sig {
		s[510], s[511] = 0x55, 0xAA
	}
	return s
}

func TestParseMBR(t *testing.T) {
	fat := sector(0, true)
	fat[0], fat[1], fat[2] = 0xEB, 0x3C, 0x90
	copy(fat[0x36:], "FAT16   ")
	withCode := sector(0xdeadbeef, true, entry{0x80, 0x83, 2048, 4096})
	withCode[0] = 0xFA
	tests := []struct {
		name    string
		sector  []byte
		want    *Table
		wantErr string
	}{
		{
			name:   "golden layout",
			sector: sector(0x12345678, true, entry{0x80, 0x0e, 2048, 131072}, entry{0, 0x83, 133120, 260096}),
			want: &Table{Label: "dos", DiskID: "0x12345678", Partitions: []Partition{
				{Number: 1, Type: 0x0e, TypeName: "W95 FAT16 (LBA)", Bootable: true, Start: 2048, Sectors: 131072},
				{Number: 2, Type: 0x83, TypeName: "Linux", Start: 133120, Sectors: 260096},
			}},
		},
		{
			name:   "gaps keep numbers",
			sector: sector(1, true, entry{}, entry{}, entry{0, 0x82, 100, 50}),
			want: &Table{Label: "dos", DiskID: "0x00000001", Partitions: []Partition{
				{Number: 3, Type: 0x82, TypeName: "Linux swap / Solaris", Start: 100, Sectors: 50},
			}},
		},
		{
			name:   "boot code",
			sector: withCode,
			want: &Table{Label: "dos", DiskID: "0xdeadbeef", BootCode: true, Partitions: []Partition{
				{Number: 1, Type: 0x83, TypeName: "Linux", Bootable: true, Start: 2048, Sectors: 4096},
			}},
		},
		{
			name:   "empty table",
			sector: sector(0, true),
			want:   &Table{Label: "dos", DiskID: "0x00000000"},
		},
		{
			name:   "unknown type",
			sector: sector(0, true, entry{0, 0x42 + 1, 1, 1}),
			want: &Table{Label: "dos", DiskID: "0x00000000", Partitions: []Partition{
				{Number: 1, Type: 0x43, Start: 1, Sectors: 1},
			}},
		},
		{
			name:   "protective MBR",
			sector: sector(0, true, entry{0, 0xee, 1, 0xffffffff}),
			want: &Table{Label: "gpt", DiskID: "0x00000000", Partitions: []Partition{
				{Number: 1, Type: 0xee, TypeName: "GPT", Start: 1, Sectors: 0xffffffff},
			}, Notes: []string{"protective MBR of a GUID partition table: only the MBR's entries are listed"}},
		},
		{name: "no signature", sector: sector(0, false, entry{0x80, 0x83, 1, 1}), wantErr: "no 0x55AA signature"},
		{name: "short", sector: make([]byte, 100), wantErr: "100 bytes"},
		{name: "bad status", sector: sector(0, true, entry{0x12, 0x83, 1, 1}), wantErr: "status byte 0x12"},
		{name: "FAT boot sector", sector: fat, wantErr: "FAT boot sector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMBR(tt.sector)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrNoMBR) {
					t.Fatalf("err = %v, want ErrNoMBR with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("table (-want +got):\n%s", d)
			}
		})
	}
}

// disk is a sparse test disk: sectors by LBA.
type disk map[uint64][]byte

func (d disk) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for i := 0; i < len(p); i += SectorSize {
		if s, ok := d[uint64(off+int64(i))/SectorSize]; ok {
			copy(p[i:], s)
		}
	}
	return len(p), nil
}

// bytes returns the disk as one image of n sectors.
func (d disk) bytes(n int) []byte {
	b := make([]byte, n*SectorSize)
	for lba, s := range d {
		if int(lba) < n {
			copy(b[int(lba)*SectorSize:], s)
		}
	}
	return b
}

func TestReadTableLogical(t *testing.T) {
	// ka-deploy's "linux 3500 extended fill logical swap 500 logical
	// linux fill", in sectors: an extended partition at 10000 with two
	// logical partitions.
	tests := []struct {
		name      string
		d         disk
		wantParts []int // partition numbers
		wantStart []uint64
		wantNote  string
	}{
		{
			name: "two logical",
			d: disk{
				0:     sector(1, true, entry{0x80, 0x83, 2048, 7952}, entry{0, 0x05, 10000, 90000}),
				10000: sector(0, true, entry{0, 0x82, 63, 1000}, entry{0, 0x05, 2000, 50000}),
				12000: sector(0, true, entry{0, 0x83, 63, 40000}),
			},
			wantParts: []int{1, 2, 5, 6},
			wantStart: []uint64{2048, 10000, 10063, 12063},
		},
		{
			name: "chain ends with an empty link",
			d: disk{
				0:   sector(1, true, entry{0, 0x0f, 100, 1000}),
				100: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x05, 50, 100}),
				150: sector(0, true, entry{0, 0x83, 1, 10}),
			},
			wantParts: []int{1, 5, 6},
			wantStart: []uint64{100, 101, 151},
		},
		{
			name: "link back to itself",
			d: disk{
				0:   sector(1, true, entry{0, 0x85, 100, 1000}),
				100: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x05, 0, 100}),
			},
			wantParts: []int{1, 5},
			wantStart: []uint64{100, 101},
		},
		{
			// 100 → 300 → 200 → 300 again.
			name: "cycle",
			d: disk{
				0:   sector(1, true, entry{0, 0x05, 100, 1000}),
				100: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x05, 200, 100}),
				300: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x05, 100, 100}),
				200: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x05, 200, 100}),
			},
			wantParts: []int{1, 5, 6, 7},
			wantStart: []uint64{100, 101, 301, 201},
			wantNote:  "already read",
		},
		{
			name: "outside the extended partition",
			d: disk{
				0:   sector(1, true, entry{0, 0x05, 100, 100}),
				100: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x05, 5000, 100}),
			},
			wantParts: []int{1, 5},
			wantStart: []uint64{100, 101},
			wantNote:  "outside the extended partition",
		},
		{
			name: "EBR without signature",
			d: disk{
				0:   sector(1, true, entry{0, 0x05, 100, 100}),
				100: sector(0, false, entry{0, 0x83, 1, 10}),
			},
			wantParts: []int{1},
			wantStart: []uint64{100},
			wantNote:  "no 0x55AA signature",
		},
		{
			name: "link to a non-extended type",
			d: disk{
				0:   sector(1, true, entry{0, 0x05, 100, 1000}),
				100: sector(0, true, entry{0, 0x83, 1, 10}, entry{0, 0x83, 50, 10}),
			},
			wantParts: []int{1, 5},
			wantStart: []uint64{100, 101},
			wantNote:  "not an extended one",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(t *testing.T, tab *Table) {
				var nums []int
				var starts []uint64
				for _, p := range tab.Partitions {
					nums = append(nums, p.Number)
					starts = append(starts, p.Start)
				}
				if d := cmp.Diff(tt.wantParts, nums); d != "" {
					t.Errorf("numbers (-want +got):\n%s", d)
				}
				if d := cmp.Diff(tt.wantStart, starts); d != "" {
					t.Errorf("starts (-want +got):\n%s", d)
				}
				notes := strings.Join(tab.Notes, "\n")
				if tt.wantNote == "" && notes != "" || !strings.Contains(notes, tt.wantNote) {
					t.Errorf("notes %q, want %q", notes, tt.wantNote)
				}
			}
			t.Run("ReaderAt", func(t *testing.T) {
				tab, err := ReadTable(tt.d)
				if err != nil {
					t.Fatal(err)
				}
				check(t, tab)
			})
			// The one-pass reader of compressed images finds the same,
			// except for links that go backwards.
			t.Run("stream", func(t *testing.T) {
				if tt.name == "cycle" {
					t.Skip("the chain goes backwards: a stream cannot follow it")
				}
				img := tt.d.bytes(20000)
				sc := newScanner(false, false)
				if err := segment(img, sc); err != nil {
					t.Fatal(err)
				}
				tab, err := sc.table()
				if err != nil {
					t.Fatal(err)
				}
				// The test disk is shorter than its partitions.
				var notes []string
				for _, n := range tab.Notes {
					if !strings.Contains(n, "past the image's end") {
						notes = append(notes, n)
					}
				}
				tab.Notes = notes
				check(t, tab)
			})
		})
	}
}

func TestReadTableMaxLogical(t *testing.T) {
	d := disk{0: sector(1, true, entry{0, 0x05, 1000, 100000})}
	for i := range MaxLogical + 10 {
		lba := uint64(1000 + i*10)
		d[lba] = sector(0, true, entry{0, 0x83, 1, 5}, entry{0, 0x05, uint32((i + 1) * 10), 10})
	}
	tab, err := ReadTable(d)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tab.Partitions); n != 1+MaxLogical {
		t.Errorf("%d partitions, want %d", n, 1+MaxLogical)
	}
	if !strings.Contains(strings.Join(tab.Notes, " "), "more than") {
		t.Errorf("notes %q lack the limit", tab.Notes)
	}
}

func TestCheckBounds(t *testing.T) {
	tab, err := ParseMBR(sector(1, true, entry{0, 0x83, 2048, 4096}))
	if err != nil {
		t.Fatal(err)
	}
	tab.checkBounds((2048 + 4096) * SectorSize)
	if len(tab.Notes) != 0 {
		t.Errorf("notes %q for a partition that fits", tab.Notes)
	}
	tab.checkBounds((2048+4096)*SectorSize - 1)
	if len(tab.Notes) != 1 || !strings.Contains(tab.Notes[0], "past the image's end") {
		t.Errorf("notes %q, want one about the end", tab.Notes)
	}
}

// record is the compact form of a sector in FuzzParseMBR's inputs: its
// LBA, its first byte (boot code or not) and its table region (four
// entries and the signature). Whole sectors would make the fuzzer
// mutate, and minimize, hundreds of bytes no parser reads.
const recordSize = 1 + 1 + 4*mbrEntrySize + 2

// expand turns a fuzz input into a sparse disk: record i is the sector at
// its LBA byte (the first record is always sector 0; a later record for
// the same LBA replaces it).
func expand(data []byte) disk {
	d := disk{}
	for i := 0; i+recordSize <= len(data); i += recordSize {
		r := data[i : i+recordSize]
		s := make([]byte, SectorSize)
		s[0] = r[1]
		copy(s[mbrTable:], r[2:])
		lba := uint64(r[0])
		if i == 0 {
			lba = 0
		}
		d[lba] = s
	}
	return d
}

// compact is the inverse of expand for seeds.
func compact(sectors map[uint8][]byte) []byte {
	var out []byte
	add := func(lba uint8, s []byte) {
		out = append(out, lba, s[0])
		out = append(out, s[mbrTable:SectorSize]...)
	}
	add(0, sectors[0])
	for lba, s := range sectors {
		if lba != 0 {
			add(lba, s)
		}
	}
	return out
}

// FuzzParseMBR feeds arbitrary first sectors and disks to the parsers:
// they must not panic, must number partitions from 1 without repeats,
// and must stay within MaxLogical; the one-pass reader of compressed
// images must find a prefix of what the random-access reader finds.
func FuzzParseMBR(f *testing.F) {
	f.Add(compact(map[uint8][]byte{0: sector(0x12345678, true, entry{0x80, 0x0e, 2048, 131072}, entry{0, 0x83, 133120, 260096})}))
	f.Add(compact(map[uint8][]byte{
		0:  sector(1, true, entry{0, 0x05, 10, 200}),
		10: sector(0, true, entry{0, 0x82, 1, 5}, entry{0, 0x05, 20, 50}),
		30: sector(0, true, entry{0, 0x83, 1, 5}, entry{0, 0x05, 5, 5}),
		15: sector(0, true, entry{0, 0x83, 1, 5}),
	}))
	f.Add(compact(map[uint8][]byte{0: sector(0, true, entry{0, 0xee, 1, 0xffffffff})}))
	f.Add([]byte{0x55, 0xAA})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Raw bytes as a first sector: any length, any content.
		if tab, err := ParseMBR(data); err == nil && len(tab.Partitions) > 4 {
			t.Fatalf("%d primary partitions", len(tab.Partitions))
		}
		d := expand(data)
		tab, err := ReadTable(d)
		if err != nil {
			if len(d) > 0 {
				if _, perr := ParseMBR(d[0]); perr == nil {
					t.Fatalf("ReadTable fails (%v) where ParseMBR does not", err)
				}
			}
			return
		}
		seen := map[int]bool{}
		for _, p := range tab.Partitions {
			if p.Number < 1 || p.Number > 4+MaxLogical || seen[p.Number] {
				t.Fatalf("partition number %d (seen: %v)", p.Number, seen)
			}
			seen[p.Number] = true
		}
		// The same disk as a stream: sectors in order, zeros between.
		sc := newScanner(false, false)
		gap := int64(0)
		for lba := uint64(0); lba < 256; lba++ {
			s, ok := d[lba]
			if !ok {
				gap += SectorSize
				continue
			}
			if gap > 0 {
				sc.Zero(gap)
				gap = 0
			}
			sc.Write(s)
		}
		sc.Zero(gap)
		st, err := sc.table()
		if err != nil {
			t.Fatalf("the stream reader fails where ReadTable does not: %v", err)
		}
		if len(st.Partitions) > len(tab.Partitions) {
			t.Fatalf("stream reader found %d partitions, ReadTable %d", len(st.Partitions), len(tab.Partitions))
		}
		for i, p := range st.Partitions {
			if p != tab.Partitions[i] {
				t.Fatalf("partition %d: stream %+v, ReadTable %+v", i, p, tab.Partitions[i])
			}
		}
	})
}
