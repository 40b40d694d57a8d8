package boottree

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/herdproject/herd/initramfs"
	"github.com/herdproject/herd/initramfs/kernel"
	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/pxe/bootlayout"
)

func TestCheckSize(t *testing.T) {
	for _, tc := range []struct {
		size, max int64
		tooBig    bool
	}{
		{size: 15 << 20, max: DefaultMaxSize},
		{size: DefaultMaxSize, max: DefaultMaxSize},
		{size: DefaultMaxSize + 1, max: DefaultMaxSize, tooBig: true},
		{size: 1 << 40, max: -1},
	} {
		err := checkSize("initramfs.cpio.gz", tc.size, tc.max)
		if errors.Is(err, ErrTooBig) != tc.tooBig {
			t.Errorf("checkSize(%d, %d) = %v, want too big: %v", tc.size, tc.max, err, tc.tooBig)
		}
		if tc.tooBig && !strings.Contains(err.Error(), "40.0 MiB") {
			t.Errorf("message does not name the limit: %v", err)
		}
	}
}

func TestChooseCompression(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz-6.1.0-56-amd64")
	log := logging.Discard()
	if c, _ := chooseCompression(Auto, k, "6.1.0-56-amd64", log); c != initramfs.Gzip {
		t.Errorf("auto without a config file = %s, want gzip", c)
	}
	cfg := filepath.Join(dir, "config-6.1.0-56-amd64")
	if err := os.WriteFile(cfg, []byte("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _ := chooseCompression(Auto, k, "6.1.0-56-amd64", log); c != initramfs.Gzip {
		t.Errorf("auto without CONFIG_RD_ZSTD = %s, want gzip", c)
	}
	if err := os.WriteFile(cfg, []byte("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _ := chooseCompression(Auto, k, "6.1.0-56-amd64", log); c != initramfs.Zstd {
		t.Errorf("auto with CONFIG_RD_ZSTD=y = %s, want zstd", c)
	}
	for in, want := range map[initramfs.Compression]initramfs.Compression{"": initramfs.Gzip, initramfs.Gzip: initramfs.Gzip, initramfs.Zstd: initramfs.Zstd} {
		if c, err := chooseCompression(in, k, "x", log); c != want || err != nil {
			t.Errorf("chooseCompression(%q) = %s, %v", in, c, err)
		}
	}
	if _, err := chooseCompression("lz4", k, "x", log); err == nil {
		t.Error("lz4 accepted")
	}
}

// TestBuildTree writes a boot tree for the installed Debian kernel (the
// initramfs package's tests look inside the initramfs).
func TestBuildTree(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the boot tree build (compiles u-root and herd)")
	}
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(images)
	if len(images) == 0 {
		t.Skip("no /boot/vmlinuz-* (apt-get install linux-image-amd64)")
	}
	k := images[len(images)-1]
	release, err := kernel.Version(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A stale gzip initramfs goes when a zstd one is written; an
	// administrator's boot.ipxe stays.
	mine := []byte("#!ipxe\necho mine\n")
	for name, b := range map[string][]byte{"initramfs.cpio.gz": []byte("stale"), bootlayout.IPXEScript: mine} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	res, err := Build(context.Background(), Config{
		Kernel: k, Dir: dir, Compression: initramfs.Zstd,
		Log: logging.New(&log, "", slog.LevelInfo, logging.Plain),
	})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, log.String())
	}
	t.Logf("%s: %s zstd, %d modules for %s, in %v", res.Initramfs, MiB(res.Build.Size), len(res.Build.Modules), release, res.Duration)
	if res.Build.KernelVersion != release {
		t.Errorf("initramfs built for %q, kernel is %q", res.Build.KernelVersion, release)
	}
	want := []string{bootlayout.Kernel, "initramfs.cpio.zst", bootlayout.PxelinuxDefault, bootlayout.IPXEScript}
	for _, f := range want {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "initramfs.cpio.gz")); err == nil {
		t.Error("the stale initramfs.cpio.gz is still there")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, bootlayout.IPXEScript)); !bytes.Equal(b, mine) {
		t.Errorf("boot.ipxe was overwritten: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, bootlayout.PxelinuxDefault)); !strings.Contains(string(b), "LOCALBOOT 0") {
		t.Errorf("pxelinux.cfg/default does not boot the disk:\n%s", b)
	}
	a, _ := os.ReadFile(k)
	b, _ := os.ReadFile(filepath.Join(dir, bootlayout.Kernel))
	if !bytes.Equal(a, b) {
		t.Error("vmlinuz differs from the kernel given")
	}
	if st, err := os.Stat(res.Initramfs); err != nil || st.Size() != res.Build.Size || st.Mode().Perm() != 0o644 {
		t.Errorf("initramfs: %v, want %d bytes mode 0644", st, res.Build.Size)
	}
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "undionly.kpxe")); err != nil {
			t.Errorf("undionly.kpxe not copied: %v", err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
