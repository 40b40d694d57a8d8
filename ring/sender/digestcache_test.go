package sender_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/sender"
	"github.com/herdproject/herd/ring/source"
)

// lockedBuffer is a log a session writes to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sendOne sends file f to a fresh one-session node on addr and returns
// the report, the sender's debug log and the error.
func sendOne(t *testing.T, addr string, f plan.File, noCache bool) (*sender.Report, string, error) {
	t.Helper()
	done := startNode(t, addr)
	var log lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := sender.Send(ctx, sender.Config{
		Plan:     plan.Session{Files: []plan.File{f}, Hosts: []string{addr}},
		DataPort: dataPort, ControlPort: controlPort, ReportPort: -1,
		ChunkSize: 64 << 10, Retries: 2, NoSync: true, NoDigestCache: noCache,
		Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Error("node did not end its session")
	}
	return rep, log.String(), err
}

// hexSum is b's digest in the sender's default algorithm.
func hexSum(b []byte) string {
	h := digest.New(digest.Default)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{seed}))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// cacheFor writes the digest cache of path as it is now, with the
// digests of raw and, when decoded is set, the decoded digests of a zstd
// file; old leaves the tree digests out, as caches written before them.
func cacheFor(t *testing.T, path string, raw, decoded []byte, old ...bool) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := source.NewDigestCache(fi, sha256Hex(raw))
	if err != nil {
		t.Fatal(err)
	}
	tree := func(b []byte) string {
		if len(old) > 0 {
			return ""
		}
		h := digest.New(digest.Tree)
		h.Write(b)
		return hex.EncodeToString(h.Sum(nil))
	}
	d.Tree = tree(raw)
	if decoded != nil {
		d.Decoded = &source.DecodedDigest{Compression: "zst", SHA256: sha256Hex(decoded), Tree: tree(decoded)}
	}
	if err := d.Write(path); err != nil {
		t.Fatal(err)
	}
}

// TestDigestCacheSend: with a matching digest cache the sender hashes
// (or decodes) nothing and the nodes still verify; a cache that no longer
// matches is ignored (debug log) and the session is still right; a cache
// whose digest is wrong fails the node, never passes it.
func TestDigestCacheSend(t *testing.T) {
	content := randomBytes(1<<20+4321, 1)
	dec := append(randomBytes(300<<10, 2), make([]byte, 200<<10)...)
	zst, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	packed := zst.EncodeAll(dec, nil)
	zst.Close()

	for k, c := range []struct {
		name    string
		cooked  bool
		prepare func(t *testing.T, in string)
		noCache bool
		hashed  int64  // Report.Hashed
		log     string // in the sender's debug log
		fail    string // the node's failure, "" = verified
	}{
		{name: "raw, valid cache", prepare: func(t *testing.T, in string) { cacheFor(t, in, content, nil) }, log: "(not hashed)"},
		{name: "raw, a cache older than the tree digest", prepare: func(t *testing.T, in string) { cacheFor(t, in, content, nil, true) }, hashed: int64(len(content)), log: "the digest cache has no tree digest: hashing the file"},
		{name: "cooked, a cache older than the tree digest", cooked: true, prepare: func(t *testing.T, in string) { cacheFor(t, in, packed, dec, true) }, hashed: int64(len(packed)), log: "the digest cache has no decoded tree digest: decoding it"},
		{name: "raw, --no-digest-cache", prepare: func(t *testing.T, in string) { cacheFor(t, in, content, nil) }, noCache: true, hashed: int64(len(content))},
		{name: "raw, no cache", prepare: func(*testing.T, string) {}, hashed: int64(len(content))},
		{name: "raw, touched", prepare: func(t *testing.T, in string) {
			cacheFor(t, in, content, nil)
			if err := os.Chtimes(in, time.Now(), time.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
		}, hashed: int64(len(content)), log: "digest cache ignored"},
		{name: "raw, replaced", prepare: func(t *testing.T, in string) {
			cacheFor(t, in, content, nil)
			other := bytes.Clone(content)
			other[1000] ^= 0xff
			if err := os.WriteFile(in+".new", other, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(in+".new", in); err != nil {
				t.Fatal(err)
			}
		}, hashed: int64(len(content)), log: "the file was replaced"},
		{name: "raw, stale digest", prepare: func(t *testing.T, in string) { cacheFor(t, in, []byte("other"), nil) }, log: "(not hashed)", fail: "verify failed"},
		{name: "cooked, valid cache", cooked: true, prepare: func(t *testing.T, in string) { cacheFor(t, in, packed, dec) }, log: "(not decoded)"},
		{name: "cooked, raw digest only", cooked: true, prepare: func(t *testing.T, in string) { cacheFor(t, in, packed, nil) }, hashed: int64(len(packed)), log: "no digest of the file decoded as zst"},
		{name: "cooked, stale decoded digest", cooked: true, prepare: func(t *testing.T, in string) { cacheFor(t, in, packed, packed) }, fail: "verify failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := plan.File{Input: filepath.Join(dir, "in.img"), Output: filepath.Join(dir, "out.img")}
			body := content
			if c.cooked {
				f.Input, f.Mode = f.Input+".zst", plan.Cooked
				body = packed
			}
			if err := os.WriteFile(f.Input, body, 0o644); err != nil {
				t.Fatal(err)
			}
			c.prepare(t, f.Input)
			want, _ := os.ReadFile(f.Input)
			if c.cooked {
				want = dec
			}
			rep, log, err := sendOne(t, fmt.Sprintf("127.0.4.%d", 10+k), f, c.noCache)
			if c.log != "" && !strings.Contains(log, c.log) {
				t.Errorf("the sender's log lacks %q:\n%s", c.log, log)
			}
			if rep == nil {
				t.Fatalf("send: %v", err)
			}
			if rep.Hashed != c.hashed {
				t.Errorf("Hashed = %d, want %d", rep.Hashed, c.hashed)
			}
			n := rep.Nodes[0]
			if c.fail != "" {
				if !errors.Is(err, sender.ErrNodesFailed) || n.Verified || !strings.Contains(n.Reason, c.fail) {
					t.Errorf("err %v, node %+v: want it failed with %q", err, n, c.fail)
				}
				return
			}
			if err != nil || !n.Verified {
				t.Fatalf("send: %v, node %+v", err, n)
			}
			if got, _ := os.ReadFile(f.Output); !bytes.Equal(got, want) {
				t.Errorf("output of %d bytes differs from the %d sent", len(got), len(want))
			}
		})
	}
}

// sparseShape is a test input: size bytes, holes but for data written at
// the given offsets.
type sparseShape struct {
	name string
	size int64
	at   []int64 // where 64 KiB + 123 bytes of data go
	// zeros: the data extents hold blocks of zeros (written, not holes).
	zeros bool
}

// TestSparseSend: a sparse file sent with SEEK_DATA/SEEK_HOLE gives the
// same digest and output as the same bytes read whole through a pipe (the
// old path, which reads and scans every byte), and holes are not read.
func TestSparseSend(t *testing.T) {
	for k, c := range []sparseShape{
		{name: "hole at start", size: 3 << 20, at: []int64{2<<20 + 4096}},
		{name: "hole at end", size: 3 << 20, at: []int64{0}},
		{name: "all hole", size: 2<<20 + 17},
		{name: "one byte", size: 1},
		{name: "empty"},
		{name: "zero blocks in data", size: 2 << 20, at: []int64{8192, 1 << 20}, zeros: true},
		{name: "data at unaligned offsets", size: 5<<20 + 3, at: []int64{1<<20 + 100, 5 << 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.img")
			want := writeSparse(t, in, c)
			sparseOut := filepath.Join(dir, "sparse.out")
			rep, _, err := sendOne(t, fmt.Sprintf("127.0.4.%d", 30+2*k), plan.File{Input: in, Output: sparseOut}, true)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			// The same bytes through a pipe: read and scanned whole.
			fifo := filepath.Join(dir, "in.fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			go func() {
				w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				w.Write(want)
				w.Close()
			}()
			pipeOut := filepath.Join(dir, "pipe.out")
			prep, _, err := sendOne(t, fmt.Sprintf("127.0.4.%d", 31+2*k), plan.File{Input: fifo, Output: pipeOut}, true)
			if err != nil {
				t.Fatalf("send through a pipe: %v", err)
			}
			if rep.Digests[0] != hexSum(want) || prep.Digests[0] != rep.Digests[0] {
				t.Errorf("digests: sparse %s, pipe %s, of the bytes %s", rep.Digests[0], prep.Digests[0], hexSum(want))
			}
			for _, o := range []string{sparseOut, pipeOut} {
				if got, _ := os.ReadFile(o); !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes, differs from the %d sent", filepath.Base(o), len(got), len(want))
				}
			}
			if rep.Nodes[0].Received != c.size || rep.Total != c.size {
				t.Errorf("received %d, total %d, want %d", rep.Nodes[0].Received, rep.Total, c.size)
			}
		})
	}
}

// writeSparse makes c's file at path and returns its bytes.
func writeSparse(t *testing.T, path string, c sparseShape) []byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, c.size)
	for i, off := range c.at {
		d := randomBytes(64<<10+123, byte(10+i))
		if c.zeros {
			clear(d[4096 : 4096+16<<10])
		}
		if _, err := f.WriteAt(d, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], d)
	}
	if c.size == 1 {
		want[0] = 9
		f.WriteAt(want, 0)
	}
	if err := f.Truncate(c.size); err != nil {
		t.Fatal(err)
	}
	return want
}
