package agent

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

func TestRamIndex(t *testing.T) {
	for in, want := range map[string]int{
		"/dev/ram0": 0, "/dev/ram3": 3, "/dev/ram15": 15,
		"/dev/ram": -1, "/dev/ramdisk": -1, "/dev/ram1p1": -1, "dev/ram0": -1, "/dev/vda": -1, "/dev/ram1234": -1,
	} {
		if got := ramIndex(in); got != want {
			t.Errorf("ramIndex(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestFsOf(t *testing.T) {
	at := func(off int, magic string, size int) []byte {
		b := make([]byte, size)
		copy(b[off:], magic)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want string
		err  string
	}{
		{"squashfs", at(0, "hsqs", 4096), "squashfs", ""},
		{"ext4", at(1080, "\x53\xef", 4096), "ext4", ""},
		{"xfs", at(0, "XFSB", 4096), "xfs", ""},
		{"iso9660", at(32769, "CD001", 64<<10), "iso9660", ""},
		{"zstd", at(0, "\x28\xb5\x2f\xfd", 4096), "", "zstd-compressed"},
		{"zeros", make([]byte, 4096), "", "no filesystem"},
		{"short", []byte("hs"), "", "no filesystem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fsOf(tt.b, "img")
			if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Errorf("fsOf = %q, %v; want %q, error containing %q", got, err, tt.want, tt.err)
			}
		})
	}
}

// prepare refuses, before anything is written, a stage2 it cannot hold.
func TestPrepareRefuses(t *testing.T) {
	a := &agent{cfg: Config{}, con: &console{w: io.Discard, now: time.Now}}
	tests := []struct {
		name string
		f    wire.SetupFile
		err  string
	}{
		{"cooked to a ramdisk", wire.SetupFile{Output: "/dev/ram7", InputName: "s.sqfs.zst", Cooked: true, Size: 1 << 20}, "sent raw"},
		{"larger than the RAM", wire.SetupFile{Output: "/dev/ram7", InputName: "s.sqfs", Size: 1 << 60}, "MiB of RAM"},
		{"no brd, not init", wire.SetupFile{Output: "/dev/ram250", InputName: "s.sqfs", Size: 1 << 20}, "modprobe brd rd_nr=251 rd_size=1024"},
		{"unknown size", wire.SetupFile{Output: "/dev/ram250", InputName: "s.sqfs", Size: -1}, "size unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			err := a.prepare(&f)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("prepare = %v, want an error containing %q", err, tt.err)
			}
			if f.Mount != DefaultStage2Mount {
				t.Errorf("mount %q, want the default %s for a ramdisk", f.Mount, DefaultStage2Mount)
			}
		})
	}
	// An ordinary output is not a stage2 and passes untouched.
	f := wire.SetupFile{Output: "/dev/vda", Size: 1 << 60}
	if err := a.prepare(&f); err != nil || f.Mount != "" {
		t.Errorf("prepare(/dev/vda) = %v, mount %q", err, f.Mount)
	}
	// A stage2 file gets its directory.
	dir := t.TempDir()
	f = wire.SetupFile{Output: filepath.Join(dir, "run/herd/s2.img"), Mount: "/stage2", Size: 1 << 20}
	if err := a.prepare(&f); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "run/herd")); err != nil || !st.IsDir() {
		t.Errorf("stage2 directory not made: %v", err)
	}
}
