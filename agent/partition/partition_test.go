package partition

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/agent/hostsys"
	"github.com/herdproject/herd/kickstart"
	"github.com/herdproject/herd/ring/blockdev"
)

const gib = 1 << 30

// kaGuide is the Mandriva cluster cloning guide's description (as in
// kickstart/ka_test.go).
const kaGuide = "linux 3500 extended fill logical swap 500 logical linux fill\n"

func parseKa(t *testing.T, desc string) []kickstart.Part {
	t.Helper()
	p, err := kickstart.ParseKa("desc", strings.NewReader(desc))
	if err != nil {
		t.Fatal(err)
	}
	return p.Parts
}

func parseKS(t *testing.T, path string) []kickstart.Part {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := kickstart.Parse(filepath.Base(path), f)
	if err != nil {
		t.Fatal(err)
	}
	return p.Parts
}

// at is a partition of the wanted table; start and size in MiB.
func at(p kickstart.Part, n int, start, size int64, typ string, boot bool) Partition {
	return Partition{Part: p, Number: n, Start: start * MiB, Size: size * MiB, Type: typ, Bootable: boot}
}

func part(mount, fstype string, size int64, grow bool, maxSize int64, line int) kickstart.Part {
	return kickstart.Part{Mount: mount, FSType: fstype, SizeMiB: size, Grow: grow, MaxSizeMiB: maxSize, Line: line}
}

// fiveParts is a kickstart plan with more partitions than a dos table has
// primary slots.
func fiveParts() []kickstart.Part {
	return []kickstart.Part{
		part("/boot", "ext4", 512, false, 0, 1),
		part("swap", "swap", 1024, false, 0, 2),
		part("/", "xfs", 4096, true, 0, 3),
		part("/var", "ext4", 2048, false, 0, 4),
		part("/home", "ext4", 1024, true, 0, 5),
	}
}

func TestCompute(t *testing.T) {
	ka := parseKa(t, kaGuide)
	kaFixed := parseKa(t, "linux 1000 extended 3000 logical swap 500 logical linux fill")
	ks := parseKS(t, "../../kickstart/testdata/compute.ks")
	five := fiveParts()
	madeExt := kickstart.Part{Kind: kickstart.Extended, Line: 4}
	capped := []kickstart.Part{
		part("/boot", "ext4", 1000, false, 0, 1),
		part("/", "ext4", 1000, true, 2000, 2),
		part("/home", "ext4", 3000, true, 0, 3),
	}
	allCapped := []kickstart.Part{
		part("/", "ext4", 1000, true, 2000, 1),
		part("swap", "swap", 100, true, 500, 2),
	}
	shared := []kickstart.Part{
		part("/a", "ext4", 1000, true, 0, 1),
		part("/b", "ext4", 3000, true, 0, 2),
	}
	efi := []kickstart.Part{
		part("/boot/efi", "vfat", 512, false, 0, 1),
		part("/boot", "ext4", 1024, false, 0, 2),
		part("swap", "swap", 2048, false, 0, 3),
		part("/", "xfs", 4096, true, 0, 4),
		part("/data", "vfat", 1024, false, 0, 5),
	}
	for _, tc := range []struct {
		name     string
		size     int64
		label    string
		parts    []kickstart.Part
		bootable string
		want     []Partition
	}{
		{
			name: "ka guide on 8 GiB", size: 8 * gib, label: "dos", parts: ka, bootable: "/",
			want: []Partition{
				at(ka[0], 1, 1, 3500, "83", false),
				at(ka[1], 2, 3501, 4691, "5", false),
				at(ka[2], 5, 3502, 500, "82", false),
				at(ka[3], 6, 4003, 4189, "83", false),
			},
		},
		{
			name: "ka fixed extended", size: 8 * gib, label: "dos", parts: kaFixed,
			want: []Partition{
				at(kaFixed[0], 1, 1, 1000, "83", false),
				at(kaFixed[1], 2, 1001, 3000, "5", false),
				at(kaFixed[2], 5, 1002, 500, "82", false),
				at(kaFixed[3], 6, 1503, 2498, "83", false),
			},
		},
		{
			// / is capped at --maxsize=65536; /scratch takes the rest.
			name: "compute.ks on 100 GiB", size: 100 * gib, label: "dos", parts: ks, bootable: "/boot",
			want: []Partition{
				at(ks[0], 1, 1, 512, "83", true),
				at(ks[1], 2, 513, 2048, "82", false),
				at(ks[2], 3, 2561, 65536, "83", false),
				at(ks[3], 4, 68097, 34303, "83", false),
			},
		},
		{
			// Growers start from 8192 and 1024 MiB: the 100 MiB left go
			// 8:1, rounding's MiB to the last.
			name: "compute.ks just fits", size: (1 + 512 + 2048 + 8192 + 1024 + 100) * MiB, label: "dos", parts: ks, bootable: "/boot",
			want: []Partition{
				at(ks[0], 1, 1, 512, "83", true),
				at(ks[1], 2, 513, 2048, "82", false),
				at(ks[2], 3, 2561, 8192+88, "83", false),
				at(ks[3], 4, 2561+8192+88, 1024+12, "83", false),
			},
		},
		{
			// 5239 MiB to share 1:3; / reaches 2000 and /home gets the rest.
			name: "grow with maxsize", size: 10 * gib, label: "dos", parts: capped, bootable: "/boot",
			want: []Partition{
				at(capped[0], 1, 1, 1000, "83", true),
				at(capped[1], 2, 1001, 2000, "83", false),
				at(capped[2], 3, 3001, 7239, "83", false),
			},
		},
		{
			name: "every grower capped leaves room free", size: 10 * gib, label: "gpt", parts: allCapped,
			want: []Partition{
				at(allCapped[0], 1, 1, 2000, "L", false),
				at(allCapped[1], 2, 2001, 500, "S", false),
			},
		},
		{
			name: "growers share in proportion", size: 8 * gib, label: "dos", parts: shared,
			want: []Partition{
				at(shared[0], 1, 1, 2047, "83", false),
				at(shared[1], 2, 2048, 6144, "83", false),
			},
		},
		{
			// 3 primaries, an extended partition for /var and /home that
			// grows with /home: / and /home share 11773 MiB 4:1.
			name: "5 kickstart parts on dos", size: 20 * gib, label: "dos", parts: five, bootable: "/boot",
			want: []Partition{
				at(five[0], 1, 1, 512, "83", true),
				at(five[1], 2, 513, 1024, "82", false),
				at(five[2], 3, 1537, 13514, "83", false),
				at(madeExt, 4, 15051, 5429, "5", false),
				at(five[3], 5, 15052, 2048, "83", false),
				at(five[4], 6, 17101, 3379, "83", false),
			},
		},
		{
			name: "gpt keeps the last MiB", size: 16 * gib, label: "gpt", parts: efi, bootable: "/boot",
			want: []Partition{
				at(efi[0], 1, 1, 512, "U", false),
				at(efi[1], 2, 513, 1024, "L", true),
				at(efi[2], 3, 1537, 2048, "S", false),
				at(efi[3], 4, 3585, 11774, "L", false),
				at(efi[4], 5, 15359, 1024, typeBasicData, false),
			},
		},
		{
			name: "vfat types on dos", size: 16 * gib, label: "dos", parts: efi[:1:1],
			want: []Partition{at(efi[0], 1, 1, 512, "ef", false)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Compute("/dev/sda", tc.size, tc.label, tc.parts, tc.bootable)
			if err != nil {
				t.Fatal(err)
			}
			if got.Disk != "/dev/sda" || got.Label != tc.label || got.Size != tc.size {
				t.Errorf("table %s %s %d, want /dev/sda %s %d", got.Disk, got.Label, got.Size, tc.label, tc.size)
			}
			if diff := cmp.Diff(tc.want, got.Parts); diff != "" {
				t.Errorf("partitions (-want +got):\n%s", diff)
			}
			checkLayout(t, got)
		})
	}
}

// checkLayout checks what every table must be: aligned, in the disk,
// no overlaps, logicals inside the extended partition after an EBR MiB.
func checkLayout(t *testing.T, tb *Table) {
	t.Helper()
	end := tb.Size / MiB * MiB
	if tb.Label == "gpt" {
		end -= MiB
	}
	var ext *Partition
	for i, p := range tb.Parts {
		if p.Start%MiB != 0 || p.Size%MiB != 0 || p.Size <= 0 || p.Start < MiB || p.Start+p.Size > end {
			t.Errorf("partition %d: start %d size %d: not aligned, empty or outside [1 MiB, %d)", p.Number, p.Start, p.Size, end)
		}
		if p.Part.Kind == kickstart.Extended {
			ext = &tb.Parts[i]
		}
		logical := tb.Label == "dos" && p.Number >= 5
		if logical && (ext == nil || p.Start-MiB < ext.Start || p.Start+p.Size > ext.Start+ext.Size) {
			t.Errorf("logical partition %d (%d+%d) is not inside the extended one after its EBR", p.Number, p.Start, p.Size)
		}
		for _, q := range tb.Parts[:i] {
			nested := logical && q.Part.Kind == kickstart.Extended
			if !nested && p.Start < q.Start+q.Size && q.Start < p.Start+p.Size {
				t.Errorf("partitions %d and %d overlap", q.Number, p.Number)
			}
		}
	}
}

// Sorting parts into primary and logical partitions on dos.
func TestComputeDosNumbers(t *testing.T) {
	five := fiveParts()
	five[4].Kind = kickstart.Primary // --asprimary on /home
	got, err := Compute("/dev/vda", 20*gib, "dos", five, "")
	if err != nil {
		t.Fatal(err)
	}
	var nums []string
	for _, p := range got.Parts {
		nums = append(nums, strconv.Itoa(p.Number)+":"+p.Part.Mount+":"+p.Type)
	}
	want := []string{"1:/boot:83", "2:swap:82", "3:/home:83", "4::5", "5:/:83", "6:/var:83"}
	if diff := cmp.Diff(want, nums); diff != "" {
		t.Errorf("number:mount:type (-want +got):\n%s", diff)
	}
	checkLayout(t, got)

	// Explicit kinds: a primary after the extended partition is number 3
	// and lies after it on the disk.
	parts := []kickstart.Part{
		{Kind: kickstart.Primary, SizeMiB: 100, Line: 1},
		{Kind: kickstart.Extended, SizeMiB: 300, Line: 2},
		{Kind: kickstart.Logical, SizeMiB: 100, Line: 3},
		{Kind: kickstart.Any, Mount: "swap", FSType: "swap", SizeMiB: 100, Line: 4},
		{Kind: kickstart.Primary, Grow: true, Line: 5},
	}
	got, err = Compute("/dev/vda", 1*gib, "dos", parts, "")
	if err != nil {
		t.Fatal(err)
	}
	want2 := []Partition{
		at(parts[0], 1, 1, 100, "83", false),
		at(parts[1], 2, 101, 300, "5", false),
		at(parts[4], 3, 401, 623, "83", false),
		at(parts[2], 5, 102, 100, "83", false),
		at(parts[3], 6, 203, 100, "82", false),
	}
	if diff := cmp.Diff(want2, got.Parts); diff != "" {
		t.Errorf("explicit kinds (-want +got):\n%s", diff)
	}
	checkLayout(t, got)
}

func TestComputeErrors(t *testing.T) {
	ks := parseKS(t, "../../kickstart/testdata/compute.ks")
	ka := parseKa(t, kaGuide)
	prim := func(n int) []kickstart.Part {
		var ps []kickstart.Part
		for i := range n {
			ps = append(ps, kickstart.Part{Mount: "/p" + strconv.Itoa(i), FSType: "ext4", SizeMiB: 10, Kind: kickstart.Primary, Line: i + 1})
		}
		return ps
	}
	sixAsPrimary := append(prim(4), part("/x", "ext4", 10, false, 0, 5), part("/y", "ext4", 10, false, 0, 6))
	bigLogical := fiveParts()
	bigLogical[4].SizeMiB = 1 << 20
	for _, tc := range []struct {
		name  string
		disk  string
		size  int64
		label string
		parts []kickstart.Part
		want  string
	}{
		{"no parts", "/dev/sda", 8 * gib, "dos", nil, "partition /dev/sda: the plan has no partitions for it"},
		{"disk too small", "/dev/sda", 4 * gib, "dos", ks,
			"line 14: part / needs at least 8192 MiB but only 1535 MiB are left on /dev/sda (4096 MiB): shrink the plan or use a larger disk"},
		{"logical too big", "/dev/sda", 20 * gib, "dos", bigLogical, "line 5: part /home needs at least 1048576 MiB but only "},
		{"dos over 2 TiB", "/dev/sdb", 3 << 40, "dos", ks, "more than a dos partition table can describe (2 TiB): use clearpart --disklabel=gpt"},
		{"ka on gpt", "/dev/sda", 8 * gib, "gpt", ka, "line 1: the extended partition on /dev/sda, a gpt disk: gpt has no extended or logical partitions"},
		{"logical first", "/dev/sda", 8 * gib, "dos", []kickstart.Part{{Kind: kickstart.Logical, SizeMiB: 10, Line: 3}},
			"line 3: logical linux partition without an extended partition before it on /dev/sda"},
		{"two extended", "/dev/sda", 8 * gib, "dos", append(parseKa(t, "extended 100 logical linux 10"), kickstart.Part{Kind: kickstart.Extended, Grow: true, Line: 2}),
			"line 2: a second extended partition on /dev/sda"},
		{"five primaries", "/dev/sda", 8 * gib, "dos", append(prim(4), kickstart.Part{Kind: kickstart.Extended, Grow: true, Line: 5}, kickstart.Part{Kind: kickstart.Logical, SizeMiB: 1, Line: 6}),
			"line 5: the extended partition is a fifth primary or extended partition on /dev/sda"},
		{"four asprimary of six", "/dev/sda", 8 * gib, "dos", sixAsPrimary, "line 4: part /p3: more than 3 partitions with --asprimary among 6"},
		{"extended too small", "/dev/sda", 8 * gib, "dos", []kickstart.Part{{Kind: kickstart.Extended, SizeMiB: 100, Line: 1}, {Kind: kickstart.Logical, SizeMiB: 100, Line: 2}},
			"line 1: the logical partitions need 101 MiB (with 1 MiB for each one's EBR) but the extended partition has 100 MiB"},
		{"unknown label", "/dev/sda", 8 * gib, "msdos", ks, `label "msdos": want dos or gpt`},
		{"relative disk", "sda", 8 * gib, "dos", ks, "want the disk's absolute device path"},
		{"tiny disk", "/dev/sda", MiB, "dos", ks, "too small for a partition table"},
		{"unknown fstype", "/dev/sda", 8 * gib, "gpt", []kickstart.Part{part("/", "btrfs", 10, false, 0, 7)}, "line 7: part / on /dev/sda: --fstype=btrfs: no partition type"},
		{"129 on gpt", "/dev/sda", 8 * gib, "gpt", append(prim(128), part("/z", "ext4", 1, false, 0, 129)), "line 129: part /z is partition 129 on /dev/sda: a gpt table has 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compute(tc.disk, tc.size, tc.label, tc.parts, "/")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ...%s...", err, tc.want)
			}
		})
	}
}

func TestScript(t *testing.T) {
	ka, err := Compute("/dev/loop3", 8*gib, "dos", parseKa(t, kaGuide), "")
	if err != nil {
		t.Fatal(err)
	}
	ka.Parts[0].Bootable = true
	efi, err := Compute("/dev/nvme0n1", 16*gib, "gpt", []kickstart.Part{
		part("/boot/efi", "vfat", 512, false, 0, 1),
		part("/boot", "ext4", 1024, false, 0, 2),
		part("swap", "swap", 2048, false, 0, 3),
		part("/", "xfs", 4096, true, 0, 4),
		part("/data", "vfat", 1024, false, 0, 5),
	}, "/boot")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tb   *Table
		want string
	}{
		{"ka dos", ka, `label: dos

/dev/loop3p1 : start=1MiB, size=3500MiB, type=83, bootable
/dev/loop3p2 : start=3501MiB, size=4691MiB, type=5
/dev/loop3p5 : start=3502MiB, size=500MiB, type=82
/dev/loop3p6 : start=4003MiB, size=4189MiB, type=83
`},
		{"efi gpt", efi, `label: gpt

/dev/nvme0n1p1 : start=1MiB, size=512MiB, type=U
/dev/nvme0n1p2 : start=513MiB, size=1024MiB, type=L, attrs="LegacyBIOSBootable"
/dev/nvme0n1p3 : start=1537MiB, size=2048MiB, type=S
/dev/nvme0n1p4 : start=3585MiB, size=11774MiB, type=L
/dev/nvme0n1p5 : start=15359MiB, size=1024MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
`},
	} {
		if diff := cmp.Diff(tc.want, tc.tb.Script()); diff != "" {
			t.Errorf("%s: script (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestDeviceName(t *testing.T) {
	for _, tc := range []struct {
		disk string
		n    int
		want string
	}{
		{"/dev/sda", 1, "/dev/sda1"},
		{"/dev/vda", 6, "/dev/vda6"},
		{"/dev/loop3", 1, "/dev/loop3p1"},
		{"/dev/nvme0n1", 1, "/dev/nvme0n1p1"},
		{"/dev/mmcblk0", 12, "/dev/mmcblk0p12"},
	} {
		if got := DeviceName(tc.disk, tc.n); got != tc.want {
			t.Errorf("DeviceName(%s, %d) = %s, want %s", tc.disk, tc.n, got, tc.want)
		}
	}
}

// FuzzCompute checks the layout of whatever Compute accepts.
func FuzzCompute(f *testing.F) {
	f.Add(int64(8192), false, uint8(5), int64(512), int64(1024), int64(300), uint8(0b10100), int64(2000))
	f.Add(int64(300), true, uint8(3), int64(10), int64(20), int64(30), uint8(0b111), int64(0))
	f.Add(int64(100000), false, uint8(9), int64(100), int64(1), int64(4000), uint8(0b1), int64(5))
	f.Fuzz(func(t *testing.T, diskMiB int64, gpt bool, n uint8, a, b, c int64, grow uint8, maxSize int64) {
		if diskMiB <= 0 || diskMiB > 1<<30 || n == 0 || n > 12 {
			return
		}
		sizes := []int64{a, b, c}
		var parts []kickstart.Part
		for i := range int(n) {
			p := part("/p"+strconv.Itoa(i), "ext4", sizes[i%3], grow&(1<<(i%8)) != 0, 0, i+1)
			if p.SizeMiB < 0 || p.SizeMiB > 1<<30 || maxSize < 0 || maxSize > 1<<30 {
				return
			}
			if p.SizeMiB == 0 && !p.Grow {
				p.SizeMiB = 1
			}
			if p.Grow && i%2 == 0 {
				p.MaxSizeMiB = max(maxSize, p.SizeMiB)
			}
			parts = append(parts, p)
		}
		label := "dos"
		if gpt {
			label = "gpt"
		}
		tb, err := Compute("/dev/sda", diskMiB*MiB, label, parts, "")
		if err != nil {
			return
		}
		checkLayout(t, tb)
		for _, p := range tb.Parts {
			q := p.Part
			if q.Kind != kickstart.Extended && (p.Size < max(q.SizeMiB, 1)*MiB || q.MaxSizeMiB > 0 && p.Size > q.MaxSizeMiB*MiB || !q.Grow && p.Size != q.SizeMiB*MiB) {
				t.Errorf("partition %d: %d MiB for %+v", p.Number, p.Size/MiB, q)
			}
		}
	})
}

// sfdiskJSON is what sfdisk --json prints.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		SectorSize int64  `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			Bootable bool   `json:"bootable"`
			Attrs    string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// gptTypes are the GUIDs of the type names Compute uses.
var gptTypes = map[string]string{
	"L": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
	"S": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
	"U": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
}

// onDisk is a partition as sfdisk reads it back, comparable with the
// plan.
type onDisk struct {
	Number      int
	Start, Size int64
	Type        string
	Bootable    bool
}

// readBack reads dev's partition table with sfdisk --json.
func readBack(t *testing.T, dev string) (string, []onDisk) {
	t.Helper()
	sfdisk, err := hostsys.FindTool("sfdisk", "fdisk")
	if err != nil {
		t.Skip(err)
	}
	out, err := exec.Command(sfdisk, "--json", dev).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", dev, err)
	}
	var js sfdiskJSON
	if err := json.Unmarshal(out, &js); err != nil {
		t.Fatalf("sfdisk --json %s: %v\n%s", dev, err, out)
	}
	pt := js.PartitionTable
	var parts []onDisk
	for _, p := range pt.Partitions {
		num, err := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(p.Node, dev), "p"))
		if err != nil {
			t.Fatalf("partition node %s of %s: %v", p.Node, dev, err)
		}
		parts = append(parts, onDisk{Number: num, Start: p.Start * pt.SectorSize, Size: p.Size * pt.SectorSize, Type: p.Type, Bootable: p.Bootable || strings.Contains(p.Attrs, "LegacyBIOSBootable")})
	}
	return pt.Label, parts
}

// planned is what readBack should find for tb.
func planned(tb *Table) []onDisk {
	var parts []onDisk
	for _, p := range tb.Parts {
		typ := p.Type
		if g, ok := gptTypes[typ]; ok && tb.Label == "gpt" {
			typ = g
		}
		parts = append(parts, onDisk{Number: p.Number, Start: p.Start, Size: p.Size, Type: typ, Bootable: p.Bootable})
	}
	return parts
}

func checkOnDisk(t *testing.T, tb *Table) {
	t.Helper()
	label, got := readBack(t, tb.Disk)
	if label != tb.Label {
		t.Errorf("label %s on disk, want %s", label, tb.Label)
	}
	if diff := cmp.Diff(planned(tb), got); diff != "" {
		t.Errorf("table on %s (-plan +disk):\n%s", tb.Disk, diff)
	}
}

// sparseFile makes a sparse file of size bytes.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// loopDevice attaches a sparse file of size bytes to a loop device with
// partition scanning; it is detached when the test ends.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	losetup, err := hostsys.FindTool("losetup", "mount")
	if err != nil {
		t.Skip(err)
	}
	img := sparseFile(t, size)
	out, err := exec.Command(losetup, "-f", "--show", "-P", img).CombinedOutput()
	if err != nil {
		t.Skipf("losetup -f --show -P: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// smallParts is fiveParts for a 256 MiB disk.
func smallParts() []kickstart.Part {
	return []kickstart.Part{
		part("/boot", "ext4", 32, false, 0, 1),
		part("swap", "swap", 16, false, 0, 2),
		part("/", "ext4", 64, true, 0, 3),
		part("/var", "ext4", 32, false, 0, 4),
		part("/home", "ext4", 16, true, 0, 5),
	}
}

// Apply on a loop device: dos with logicals, then gpt over it (the
// kernel drops the old partitions 5 and 6).
func TestApplyLoop(t *testing.T) {
	dev := loopDevice(t, 256*MiB)
	size, err := blockdev.SizeOf(dev)
	if err != nil || size != 256*MiB {
		t.Fatalf("Size(%s) = %d, %v; want %d", dev, size, err, 256*MiB)
	}
	for _, label := range []string{"dos", "gpt"} {
		t.Run(label, func(t *testing.T) {
			parts := smallParts()
			if label == "gpt" {
				parts = append(parts[:3:3], part("/boot/efi", "vfat", 32, false, 0, 6))
			}
			tb, err := Compute(dev, size, label, parts, "/boot")
			if err != nil {
				t.Fatal(err)
			}
			if err := Apply(ctxT(t), tb); err != nil {
				t.Fatal(err)
			}
			checkOnDisk(t, tb)
			name := filepath.Base(dev)
			for _, p := range tb.Parts {
				if want := DeviceName(dev, p.Number); p.Device != want {
					t.Errorf("partition %d: Device %q, want %s", p.Number, p.Device, want)
				}
				fi, err := os.Stat(p.Device)
				if err != nil || !blockdev.IsBlock(fi.Mode()) {
					t.Errorf("partition %d: %v, want a block device", p.Number, err)
				}
				start, err := readInt(filepath.Join(sysBlock, name, filepath.Base(p.Device), "start"))
				if err != nil || start*512 != p.Start {
					t.Errorf("partition %d: the kernel's start %d sectors (%v), want %d bytes", p.Number, start, err, p.Start)
				}
			}
			have, err := kernelParts(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(have) != len(tb.Parts) {
				t.Errorf("the kernel has %d partitions, want %d: %+v", len(have), len(tb.Parts), have)
			}
		})
	}
}

// Apply refuses a disk whose partition is mounted, and leaves its table
// as it was.
func TestApplyRefusesMounted(t *testing.T) {
	dev := loopDevice(t, 256*MiB)
	mke2fs, err := hostsys.FindTool("mke2fs", "e2fsprogs")
	if err != nil {
		t.Skip(err)
	}
	tb, err := Compute(dev, 256*MiB, "dos", smallParts()[:2], "")
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctxT(t), tb); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mke2fs, "-F", "-q", "-t", "ext4", tb.Parts[0].Device).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", tb.Parts[0].Device, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount %s: %v: %s", tb.Parts[0].Device, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	sfdisk, _ := hostsys.FindTool("sfdisk", "fdisk")
	before, err := exec.Command(sfdisk, "--dump", dev).Output()
	if err != nil {
		t.Fatal(err)
	}

	other, err := Compute(dev, 256*MiB, "gpt", smallParts(), "")
	if err != nil {
		t.Fatal(err)
	}
	err = Apply(ctxT(t), other)
	t.Log(err)
	want := tb.Parts[0].Device + " is mounted on " + mnt + ": unmount it first"
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		t.Errorf("Apply with %s mounted: %v, want ErrInUse ...%s...", tb.Parts[0].Device, err, want)
	}
	after, err := exec.Command(sfdisk, "--dump", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(before), string(after)); diff != "" {
		t.Errorf("the table changed (-before +after):\n%s", diff)
	}
	for _, p := range other.Parts {
		if p.Device != "" {
			t.Errorf("partition %d: Device %q after a refusal", p.Number, p.Device)
		}
	}
}

// Apply on a disk image: no partition devices.
func TestApplyFile(t *testing.T) {
	if _, err := hostsys.FindTool("sfdisk", "fdisk"); err != nil {
		t.Skip(err)
	}
	img := sparseFile(t, 256*MiB)
	size, err := blockdev.SizeOf(img)
	if err != nil || size != 256*MiB {
		t.Fatalf("Size(%s) = %d, %v; want %d", img, size, err, 256*MiB)
	}
	for _, label := range []string{"gpt", "dos"} {
		tb, err := Compute(img, size, label, smallParts(), "/boot")
		if err != nil {
			t.Fatal(err)
		}
		if err := Apply(ctxT(t), tb); err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		checkOnDisk(t, tb)
		for _, p := range tb.Parts {
			if p.Device != "" {
				t.Errorf("%s: partition %d of a file: Device %q", label, p.Number, p.Device)
			}
		}
	}
}

func TestApplyErrors(t *testing.T) {
	img := sparseFile(t, 64*MiB)
	tb, err := Compute(img, 64*MiB, "dos", smallParts()[:1], "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128*MiB); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctxT(t), tb); err == nil || !strings.Contains(err.Error(), "the disk has 134217728 bytes, the table was computed for 67108864: compute it again") {
		t.Errorf("Apply after the disk grew: %v", err)
	}
	if err := Apply(ctxT(t), &Table{}); err == nil {
		t.Error("Apply of an empty table: no error")
	}
	tb.Disk = filepath.Join(t.TempDir(), "missing")
	if err := Apply(ctxT(t), tb); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Apply to a missing disk: %v, want ErrNotExist", err)
	}
}
