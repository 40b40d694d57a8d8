package digest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/blake3"
)

// reference is the tree digest as the package comment specifies it,
// computed from the whole stream at once.
func reference(data []byte) []byte {
	r := blake3.NewDeriveKey(RootContext)
	for off := 0; off < len(data); off += LeafSize {
		leaf := blake3.Sum256(data[off:min(off+LeafSize, len(data))])
		r.Write(leaf[:])
	}
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(data)))
	r.Write(l[:])
	return r.Sum(nil)
}

func want(a Alg, data []byte) []byte {
	if a == SHA256 {
		s := sha256.Sum256(data)
		return s[:]
	}
	return reference(data)
}

// op is one call: n bytes of data (from the stream) or of a hole.
type op struct {
	hole bool
	n    int
}

// feed runs ops through h and returns the stream they make.
func feed(h Hash, ops []op, rng *rand.Rand) []byte {
	var data []byte
	for _, o := range ops {
		if o.hole {
			h.Zeros(int64(o.n))
			data = append(data, make([]byte, o.n)...)
			continue
		}
		b := make([]byte, o.n)
		for i := range b {
			b[i] = byte(rng.Uint32() | 1) // never all zeros
		}
		h.Write(b)
		data = append(data, b...)
	}
	return data
}

// streamCase is a stream cut into writes and holes.
type streamCase struct {
	name string
	ops  []op
}

// streamCases cut streams at leaf boundaries, across them, with a hole
// that ends a leaf begun with data, a hole of whole leaves, a short last
// leaf, and the empty stream.
func streamCases() []streamCase {
	L := LeafSize
	return []streamCase{
		{"empty", nil},
		{"one byte", []op{{false, 1}}},
		{"one leaf", []op{{false, L}}},
		{"a leaf and a byte", []op{{false, L + 1}}},
		{"writes across leaves", []op{{false, 1000}, {false, L}, {false, L - 7}, {false, 3}}},
		{"a hole of whole leaves", []op{{true, 3 * L}}},
		{"data, hole ending the leaf, whole zero leaves, data", []op{{false, 100}, {true, L - 100 + 2*L}, {false, 5}}},
		{"hole then data inside one leaf", []op{{true, 4096}, {false, 4096}, {true, L}}},
		{"short hole at the end", []op{{false, L}, {true, 10}}},
		{"zeros written as data equal a hole", []op{{false, 10}, {true, 2*L + 3}}},
	}
}

// TestDigests: each algorithm's digest is that of the whole stream, however
// it is cut into writes and holes (streamCases).
func TestDigests(t *testing.T) {
	cases := streamCases()
	for _, a := range Algs {
		for _, tc := range cases {
			t.Run(string(a)+"/"+tc.name, func(t *testing.T) {
				h := New(a)
				data := feed(h, tc.ops, rand.New(rand.NewPCG(1, 2)))
				if got := h.Len(); got != int64(len(data)) {
					t.Errorf("Len %d, want %d", got, len(data))
				}
				got := h.Sum(nil)
				if w := want(a, data); !bytes.Equal(got, w) {
					t.Fatalf("digest %x, want %x", got, w)
				}
				if again := h.Sum(nil); !bytes.Equal(again, got) {
					t.Errorf("a second Sum gave %x, the first %x", again, got)
				}
				// The same bytes written as data.
				h.Reset()
				h.Write(data)
				if d := h.Sum(nil); !bytes.Equal(d, got) {
					t.Errorf("written as data: %x, with holes: %x", d, got)
				}
			})
		}
	}
}

// TestTreeKnownAnswers pins the tree digest so that a change of its
// definition cannot pass unnoticed: it must stay what nodes of other
// versions compute.
func TestTreeKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "6c39b3cfdaad8cde9962d938e51eb2c835a0572b55983ee0e7647ab923dd3777"},
		{"abc", []byte("abc"), "11fc157d56e30e4409e47d3f8a1b4a96f4187e5334c79e7db125f9ee2ab8a3a0"},
		{"3 leaves and 5 bytes of i%251", pattern(3*LeafSize + 5), "594b83b8bab24265f48fbb148a3efda0538c6f8043c5fb3694a2eb561a99184e"},
	} {
		h := New(Tree)
		h.Write(tc.data)
		got := hex.EncodeToString(h.Sum(nil))
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Alg
		ok   bool
	}{
		{"tree", Tree, true},
		{"TREE", Tree, true},
		{"sha256", SHA256, true},
		{"", SHA256, true},
		{"md5", "", false},
		{"sha-256", "", false},
	} {
		got, err := Parse(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Parse(%q) = %q, %v", tc.in, got, err)
		}
	}
}

// FuzzTree: any sequence of writes and holes gives the reference digest
// of the stream it makes.
func FuzzTree(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint64(1))
	f.Add([]byte{0x80, 0xff, 0x7f, 0x01}, uint64(7))
	f.Fuzz(func(t *testing.T, prog []byte, seed uint64) {
		if len(prog) > 64 {
			prog = prog[:64]
		}
		var ops []op
		for _, b := range prog {
			// Sizes around the leaf: small, a leaf give or take, leaves.
			n := int(b&0x3f) * 37
			switch b >> 6 & 1 {
			case 1:
				n = LeafSize - 512 + int(b&0x3f)*31
			}
			ops = append(ops, op{hole: b&0x80 != 0, n: n})
		}
		h := New(Tree)
		data := feed(h, ops, rand.New(rand.NewPCG(seed, 3)))
		if got, w := h.Sum(nil), reference(data); !bytes.Equal(got, w) {
			t.Fatalf("ops %v: %x, want %x", ops, got, w)
		}
	})
}

func benchmark(b *testing.B, a Alg, hole bool) {
	h := New(a)
	buf := make([]byte, 512<<10)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if hole {
			h.Zeros(int64(len(buf)))
		} else {
			h.Write(buf)
		}
	}
}

func BenchmarkTree(b *testing.B)       { benchmark(b, Tree, false) }
func BenchmarkSHA256(b *testing.B)     { benchmark(b, SHA256, false) }
func BenchmarkTreeHole(b *testing.B)   { benchmark(b, Tree, true) }
func BenchmarkSHA256Hole(b *testing.B) { benchmark(b, SHA256, true) }
