package relay

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/ring/readback"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// piece is one frame of a test stream: data, or a hole when data is nil.
type piece struct {
	data []byte
	hole int64
}

// writeStream runs files through a writer for setup s, as the session
// does (each file's pieces between its start and end frames), closes it
// and does the read-back; change, when set, runs between the two (the
// disk changing under the written files).
func writeStream(t *testing.T, s *wire.Setup, noSync bool, files [][]piece, change func()) *writer {
	t.Helper()
	var logs syncLog
	w := newWriter(s, 4, &bytes.Buffer{}, noSync, logging.New(&logs, "", slog.LevelDebug, logging.Plain))
	pool := stream.NewPool(4, 1<<20)
	send := func(h wire.Header, p []byte) {
		c, err := pool.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := copy(c.Buf, p)
		c.Add(h, 0, n)
		stream.Dispatch(c, []stream.Stage{w})
	}
	for i, f := range files {
		send(wire.Header{Type: wire.TFileStart, File: uint32(i)}, nil)
		off := uint64(0)
		for _, p := range f {
			if p.data == nil {
				send(wire.Header{Type: wire.THole, File: uint32(i), Offset: off, Length: uint32(p.hole)}, nil)
				off += uint64(p.hole)
				continue
			}
			send(wire.Header{Type: wire.TData, File: uint32(i), Offset: off, Length: uint32(len(p.data))}, p.data)
			off += uint64(len(p.data))
		}
		send(wire.Header{Type: wire.TFileEnd, File: uint32(i), Offset: off}, nil)
	}
	w.close(nil)
	if change != nil {
		change()
	}
	w.readBack(context.Background())
	t.Logf("writer log:\n%s", logs.String())
	return w
}

func randomData(n int, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarred(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(b)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadBack(t *testing.T) {
	dir := t.TempDir()
	raw := randomData(300<<10+7, 1)
	split := randomData(250<<10, 2)
	decoded := randomData(200<<10+1, 3)
	out := func(name string) string { return filepath.Join(dir, name) }
	s := &wire.Setup{Verify: wire.VerifyReadback, Files: []wire.SetupFile{
		{Output: out("raw"), InputName: "raw.img"},
		{Output: out("split"), InputName: "split.img", Split: 100 << 10},
		{Output: out("dummy"), InputName: "dummy", Discard: true},
		{Output: "-", InputName: "stdout.img"},
		{Output: out("decoded"), InputName: "decoded.img.gz", Cooked: true},
		{Output: out("tree"), InputName: "tree.tar", Cooked: true},
	}}
	for _, noSync := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "nosync"}[noSync], func(t *testing.T) {
			w := writeStream(t, s, noSync, [][]piece{
				{{data: raw[:100<<10]}, {hole: 64 << 10}, {data: raw[164<<10:]}},
				{{data: split}},
				{{data: raw[:1000]}},
				{{data: raw[:1000]}},
				{{data: gzipped(t, decoded)}},
				{{data: tarred(t, "f", decoded)}},
			}, nil)
			withHole := bytes.Clone(raw)
			clear(withHole[100<<10 : 164<<10])
			// read is how a file on the test's directory is read back
			// (O_DIRECT, or the fallback on an older tmpfs).
			read := readMethod(w.results[0].readbackMethod)
			for i, want := range []struct{ sha, method string }{
				{hexSHA(withHole), read},
				{hexSHA(split), read},
				{"", "not applicable: nothing written (dummy mode)"},
				{"", "not applicable: standard output"},
				{hexSHA(decoded), read},
				{"", "not applicable: unpacked archive"},
			} {
				r := w.results[i]
				var f wire.FileResult
				r.putReadback(&f)
				if r.err != "" || f.ReadbackError != "" {
					t.Errorf("file %d: error %q, read-back error %q", i+1, r.err, f.ReadbackError)
				}
				if f.ReadbackDigest != want.sha || f.ReadbackMethod != want.method {
					t.Errorf("file %d: read back %q (%s), want %q (%s)", i+1, f.ReadbackDigest, f.ReadbackMethod, want.sha, want.method)
				}
				if want.sha != "" && f.ReadbackSeconds <= 0 {
					t.Errorf("file %d: read back in %v s", i+1, f.ReadbackSeconds)
				}
			}
			if got, want := w.readBackBytes.Load(), int64(len(raw)+len(split)+len(decoded)); got != want {
				t.Errorf("read back %d bytes in all, want %d", got, want)
			}
		})
	}
}

// readMethod returns got when it is one of readback's read methods, else
// MethodDirect (and the comparison with got fails).
func readMethod(got string) string {
	if got == readback.MethodDropCache {
		return got
	}
	return readback.MethodDirect
}

// The output changes between the write and the read-back: the digest
// read back is the new content's, not the stream's.
func TestReadBackChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	data := randomData(1<<20, 4)
	s := &wire.Setup{Verify: wire.VerifyReadback, Files: []wire.SetupFile{{Output: path, InputName: "x.img"}}}
	w := writeStream(t, s, false, [][]piece{{{data: data}}}, func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{^data[5000]}, 5000); err != nil {
			t.Fatal(err)
		}
	})
	r := w.results[0]
	if r.readbackMethod != readMethod(r.readbackMethod) || len(r.readbackSum) == 0 {
		t.Fatalf("read back %x (%q, error %q)", r.readbackSum, r.readbackMethod, r.readbackErr)
	}
	if got := hex.EncodeToString(r.readbackSum); got == hexSHA(data) {
		t.Error("the read-back digest is the stream's: the change was not seen")
	}
}

func TestReadBackFails(t *testing.T) {
	dir := t.TempDir()
	s := &wire.Setup{Verify: wire.VerifyReadback, Files: []wire.SetupFile{
		{Output: filepath.Join(dir, "gone"), InputName: "a.img"},
		{Output: filepath.Join(dir, "no", "such", "dir"), InputName: "b.img"},
	}}
	w := writeStream(t, s, false, [][]piece{{{data: randomData(5000, 5)}}, {{data: randomData(10, 6)}}}, func() {
		os.Remove(filepath.Join(dir, "gone"))
	})
	if r := w.results[0]; len(r.readbackSum) != 0 || !strings.HasPrefix(r.readbackErr, "read-back of "+filepath.Join(dir, "gone")+": no such file") {
		t.Errorf("removed output: read back %x, error %q", r.readbackSum, r.readbackErr)
	}
	// A file that failed to be written is not read back.
	if r := w.results[1]; r.err == "" || r.readbackMethod != "" || r.readbackErr != "" {
		t.Errorf("unwritable output: error %q, read-back %q %q", r.err, r.readbackMethod, r.readbackErr)
	}
}

// After a broken stream nothing is read back: the node fails anyway.
func TestReadBackBroken(t *testing.T) {
	s := &wire.Setup{Verify: wire.VerifyReadback, Files: []wire.SetupFile{{Output: filepath.Join(t.TempDir(), "out"), InputName: "x.img"}}}
	w := newWriter(s, 4, &bytes.Buffer{}, false, logging.Func(func(l string) { t.Log(l) }))
	w.results[0].closed = true // as if the file had ended before the break
	w.close(fmt.Errorf("upstream reset"))
	w.readBack(context.Background())
	var f wire.FileResult
	w.results[0].putReadback(&f)
	if f != (wire.FileResult{}) {
		t.Errorf("read back after a broken stream: %+v", f)
	}
}

// Without Setup.Verify nothing is read back.
func TestReadBackOff(t *testing.T) {
	s := &wire.Setup{Files: []wire.SetupFile{{Output: filepath.Join(t.TempDir(), "out"), InputName: "x.img"}}}
	w := writeStream(t, s, false, [][]piece{{{data: randomData(5000, 7)}}}, nil)
	if r := w.results[0]; r.readbackMethod != "" || r.readbackSum != nil || w.readBackBytes.Load() != 0 {
		t.Errorf("read back without Verify: %+v", r)
	}
}
