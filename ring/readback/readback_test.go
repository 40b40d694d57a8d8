package readback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/sink"
	"golang.org/x/sys/unix"
)

// randomBytes returns n bytes of a fixed pseudo-random sequence.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	fillRandom(b, seed)
	return b
}

// writeFile writes b to a new file under t's temporary directory.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func checkDigest(t *testing.T, res Result, want []byte) {
	t.Helper()
	sum := sha256.Sum256(want)
	if !bytes.Equal(res.Digest, sum[:]) {
		t.Errorf("SHA-256 %x, want %x", res.Digest, sum)
	}
	if res.Bytes != int64(len(want)) {
		t.Errorf("Bytes %d, want %d", res.Bytes, len(want))
	}
}

// wantMethod is the Method Digest must report for path: MethodDirect when
// its file system takes O_DIRECT (most; tmpfs since Linux 6.6), else
// MethodDropCache.
func wantMethod(t *testing.T, path string) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if errors.Is(err, syscall.EINVAL) {
		return MethodDropCache
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return MethodDirect
}

func TestDigestSizes(t *testing.T) {
	for _, n := range []int{0, 1, 511, 4096, 4097, 5<<20 + 3} {
		b := randomBytes(n, uint64(n))
		path := writeFile(t, "out", b)
		method := wantMethod(t, path)
		// Small chunks too, so that several chunks and their tail are read.
		for _, chunk := range []int{0, 4096, 10000} {
			res, err := Digest(context.Background(), path, int64(n), Options{ChunkSize: chunk})
			if err != nil {
				t.Fatalf("%d bytes, chunk %d: %v", n, chunk, err)
			}
			checkDigest(t, res, b)
			if res.Method != method {
				t.Errorf("%d bytes: Method %q, want %q", n, res.Method, method)
			}
		}
	}
}

// A file longer than what was written is hashed up to size only.
func TestDigestPrefix(t *testing.T) {
	b := randomBytes(3*4096+100, 1)
	path := writeFile(t, "out", b)
	res, err := Digest(context.Background(), path, 4097, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, res, b[:4097])
}

func TestDigestSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(1000, 2)
	if _, err := f.WriteAt(data, 9<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := make([]byte, 9<<20+1000)
	copy(want[9<<20:], data)
	res, err := Digest(context.Background(), path, int64(len(want)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, res, want)
}

// TestDigestHoles: the holes of a sparse file are not read (Result.Holes)
// and the digest, in either algorithm, is that of the file's bytes: a
// hole first, data at an offset no block boundary has, a hole in the
// middle, data again, a hole to the end.
func TestDigestHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 12<<20 + 4097
	parts := []struct {
		off int64
		n   int
	}{{3<<20 + 100, 5000}, {7 << 20, 1<<20 + 3}}
	want := make([]byte, size)
	for i, p := range parts {
		b := randomBytes(p.n, uint64(i+7))
		if _, err := f.WriteAt(b, p.off); err != nil {
			t.Fatal(err)
		}
		copy(want[p.off:], b)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// Does this file system say where the holes are?
	first, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	f.Close()
	holey := err == nil && first > 0
	for _, run := range []struct {
		alg     digest.Alg
		workers int
	}{{digest.SHA256, 1}, {digest.Tree, 1}, {digest.Tree, 3}} {
		alg := run.alg
		res, err := Digest(context.Background(), path, size, Options{Digest: alg, ChunkSize: 1 << 20, Workers: run.workers})
		if err != nil {
			t.Fatal(err)
		}
		h := digest.New(alg)
		h.Write(want)
		if w := h.Sum(nil); !bytes.Equal(res.Digest, w) {
			t.Errorf("%s on %d workers: %x, want %x", alg, run.workers, res.Digest, w)
		}
		if res.Bytes != size {
			t.Errorf("%s: Bytes %d, want %d", alg, res.Bytes, size)
		}
		switch {
		case holey && res.Holes < 10<<20:
			t.Errorf("%s: %d bytes of holes skipped, want 10 MiB at least", alg, res.Holes)
		case !holey:
			t.Logf("this file system reports no holes (SEEK_DATA at 0: %d, %v): all read", first, err)
		}
	}
}

// The fallback (a file system that refuses O_DIRECT) hashes the same bytes
// and says how it read them.
func TestDigestBuffered(t *testing.T) {
	b := randomBytes(5<<20+3, 3)
	path := writeFile(t, "out", b)
	d := &digester{h: digest.NewAsync(digest.SHA256, 1), chunk: DefaultChunkSize, method: MethodDirect}
	if err := d.file(context.Background(), path, int64(len(b)), false); err != nil {
		t.Fatal(err)
	}
	checkDigest(t, Result{Digest: d.h.Finish(nil), Bytes: int64(len(b))}, b)
	if d.method != MethodDropCache {
		t.Errorf("method %q, want %q", d.method, MethodDropCache)
	}
}

// tmpfs: O_DIRECT is taken since Linux 6.6 (and then reads memory, where
// tmpfs keeps the file), refused before; either way the digest is right.
func TestDigestTmpfs(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "readback-")
	if err != nil {
		t.Skipf("no tmpfs at /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := randomBytes(1<<20+5, 4)
	path := filepath.Join(dir, "out")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Digest(context.Background(), path, int64(len(b)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, res, b)
	if want := wantMethod(t, path); res.Method != want {
		t.Errorf("Method %q, want %q", res.Method, want)
	}
	t.Logf("tmpfs: %s", res.Method)
}

// Split outputs as package sink writes them: parts of Split bytes, holes
// included, hashed as one stream.
func TestDigestSplit(t *testing.T) {
	for _, n := range []int{0, 999, 1000, 1001, 3500} {
		base := filepath.Join(t.TempDir(), "img")
		b := randomBytes(n, uint64(n)+10)
		s, err := sink.Open(base, sink.Options{Size: -1, DataSize: -1, Split: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(b[:n/2]); err != nil {
			t.Fatal(err)
		}
		if err := s.Zero(int64(n - n/2)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Close(); err != nil {
			t.Fatal(err)
		}
		clear(b[n/2:])
		res, err := Digest(context.Background(), base, int64(n), Options{Split: 1000})
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		checkDigest(t, res, b)
	}
}

// TestDigestParallel: the tree digest hashed by several workers while the
// next chunks are read is the file's, with chunks smaller and larger than
// a leaf, and across the parts of a split output (a part's buffers are
// hashed before the next part's reads reuse them).
func TestDigestParallel(t *testing.T) {
	tree := func(b []byte) []byte {
		h := digest.New(digest.Tree)
		h.Write(b)
		return h.Sum(nil)
	}
	for _, n := range []int{0, 1, 4097, 5<<20 + 3} {
		b := randomBytes(n, uint64(n)+20)
		path := writeFile(t, "out", b)
		for _, chunk := range []int{4096, 10000, 3 << 20} {
			for _, split := range []int64{0, 1 << 20, 1<<20 + 512} {
				base := path
				if split > 0 {
					base = filepath.Join(t.TempDir(), "img")
					for i, off := 0, 0; i == 0 || off < n; i, off = i+1, off+int(split) {
						if err := os.WriteFile(fmt.Sprintf("%s_%d", base, i), b[off:min(off+int(split), n)], 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
				res, err := Digest(context.Background(), base, int64(n), Options{Digest: digest.Tree, ChunkSize: chunk, Split: split, Workers: 3})
				if err != nil {
					t.Fatalf("%d bytes, chunk %d, split %d: %v", n, chunk, split, err)
				}
				if w := tree(b); !bytes.Equal(res.Digest, w) || res.Bytes != int64(n) {
					t.Errorf("%d bytes, chunk %d, split %d: %d bytes %x, want %x", n, chunk, split, res.Bytes, res.Digest, w)
				}
			}
		}
	}
}

func TestDigestSplitMissingPart(t *testing.T) {
	base := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(base+"_0", randomBytes(1000, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Digest(context.Background(), base, 1500, Options{Split: 1000})
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "read-back of "+base+"_1: ") {
		t.Errorf("error %v, want ENOENT naming %s_1", err, base)
	}
}

func TestDigestErrors(t *testing.T) {
	path := writeFile(t, "short", randomBytes(5000, 6))
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		path string
		size int64
		is   error
		msg  string
	}{
		{"shorter than written", context.Background(), path, 5001, nil, "read-back of " + path + ": the file has 5000 bytes, 5001 were written"},
		{"missing", context.Background(), path + ".none", 1, syscall.ENOENT, "read-back of " + path + ".none: no such file or directory"},
		{"fifo", context.Background(), fifo, 1, ErrUnsupported, "read-back of " + fifo + ": a pipe (FIFO): "},
		{"unknown length", context.Background(), path, -1, nil, "length -1 unknown"},
		{"cancelled", cancelled, path, 5000, context.Canceled, "read-back of " + path + ": context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Digest(tc.ctx, tc.path, tc.size, Options{})
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want it to say %q", err, tc.msg)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %v is not an *Error", err)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	b := randomBytes(3<<20+1, 8)
	path := writeFile(t, "out", b)
	var seen []int64
	if _, err := Digest(context.Background(), path, int64(len(b)), Options{ChunkSize: 1 << 20, Progress: func(n int64) { seen = append(seen, n) }}); err != nil {
		t.Fatal(err)
	}
	want := []int64{1 << 20, 2 << 20, 3 << 20, 3<<20 + 1}
	if len(seen) != len(want) {
		t.Fatalf("progress %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("progress %v, want %v", seen, want)
		}
	}
}

// slowHash hashes each write on a goroutine of its own a moment after
// Write returned, in order, as a busy worker does: what the read-back
// hands it must stay as it is until done.
type slowHash struct {
	h digest.Hash
	q chan func()
	n int64
}

func newSlowHash() *slowHash {
	s := &slowHash{h: digest.New(digest.SHA256), q: make(chan func(), 64)}
	go func() {
		for f := range s.q {
			f()
		}
	}()
	return s
}

func (s *slowHash) Write(b []byte, done func()) {
	s.n += int64(len(b))
	s.q <- func() {
		time.Sleep(5 * time.Millisecond)
		s.h.Write(b)
		done()
	}
}

func (s *slowHash) Zeros(n int64) {
	s.n += n
	s.q <- func() { s.h.Zeros(n) }
}

// sync waits until everything queued was hashed.
func (s *slowHash) sync() {
	ok := make(chan struct{})
	s.q <- func() { close(ok) }
	<-ok
}

func (s *slowHash) Finish(b []byte) []byte { s.sync(); return s.h.Sum(b) }
func (s *slowHash) Reset()                 { s.sync(); s.h.Reset(); s.n = 0 }
func (s *slowHash) Len() int64             { return s.n }
func (s *slowHash) Close()                 { close(s.q) }

// TestDigestLateHash: a hash that takes the buffers after Write returned
// (the tree's workers) gets each part of a split output whole: the next
// part's reads wait until the buffers are hashed.
func TestDigestLateHash(t *testing.T) {
	b := randomBytes(3*20000+123, 9)
	dir := t.TempDir()
	var parts []string
	for i, off := 0, 0; off < len(b); i, off = i+1, off+20000 {
		p := filepath.Join(dir, fmt.Sprintf("img_%d", i))
		if err := os.WriteFile(p, b[off:min(off+20000, len(b))], 0o644); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	h := newSlowHash()
	defer h.Close()
	d := &digester{h: h, chunk: 8192, method: MethodDirect}
	for i, p := range parts {
		if err := d.file(context.Background(), p, int64(min(20000, len(b)-20000*i)), true); err != nil {
			t.Fatal(err)
		}
	}
	checkDigest(t, Result{Digest: d.h.Finish(nil), Bytes: d.h.Len()}, b)
}
