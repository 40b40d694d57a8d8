// Package digest computes the digests by which a ring session verifies
// every file: what the sender sent and what each node received, decoded
// and read back must give the same digest.
//
// Two algorithms:
//
//   - Tree (the default, "tree"): the stream is cut into leaves of
//     LeafSize bytes (the last one shorter); each leaf is hashed with
//     BLAKE3, and the root is BLAKE3 in key-derivation mode (context
//     RootContext) over the leaves' digests in order followed by the
//     stream's length as 8 little-endian bytes. A hash list, a Merkle tree
//     of one level. A leaf's digest does not depend on where the leaf
//     is, so a hole's whole leaves all have one constant digest
//     (ZeroLeaf): holes cost nothing to verify. BLAKE3 is also about
//     twice as fast as SHA-256 on one core (zeebo/blake3's AVX2 code
//     against SHA-NI), and the leaves are independent, so Parallel hashes
//     them on several cores.
//   - SHA256 ("sha256"): the plain SHA-256 of the stream, holes hashed as
//     zeros: what sha256sum prints, for people who compare.
//
// Both give 32 bytes; a digest means nothing without its algorithm, which
// the session names (wire.Setup.Digest).
package digest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"

	"github.com/zeebo/blake3"
)

// Alg names a digest algorithm.
type Alg string

// The algorithms.
const (
	// Tree is BLAKE3 over LeafSize leaves, a hole's leaves free.
	Tree Alg = "tree"
	// SHA256 is the plain SHA-256 of the stream.
	SHA256 Alg = "sha256"
)

// Default is the algorithm a session uses unless told otherwise.
const Default = Tree

// Algs are the algorithms this herd computes, the default first.
var Algs = []Alg{Tree, SHA256}

// Size is the length in bytes of every algorithm's digest.
const Size = 32

// LeafSize is the tree digest's leaf length.
const LeafSize = 1 << 20

// RootContext is the BLAKE3 key-derivation context of the tree digest's
// root, which keeps a root from ever equalling a leaf's digest.
const RootContext = "herd 2026-12-06 ring tree digest v1 root"

// ZeroLeaf is the digest of a whole leaf of zeros.
var ZeroLeaf = blake3.Sum256(make([]byte, LeafSize))

// Parse returns the algorithm s names ("" is SHA256: what a sender that
// names none means).
func Parse(s string) (Alg, error) {
	switch a := Alg(strings.ToLower(s)); a {
	case "":
		return SHA256, nil
	case Tree, SHA256:
		return a, nil
	}
	return "", fmt.Errorf("unknown digest %q (this herd knows %s)", s, Names())
}

// Names lists the algorithms for messages and help: "tree, sha256".
func Names() string {
	s := make([]string, len(Algs))
	for i, a := range Algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// Title is the algorithm's name in messages: "tree digest", "SHA-256".
func (a Alg) Title() string {
	if a == SHA256 {
		return "SHA-256"
	}
	return "tree digest"
}

// Hash computes one stream's digest. Write adds bytes, Zeros adds n zero
// bytes (a hole) at no cost where the algorithm allows, Sum appends the
// digest of everything so far to b without changing the state, Reset
// starts a new stream and Len is the stream's length so far.
type Hash interface {
	Write(p []byte) (int, error)
	Zeros(n int64)
	Sum(b []byte) []byte
	Reset()
	Len() int64
}

// New returns a Hash computing a; an unknown a computes SHA256.
func New(a Alg) Hash {
	if a == Tree {
		return &tree{leaf: leaf{h: blake3.New()}, root: blake3.NewDeriveKey(RootContext)}
	}
	return &plain{h: sha256.New()}
}

// zeros is what holes are hashed from where they cost.
var zeros = make([]byte, 64<<10)

func writeZeros(w interface{ Write([]byte) (int, error) }, n int64) {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		w.Write(zeros[:k])
		n -= k
	}
}

// plain is SHA256.
type plain struct {
	h hash.Hash
	n int64
}

func (p *plain) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	return p.h.Write(b)
}

func (p *plain) Zeros(n int64) {
	p.n += n
	writeZeros(p.h, n)
}

func (p *plain) Sum(b []byte) []byte { return p.h.Sum(b) }
func (p *plain) Reset()              { p.h.Reset(); p.n = 0 }
func (p *plain) Len() int64          { return p.n }

// leaf is the tree digest's current leaf: in bytes of it so far. While
// it holds only zeros they are counted (zin == in), not hashed: a leaf
// that ends so is ZeroLeaf, one that gets data hashes its zeros first.
// So zin > 0 means no data came.
type leaf struct {
	h       *blake3.Hasher
	in, zin int64
}

func (l *leaf) write(b []byte) {
	if l.zin > 0 {
		writeZeros(l.h, l.zin)
		l.zin = 0
	}
	l.h.Write(b)
	l.in += int64(len(b))
}

func (l *leaf) zeros(n int64) {
	if l.zin == l.in {
		l.zin += n
	} else {
		writeZeros(l.h, n)
	}
	l.in += n
}

// sum is the leaf's digest, the leaf unchanged.
func (l *leaf) sum() (d [Size]byte) {
	switch {
	case l.zin == LeafSize:
		return ZeroLeaf
	case l.zin > 0: // a short leaf of zeros
		z := blake3.New()
		writeZeros(z, l.zin)
		z.Sum(d[:0])
	default:
		l.h.Sum(d[:0])
	}
	return d
}

// reset starts the next leaf; the hasher is reset only if data went
// into it, so that a hole's zero leaves stay free.
func (l *leaf) reset() {
	if l.in != l.zin {
		l.h.Reset()
	}
	l.in, l.zin = 0, 0
}

// rootSum appends to b the digest of root r, which has the digest of every
// leaf: the stream's length n, 8 bytes little-endian, ends it.
func rootSum(r *blake3.Hasher, n int64, b []byte) []byte {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(n))
	r.Write(l[:])
	return r.Sum(b)
}

// tree is Tree: leaf the current leaf, root the digests of the leaves
// before it.
type tree struct {
	leaf leaf
	root *blake3.Hasher
	n    int64
}

func (t *tree) Write(b []byte) (int, error) {
	l := len(b)
	for len(b) > 0 {
		k := min(int64(len(b)), LeafSize-t.leaf.in)
		t.leaf.write(b[:k])
		t.n += k
		b = b[k:]
		t.endLeaf()
	}
	return l, nil
}

func (t *tree) Zeros(n int64) {
	for n > 0 {
		k := min(n, LeafSize-t.leaf.in)
		t.leaf.zeros(k)
		t.n += k
		n -= k
		t.endLeaf()
	}
}

// endLeaf folds the current leaf into the root once it is whole.
func (t *tree) endLeaf() {
	if t.leaf.in < LeafSize {
		return
	}
	d := t.leaf.sum()
	t.root.Write(d[:])
	t.leaf.reset()
}

func (t *tree) Sum(b []byte) []byte {
	r := t.root.Clone()
	if t.leaf.in > 0 {
		d := t.leaf.sum()
		r.Write(d[:])
	}
	return rootSum(r, t.n, b)
}

func (t *tree) Reset() {
	t.leaf.h.Reset()
	t.leaf.in, t.leaf.zin = 0, 0
	t.root.Reset()
	t.n = 0
}

func (t *tree) Len() int64 { return t.n }
