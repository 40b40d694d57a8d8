package diskimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// testImage writes a sparse disk image of 8 MiB + 1000 bytes: an MBR with
// two partitions (one extended, with a logical one), data blocks, blocks
// of written zeros, a hole, a block that is zero but for its last byte,
// and a short tail. It returns the path.
func testImage(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8<<20 + 1000
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	mbr := sector(0xc0ffee00, true, entry{0x80, 0x0e, 2048, 4096}, entry{0, 0x05, 6144, 10240})
	mbr[0] = 0xFA // boot code
	write := func(off int64, b []byte) {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	write(0, mbr)
	write(6144*SectorSize, sector(0, true, entry{0, 0x83, 2048, 8192}))
	data := bytes.Repeat([]byte("herd golden data"), 64<<10/16) // 64 KiB
	write(1<<20, data)
	write(2<<20, make([]byte, 256<<10)) // allocated zeros: not data
	write(4<<20+4095, []byte{1})        // one byte makes its block data
	write(5<<20+100, data[:5000])       // unaligned: touches two blocks
	write(size-10, []byte("tail bytes"))
	return p
}

// naive measures an image by reading it whole.
func naive(t *testing.T, path string) (size, data int64, sum string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(b); off += Block {
		blk := b[off:min(off+Block, len(b))]
		if !bytes.Equal(blk, make([]byte, len(blk))) {
			data += int64(len(blk))
		}
	}
	h := sha256.Sum256(b)
	return int64(len(b)), data, hex.EncodeToString(h[:])
}

func TestInspectRaw(t *testing.T) {
	img := testImage(t, t.TempDir())
	size, data, sum := naive(t, img)
	info, err := Inspect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != FormatRaw || info.Size != size || info.DataSize != data || info.SHA256 != sum {
		t.Errorf("got format %s size %d data %d sha %s, want raw %d %d %s", info.Format, info.Size, info.DataSize, info.SHA256, size, data, sum)
	}
	// 64 KiB, the block with one byte, two blocks of the unaligned
	// write, the partial tail block, and the MBR and EBR blocks.
	if want := int64(64<<10 + 4096 + 2*4096 + 1000 + 2*4096); data != want {
		t.Errorf("naive data size %d, want %d: the test image changed?", data, want)
	}
	if info.Allocated <= 0 || info.Allocated >= info.Size {
		t.Errorf("allocated %d: want a sparse file's (0 < n < %d)", info.Allocated, info.Size)
	}
	wantTable := &Table{Label: "dos", DiskID: "0xc0ffee00", BootCode: true, Partitions: []Partition{
		{Number: 1, Type: 0x0e, TypeName: "W95 FAT16 (LBA)", Bootable: true, Start: 2048, Sectors: 4096},
		{Number: 2, Type: 0x05, TypeName: "Extended", Start: 6144, Sectors: 10240},
		{Number: 5, Type: 0x83, TypeName: "Linux", Start: 8192, Sectors: 8192},
	}}
	if d := cmp.Diff(wantTable, info.Table); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
}

// compressWith writes src compressed as format, with the real program
// when it is installed (the formats an operator's tools make), else with
// the Go encoder; "" when neither can.
func compressWith(t *testing.T, format, src string) string {
	t.Helper()
	ext := map[string]string{FormatZstd: ".zst", FormatGzip: ".gz", FormatXz: ".xz", FormatZ: ".Z"}[format]
	dst := src + ext
	prog := map[string][]string{
		FormatZstd: {"zstd", "-q", "-c"},
		FormatGzip: {"gzip", "-c"},
		FormatXz:   {"xz", "-c", "-T1"},
		FormatZ:    {"compress", "-c", "-f"},
	}[format]
	if _, err := exec.LookPath(prog[0]); err == nil {
		out, err := os.Create(dst)
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(prog[0], append(prog[1:], src)...)
		cmd.Stdout, cmd.Stderr = out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v %s", prog[0], err, stderr.Bytes())
		}
		out.Close()
		return dst
	}
	in, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	switch format {
	case FormatZstd:
		w, _ := zstd.NewWriter(&buf)
		w.Write(in)
		w.Close()
	case FormatGzip:
		w := gzip.NewWriter(&buf)
		w.Write(in)
		w.Close()
	default:
		return ""
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestInspectCompressed(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, dir)
	want, err := Inspect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{FormatZstd, FormatGzip, FormatXz, FormatZ} {
		t.Run(format, func(t *testing.T) {
			// Real tools write only what they are asked for: each
			// format gets its own copy of the image.
			sub := t.TempDir()
			src := filepath.Join(sub, "disk.img")
			b, _ := os.ReadFile(img)
			os.WriteFile(src, b, 0o644)
			c := compressWith(t, format, src)
			if c == "" {
				t.Skipf("no %s encoder here", format)
			}
			got, err := Inspect(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != format || got.Size != want.Size || got.DataSize != want.DataSize || got.SHA256 != want.SHA256 {
				t.Errorf("got %s %d %d %s, want %s %d %d %s", got.Format, got.Size, got.DataSize, got.SHA256, format, want.Size, want.DataSize, want.SHA256)
			}
			if d := cmp.Diff(want.Table, got.Table); d != "" {
				t.Errorf("table (-raw +compressed):\n%s", d)
			}
		})
	}
}

func TestInspectDamaged(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, dir)
	c := compressWith(t, FormatZstd, img)
	b, _ := os.ReadFile(c)
	trunc := filepath.Join(dir, "cut.img.zst")
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	if _, err := Inspect(context.Background(), trunc); err == nil || !strings.Contains(err.Error(), "truncated or damaged") {
		t.Errorf("truncated zstd: err = %v, want a decode error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Inspect(ctx, img); err == nil {
		t.Error("cancelled context: no error")
	}
}

func TestInspectNoTable(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"blank.img": make([]byte, 8192),
		"tiny.img":  []byte("hi"),
		"empty.img": nil,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o644)
		info, err := Inspect(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if info.Table != nil || info.NoTable == "" || info.Size != int64(len(content)) {
			t.Errorf("%s: table %v (%q), size %d", name, info.Table, info.NoTable, info.Size)
		}
	}
}

func TestDetect(t *testing.T) {
	zst := []byte{0x28, 0xB5, 0x2F, 0xFD, 0, 0}
	gz := []byte{0x1F, 0x8B, 8, 0}
	xz := []byte{0xFD, '7', 'z', 'X', 'Z', 0}
	tests := []struct {
		name    string
		head    []byte
		want    string
		wantErr string
	}{
		{"golden.img", []byte{0xFA, 0}, FormatRaw, ""},
		{"golden.img.zst", zst, FormatZstd, ""},
		{"golden.img.ZST", zst, FormatZstd, ""},
		{"golden.zst.img", zst, FormatZstd, ""}, // magic wins when the name says nothing
		{"disk.gz", gz, FormatGzip, ""},
		{"disk.xz", xz, FormatXz, ""},
		{"disk.Z", []byte{0x1F, 0x9D, 0x90}, FormatZ, ""},
		{"disk.gz", zst, "", "holds zstd data"},
		{"disk.zst", []byte("plain"), "", "magic bytes"},
		{"root.tar.zst", zst, "", "archive"},
		{"root.cpio", nil, "", "archive"},
		{"short", nil, FormatRaw, ""},
	}
	for _, tt := range tests {
		got, err := detect(tt.name, tt.head)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("detect(%s): err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("detect(%s) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
