package diskimage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/sink"
)

// cookOnto does what a ring node does with a cooked file ("IMAGE.zst >>
// OUT", ring/relay's writer): a cook.Sink by the input's name whose raw
// output is sink.Open(OUT) with unknown sizes, fed the compressed bytes
// in chunks.
func cookOnto(t *testing.T, input, out string) sink.Result {
	t.Helper()
	k, err := cook.KindOf(filepath.Base(input))
	if err != nil {
		t.Fatal(err)
	}
	s, err := cook.NewSink(k, out, cook.Options{
		OpenRaw: func(p string) (sink.Sink, error) { return sink.Open(p, sink.Options{Size: -1, DataSize: -1}) },
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, err := s.Write(buf[:n]); err != nil {
				s.Abort()
				t.Fatal(err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Close()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func fileSHA(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, n)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// A captured image sent cooked ("golden.img.zst >> golden.img") is
// decoded by the ring's cook sink into a sparse copy of the image, and
// the sink reports the image's SHA-256.
func TestCookedCaptureOntoFile(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, dir)
	zst := filepath.Join(dir, "golden.img.zst")
	c, err := Capture(context.Background(), CaptureOptions{Source: img, Output: zst})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "copy.img")
	res := cookOnto(t, zst, out)
	if res.Bytes != c.Size || hex.EncodeToString(res.Digest) != c.SHA256 {
		t.Errorf("cooked sink reports %d bytes, %x; the capture %d, %s", res.Bytes, res.Digest, c.Size, c.SHA256)
	}
	info, err := Inspect(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != c.SHA256 || info.Size != c.Size {
		t.Errorf("written copy: %d %s, want %d %s", info.Size, info.SHA256, c.Size, c.SHA256)
	}
	if info.Allocated > 2*c.DataSize+64<<10 {
		t.Errorf("the copy takes %d bytes on disk for %d data bytes: not sparse", info.Allocated, c.DataSize)
	}
}

// The same onto a block device (a loop device full of old data): every
// byte, zeros included, ends up as in the image.
func TestCookedCaptureOntoBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed (util-linux)")
	}
	dir := t.TempDir()
	img := testImage(t, dir)
	zst := filepath.Join(dir, "golden.img.zst")
	c, err := Capture(context.Background(), CaptureOptions{Source: img, Output: zst})
	if err != nil {
		t.Fatal(err)
	}
	backing := filepath.Join(dir, "disk")
	junk := make([]byte, 16<<20)
	rand.Read(junk)
	if err := os.WriteFile(backing, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device here: %v %s", err, b)
	}
	dev := strings.TrimSpace(string(b))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	res := cookOnto(t, zst, dev)
	if hex.EncodeToString(res.Digest) != c.SHA256 {
		t.Errorf("sink SHA-256 %x, want %s", res.Digest, c.SHA256)
	}
	if got := fileSHA(t, dev, c.Size); got != c.SHA256 {
		t.Errorf("the device's first %d bytes hash to %s, want %s", c.Size, got, c.SHA256)
	}
	// Past the image, the device is untouched.
	tail := make([]byte, 4096)
	f, _ := os.Open(dev)
	f.ReadAt(tail, 12<<20)
	f.Close()
	if !bytes.Equal(tail, junk[12<<20:12<<20+4096]) {
		t.Error("bytes past the image's end changed")
	}
}
