package diskimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
)

// A capture decodes (with herd image info's decoder and with the real
// zstd program) to the image it was taken from: same size, data size,
// SHA-256 and partition table.
func TestCaptureRoundTrip(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, dir)
	out := filepath.Join(dir, "captured.img.zst")
	res, err := Capture(context.Background(), CaptureOptions{Source: img, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Inspect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != raw.Size || res.DataSize != raw.DataSize || res.SHA256 != raw.SHA256 {
		t.Errorf("capture says %d %d %s, the raw image is %d %d %s", res.Size, res.DataSize, res.SHA256, raw.Size, raw.DataSize, raw.SHA256)
	}
	if d := cmp.Diff(raw.Table, res.Table); d != "" {
		t.Errorf("capture's table (-raw +capture):\n%s", d)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.CompressedSize != st.Size() || st.Size() >= raw.Size/20 {
		t.Errorf("compressed size %d (file %d) for a %d-byte image with %d data bytes", res.CompressedSize, st.Size(), raw.Size, raw.DataSize)
	}
	info, err := Inspect(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != FormatZstd || info.Size != raw.Size || info.DataSize != raw.DataSize || info.SHA256 != raw.SHA256 {
		t.Errorf("info of the capture: %s %d %d %s, want zstd %d %d %s", info.Format, info.Size, info.DataSize, info.SHA256, raw.Size, raw.DataSize, raw.SHA256)
	}
	if d := cmp.Diff(raw.Table, info.Table); d != "" {
		t.Errorf("table (-raw +capture):\n%s", d)
	}
	// The frame header carries the decoded size.
	b, _ := os.ReadFile(out)
	var h zstd.Header
	if err := h.Decode(b); err != nil || !h.HasFCS || int64(h.FrameContentSize) != raw.Size {
		t.Errorf("frame header: %+v, %v; want content size %d", h, err, raw.Size)
	}
	// The real zstd program agrees.
	if _, err := exec.LookPath("zstd"); err == nil {
		dec, err := exec.Command("zstd", "-d", "-c", "-q", out).Output()
		if err != nil {
			t.Fatalf("zstd -d: %v", err)
		}
		sum := sha256.Sum256(dec)
		if hex.EncodeToString(sum[:]) != raw.SHA256 {
			t.Error("zstd -d gives other bytes than the image")
		}
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestCaptureRefuses(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, dir)
	out := filepath.Join(dir, "x.img.zst")
	ctx := context.Background()
	if _, err := Capture(ctx, CaptureOptions{Source: img, Output: out}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(out)
	_, err := Capture(ctx, CaptureOptions{Source: img, Output: out})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output: err = %v, want ErrExists naming --force", err)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Error("a refused capture changed the existing output")
	}
	if _, err := Capture(ctx, CaptureOptions{Source: img, Output: out, Force: true}); err != nil {
		t.Errorf("--force: %v", err)
	}
	for _, tt := range []struct {
		name string
		opts CaptureOptions
		want string
	}{
		{"not .zst", CaptureOptions{Source: img, Output: filepath.Join(dir, "x.img")}, "name it *.zst"},
		{"missing source", CaptureOptions{Source: filepath.Join(dir, "nope"), Output: out + "2.zst"}, "no such file"},
		{"directory", CaptureOptions{Source: dir, Output: out + "3.zst"}, "give a block device or an image file"},
		{"output is a directory", CaptureOptions{Source: img, Output: mkdir(t, dir, "d.zst")}, "not a regular file"},
		{"no output dir", CaptureOptions{Source: img, Output: filepath.Join(dir, "no", "x.zst")}, "create the output"},
	} {
		if _, err := Capture(ctx, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func mkdir(t *testing.T, dir, name string) string {
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A real block device: a loop device over an ext4 image, mounted
// read-write, is refused; read-only, it is captured. Needs root and
// loop devices.
func TestCaptureMountedLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux, e2fsprogs)", tool)
		}
	}
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(fsImg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fsImg, 32<<20); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", fsImg).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, b)
	}
	b, err := exec.Command("losetup", "-f", "--show", fsImg).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device here: %v %s", err, b)
	}
	dev := strings.TrimSpace(string(b))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	mnt := mkdir(t, dir, "mnt")
	if b, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v %s", err, b)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	})
	ctx := context.Background()
	out := filepath.Join(dir, "dev.img.zst")
	_, err = Capture(ctx, CaptureOptions{Source: dev, Output: out})
	if !errors.Is(err, ErrMountedRW) || !strings.Contains(err.Error(), mnt) || !strings.Contains(err.Error(), "remount") {
		t.Fatalf("mounted rw: err = %v, want ErrMountedRW naming %s and what to do", err, mnt)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused capture wrote its output")
	}
	res, err := Capture(ctx, CaptureOptions{Source: dev, Output: out, Force: true})
	if err != nil || len(res.Warnings) == 0 {
		t.Fatalf("--force: %v, warnings %q", err, res.Warnings)
	}
	if b, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, b)
	}
	os.Remove(out)
	res, err = Capture(ctx, CaptureOptions{Source: dev, Output: out})
	if err != nil {
		t.Fatalf("mounted read-only: %v", err)
	}
	if len(res.Warnings) != 0 || res.Size != 32<<20 {
		t.Errorf("read-only capture: warnings %q, size %d", res.Warnings, res.Size)
	}
	// Unmounted (umount may still write the superblock), the device's
	// capture is the file under it.
	if b, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, b)
	}
	mounted = false
	os.Remove(out)
	if _, err := Capture(ctx, CaptureOptions{Source: dev, Output: out}); err != nil {
		t.Fatalf("unmounted: %v", err)
	}
	info, err := Inspect(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Inspect(ctx, fsImg)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != raw.SHA256 || info.DataSize != raw.DataSize {
		t.Errorf("device capture %s/%d, the file under it %s/%d", info.SHA256, info.DataSize, raw.SHA256, raw.DataSize)
	}
}
