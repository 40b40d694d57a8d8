package customize

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mkImage makes a sparse file of size bytes and runs a mkfs tool on it.
func mkImage(t *testing.T, size int64, tool string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (Debian: e2fsprogs, dosfstools, util-linux, xfsprogs, btrfs-progs)", tool)
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command(path, append(args, img)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return img
}

// blkidUUID asks util-linux's blkid, probing the file itself (no cache).
func blkidUUID(t *testing.T, img string) string {
	t.Helper()
	path, err := exec.LookPath("blkid")
	if err != nil {
		t.Skip("blkid not installed (util-linux)")
	}
	out, err := exec.Command(path, "-p", "-o", "value", "-s", "UUID", img).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", img, err)
	}
	return strings.TrimSpace(string(out))
}

func TestFindUUIDAgainstBlkid(t *testing.T) {
	tests := []struct {
		name string
		size int64
		tool string
		args []string
	}{
		{"ext4", 16 << 20, "mke2fs", []string{"-q", "-F", "-t", "ext4"}},
		{"ext4 with a chosen UUID", 16 << 20, "mke2fs", []string{"-q", "-F", "-t", "ext4", "-U", "0b4b5ab4-3b0a-4c8a-9a68-6b1d2d3c4e5f"}},
		{"ext3", 16 << 20, "mke2fs", []string{"-q", "-F", "-t", "ext3"}},
		{"ext2 1k blocks", 8 << 20, "mke2fs", []string{"-q", "-F", "-t", "ext2", "-b", "1024"}},
		{"vfat (FAT16)", 32 << 20, "mkfs.vfat", nil},
		{"vfat (FAT12)", 2 << 20, "mkfs.vfat", []string{"-F", "12"}},
		{"vfat (FAT32)", 64 << 20, "mkfs.vfat", []string{"-F", "32", "-i", "0BADF00D"}},
		{"swap", 16 << 20, "mkswap", nil},
		{"swap with a chosen UUID", 16 << 20, "mkswap", []string{"-U", "66666666-7777-4888-9999-000000000000"}},
		{"xfs", 300 << 20, "mkfs.xfs", []string{"-q"}},
		{"btrfs", 128 << 20, "mkfs.btrfs", []string{"-q"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := mkImage(t, tt.size, tt.tool, tt.args...)
			want := blkidUUID(t, img)
			if want == "" {
				t.Fatalf("blkid found no UUID on the %s image", tt.name)
			}
			got, err := FindUUID(img)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("FindUUID = %q, blkid says %q", got, want)
			}
			if strings.Contains(tt.name, "chosen") && !strings.Contains(strings.Join(tt.args, " "), got) {
				t.Errorf("FindUUID = %q, not the UUID given to %s", got, tt.tool)
			}
		})
	}
}

func TestFindUUIDSynthetic(t *testing.T) {
	uuid := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	const want = "01234567-89ab-4def-8123-456789abcdef"
	tests := []struct {
		name string
		img  func() []byte
		want string
	}{
		{"xfs", func() []byte {
			b := make([]byte, 8192)
			copy(b, "XFSB")
			copy(b[32:], uuid)
			return b
		}, want},
		{"btrfs", func() []byte {
			b := make([]byte, 70<<10)
			copy(b[65536+64:], "_BHRfS_M")
			copy(b[65536+32:], uuid)
			return b
		}, want},
		{"swap with 64 KiB pages", func() []byte {
			b := make([]byte, 65536)
			copy(b[65536-10:], "SWAPSPACE2")
			copy(b[1036:], uuid)
			return b
		}, want},
		{"ext4", func() []byte {
			b := make([]byte, 4096)
			binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
			copy(b[1024+104:], uuid)
			return b
		}, want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(img, tt.img(), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := FindUUID(img)
			if err != nil || got != tt.want {
				t.Errorf("FindUUID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestFindUUIDNone(t *testing.T) {
	for name, content := range map[string][]byte{
		"zeros":          make([]byte, 1<<20),
		"empty":          nil,
		"short":          []byte("hello"),
		"swap v0":        append(make([]byte, 4086), []byte("SWAP-SPACE")...),
		"ext, zero UUID": func() []byte { b := make([]byte, 4096); binary.LittleEndian.PutUint16(b[1080:], 0xEF53); return b }(),
		"an MBR only": func() []byte {
			b := make([]byte, 4096)
			b[510], b[511] = 0x55, 0xAA
			b[446+4] = 0x83
			return b
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(img, content, 0o644); err != nil {
				t.Fatal(err)
			}
			if u, err := FindUUID(img); !errors.Is(err, ErrNoUUID) {
				t.Errorf("FindUUID = %q, %v; want ErrNoUUID", u, err)
			}
		})
	}
	if _, err := FindUUID(filepath.Join(t.TempDir(), "missing")); err == nil || errors.Is(err, ErrNoUUID) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzProbeUUID(f *testing.F) {
	f.Add(make([]byte, 600))
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint16(b[1080:], 0xEF53)
	b[1128] = 1
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := probeUUID(b)
		if err == nil && u == "" {
			t.Fatal("no error and no UUID")
		}
	})
}
