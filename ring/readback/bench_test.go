package readback

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/herdproject/herd/ring/digest"
)

// Read-back throughput (docs/readback.md):
//
//	go test -run '^$' -bench Digest -benchtime 3x ./ring/readback/
//
// HERD_READBACK_BENCH_SIZE is the file's size in MiB (default 256);
// HERD_READBACK_BENCH_DIR the directory of the "file" and "loop"
// sub-benchmarks' file (default a temporary directory: /tmp). The "loop"
// one (root) reads a loop device with direct I/O over that file, "tmpfs" a
// file in /dev/shm, "sha256" hashes from memory: the CPU's ceiling. All
// of them read back with SHA-256; "tmpfs-tree-N" reads the tmpfs file
// with the tree digest on N workers.
func BenchmarkDigest(b *testing.B) {
	top := b
	size := int64(256) << 20
	if v := os.Getenv("HERD_READBACK_BENCH_SIZE"); v != "" {
		mib, err := strconv.ParseInt(v, 10, 64)
		if err != nil || mib <= 0 {
			b.Fatalf("HERD_READBACK_BENCH_SIZE=%q: want a number of MiB", v)
		}
		size = mib << 20
	}
	dir := os.Getenv("HERD_READBACK_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	b.Run("sha256", func(b *testing.B) {
		buf := make([]byte, DefaultChunkSize)
		fillRandom(buf, 1)
		b.SetBytes(int64(len(buf)))
		h := sha256.New()
		for b.Loop() {
			h.Write(buf)
		}
	})
	b.Run("file", func(b *testing.B) {
		path := benchFile(b, dir, size)
		benchDigest(b, path, size, Options{})
	})
	var shmFile string // made by the first tmpfs sub-benchmark that runs
	tmpfs := func(b *testing.B) string {
		if shmFile == "" {
			shm, err := os.MkdirTemp("/dev/shm", "readback-bench-")
			if err != nil {
				b.Skipf("no tmpfs at /dev/shm: %v", err)
			}
			top.Cleanup(func() { os.RemoveAll(shm) })
			shmFile = benchFile(top, shm, size)
		}
		return shmFile
	}
	b.Run("tmpfs", func(b *testing.B) {
		benchDigest(b, tmpfs(b), size, Options{})
	})
	for _, w := range []int{1, 2} {
		b.Run("tmpfs-tree-"+strconv.Itoa(w), func(b *testing.B) {
			benchDigest(b, tmpfs(b), size, Options{Digest: digest.Tree, Workers: w})
		})
	}
	b.Run("loop", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Skip("needs root")
		}
		benchDigest(b, attachLoop(b, benchFile(b, dir, size), "on"), size, Options{})
	})
}

func benchDigest(b *testing.B, path string, size int64, opts Options) {
	b.SetBytes(size)
	var method string
	for b.Loop() {
		res, err := Digest(context.Background(), path, size, opts)
		if err != nil {
			b.Fatal(err)
		}
		method = res.Method
	}
	b.ReportMetric(0, "ns/op") // MB/s says it
	b.Logf("%s: %s", path, method)
}

// benchFile writes a file of size pseudo-random bytes (dense: no holes
// for the file system to answer without reading) under dir, synced and
// dropped from the page cache, and removes it when b ends.
func benchFile(b *testing.B, dir string, size int64) string {
	b.Helper()
	f, err := os.CreateTemp(dir, "readback-bench-")
	if err != nil {
		b.Fatal(err)
	}
	path := f.Name()
	b.Cleanup(func() { os.Remove(path) })
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		fillRandom(buf, uint64(off))
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := buffered(f, false); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return filepath.Clean(path)
}

func fillRandom(b []byte, seed uint64) {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	rand.NewChaCha8(key).Read(b)
}
