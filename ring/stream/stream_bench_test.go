package stream

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

// The per-byte costs of a chunk on its way through a relay or the
// sender, on herd's default chunk (-b 512K); MB/s is 10^6 bytes per
// second.

const benchChunk = 512 << 10

// benchChunks are 512 KiB chunks of three kinds: dense (random), zero
// (all holes), mixed (64 KiB of data, 64 KiB of zeros, alternately:
// eight frames a chunk).
func benchChunks() map[string][]byte {
	dense := make([]byte, benchChunk)
	r := rand.NewChaCha8([32]byte{7})
	_, _ = r.Read(dense)
	mixed := make([]byte, benchChunk)
	for off := 0; off < benchChunk; off += 128 << 10 {
		copy(mixed[off:off+64<<10], dense[off:])
	}
	return map[string][]byte{"dense": dense, "zero": make([]byte, benchChunk), "mixed": mixed}
}

var benchKinds = []string{"dense", "zero", "mixed"}

// BenchmarkSHA256 is what the Hasher stage pays per chunk (holes are
// hashed as zeros, at the same cost as data).
func BenchmarkSHA256(b *testing.B) {
	buf := benchChunks()["dense"]
	h := sha256.New()
	b.SetBytes(benchChunk)
	for b.Loop() {
		h.Write(buf)
	}
	_ = h.Sum(nil)
}

// BenchmarkHasher is the Hasher stage itself, on dense chunks and on
// chunks that are one hole each, hand-offs and the sender's Segment
// included; the tree digest on one, two and four workers.
func BenchmarkHasher(b *testing.B) {
	for _, run := range []struct {
		alg     digest.Alg
		kind    string
		workers int
	}{
		{digest.SHA256, "dense", 1}, {digest.SHA256, "zero", 1},
		{digest.Tree, "dense", 1}, {digest.Tree, "zero", 1},
		{digest.Tree, "dense", 2}, {digest.Tree, "zero", 2}, {digest.Tree, "dense", 4},
	} {
		alg, kind, workers := run.alg, run.kind, run.workers
		b.Run(fmt.Sprintf("%s/%s/workers=%d", alg, kind, workers), func(b *testing.B) {
			pool := NewPool(8, benchChunk)
			var all []*Chunk
			for range pool.Cap() {
				c, _ := pool.Get(b.Context())
				copy(c.Buf, benchChunks()[kind])
				all = append(all, c)
			}
			for _, c := range all {
				Dispatch(c, nil)
			}
			h := newHasher(4, alg, workers)
			b.SetBytes(benchChunk)
			var off uint64
			for b.Loop() {
				c, _ := pool.Get(b.Context())
				c.Segs, c.hdrs = c.Segs[:0], c.hdrs[:0]
				c.Segment(1, off, benchChunk)
				off += benchChunk
				Dispatch(c, []Stage{h})
			}
			h.Close()
		})
	}
}

// BenchmarkIsZero is the hole test on a whole chunk: dense returns at its
// first block, zero reads all of it, mixed at its first block too, and
// zero-but-last reads all of it to find one byte.
func BenchmarkIsZero(b *testing.B) {
	chunks := benchChunks()
	last := make([]byte, benchChunk)
	last[benchChunk-1] = 1
	chunks["zero-but-last"] = last
	for _, kind := range append(benchKinds, "zero-but-last") {
		b.Run(kind, func(b *testing.B) {
			buf := chunks[kind]
			b.SetBytes(benchChunk)
			for b.Loop() {
				_ = IsZero(buf)
			}
		})
	}
}

// BenchmarkSegment is the sender's hole detection per chunk: every 4 KiB
// block compared with zeros, runs turned into Data and Hole frames.
func BenchmarkSegment(b *testing.B) {
	chunks := benchChunks()
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			c := &Chunk{Buf: chunks[kind]}
			b.SetBytes(benchChunk)
			for b.Loop() {
				c.Segs, c.hdrs = c.Segs[:0], c.hdrs[:0]
				c.Segment(1, 0, benchChunk)
			}
			if kind == "mixed" && (len(c.Segs) != 8 || c.Segs[1].H.Type != wire.THole) {
				b.Fatalf("mixed chunk: %d frames, want 8 alternating", len(c.Segs))
			}
		})
	}
}
