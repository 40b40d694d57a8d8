package source

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/herdproject/herd/ring/plan"
)

// sparseCase is a test file: size bytes, holes but for the data extents.
type sparseCase struct {
	name string
	size int64
	data []sparseExtent
	// holeFirst: the first Next must report a hole (not read it).
	holeFirst bool
}

type sparseExtent struct {
	off  int64
	data []byte
}

// sparseCases are the shapes the sender must send as the old reader did.
var sparseCases = []sparseCase{
	{name: "empty"},
	{name: "one byte", size: 1, data: []sparseExtent{{0, []byte{7}}}},
	{name: "one zero byte", size: 1, data: []sparseExtent{{0, []byte{0}}}},
	{name: "all hole", size: 3<<20 + 5, holeFirst: true},
	{name: "hole at start", size: 2 << 20, data: []sparseExtent{{1 << 20, pattern(300<<10, 1)}}, holeFirst: true},
	{name: "hole at end", size: 4 << 20, data: []sparseExtent{{0, pattern(1<<20+17, 2)}}},
	{name: "zero blocks in data", size: 1 << 20, data: []sparseExtent{{4096, append(append(pattern(8192, 3), make([]byte, 64<<10)...), pattern(5000, 4)...)}}},
	{name: "many small extents", size: 1 << 20, data: []sparseExtent{{0, pattern(4096, 7)}, {8192, pattern(4096, 8)}, {5 * 4096, pattern(100, 9)}, {600 << 10, pattern(4096, 10)}}},
	{name: "dense", size: 700 << 10, data: []sparseExtent{{0, pattern(700<<10, 5)}}},
	{name: "unaligned tail", size: 5<<20 + 3, data: []sparseExtent{{0, pattern(10, 6)}, {5 << 20, []byte{1, 2, 3}}}},
}

// makeSparse writes c under dir and returns its path and bytes.
func makeSparse(t *testing.T, dir string, c sparseCase) (string, []byte) {
	t.Helper()
	p := filepath.Join(dir, "sparse.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, c.size)
	for _, e := range c.data {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			t.Fatal(err)
		}
		copy(want[e.off:], e.data)
	}
	if err := f.Truncate(c.size); err != nil {
		t.Fatal(err)
	}
	return p, want
}

// TestSparseReader reads sparse files with SparseReader: the bytes are the
// file's; holes at least as long as the buffer are reported without
// reading (a leading one comes first as a hole), none longer than
// MaxHole; shorter ones are filled in, so data comes in full buffers.
func TestSparseReader(t *testing.T) {
	for _, c := range sparseCases {
		t.Run(c.name, func(t *testing.T) {
			p, want := makeSparse(t, t.TempDir(), c)
			src, err := Open(plan.File{Input: p})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			sp := src.Sparse()
			if sp == nil {
				t.Fatal("Sparse() = nil for a regular file")
			}
			var got []byte
			buf := make([]byte, 64<<10)
			short := false // a read shorter than buf: the end must follow
			for i := 0; ; i++ {
				n, hole, err := sp.Next(buf)
				if errors.Is(err, io.EOF) {
					if n != 0 || hole != 0 {
						t.Fatalf("EOF with n %d hole %d", n, hole)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if short {
					t.Errorf("Next %d: a short read (%d bytes) before the end", i, len(got))
				}
				short = n > 0 && n < len(buf)
				if hole > 0 && hole < int64(len(buf)) && sp.Offset() != c.size {
					t.Errorf("Next %d: a hole of %d bytes, shorter than the buffer, was not read as zeros", i, hole)
				}
				if (n > 0) == (hole > 0) {
					t.Fatalf("Next: n %d, hole %d: want one of them", n, hole)
				}
				if i == 0 && c.holeFirst && hole == 0 {
					t.Errorf("first Next read %d bytes of a hole", n)
				}
				if hole > MaxHole {
					t.Errorf("hole of %d bytes", hole)
				}
				got = append(got, buf[:n]...)
				got = append(got, make([]byte, hole)...)
				if int64(len(got)) != sp.Offset() {
					t.Fatalf("offset %d after %d bytes", sp.Offset(), len(got))
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("read %d bytes, want %d (equal length: %v)", len(got), len(want), len(got) == len(want))
			}
		})
	}
}

// TestExtent walks a file by Extent as the sender's re-read path does.
func TestExtent(t *testing.T) {
	c := sparseCase{size: 3 << 20, data: []sparseExtent{{1 << 20, pattern(4096, 9)}}}
	p, _ := makeSparse(t, t.TempDir(), c)
	src, err := Open(plan.File{Input: p})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, x := range []struct {
		off    int64
		hole   bool
		length int64
	}{
		{0, true, 1 << 20},
		{100, true, 1<<20 - 100},
		{1 << 20, false, 4096},
		{1<<20 + 4000, false, 96},
		{1<<20 + 4096, true, 2<<20 - 4096},
		{3 << 20, false, 0},
		{4 << 20, false, 0},
	} {
		hole, length, err := src.Extent(x.off)
		if err != nil || hole != x.hole || length != x.length {
			t.Errorf("Extent(%d) = %v, %d, %v; want %v, %d", x.off, hole, length, err, x.hole, x.length)
		}
	}
	if _, _, err := src.Extent(0); err != nil {
		t.Fatal(err)
	}
	// Not a regular file: no extents, no sparse reader.
	gz, err := Open(plan.File{Input: p, CompressedOut: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	if gz.Sparse() != nil {
		t.Error("Sparse() of a stream gzipped on the fly")
	}
	if _, _, err := gz.Extent(0); err == nil {
		t.Error("Extent of a stream gzipped on the fly: no error")
	}
}

// TestSparseReaderBigHole: a hole longer than MaxHole comes in pieces of
// MaxHole, none read.
func TestSparseReaderBigHole(t *testing.T) {
	const size = 2*MaxHole + MaxHole/2 + 1
	p := makeSparseBig(t, size)
	src, err := Open(plan.File{Input: p})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sp := src.Sparse()
	buf := make([]byte, 4096)
	var got []int64 // holes as lengths, data as -n
	for {
		n, hole, err := sp.Next(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			got = append(got, -int64(n))
		} else {
			got = append(got, hole)
		}
	}
	want := []int64{MaxHole, MaxHole, MaxHole / 2, -1}
	if !slices.Equal(got, want) {
		t.Errorf("Next gave %v, want %v", got, want)
	}
}

// makeSparseBig makes a file of size bytes, a hole but for its last byte.
func makeSparseBig(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{1}, size-1); err != nil {
		t.Fatal(err)
	}
	return p
}
