package unixz

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.Z with the compress binary")

// sample returns n deterministic bytes that compress well at first and then
// turn to noise, so that compress fills its table, widens its codes and
// (in block mode) emits CLEAR when the ratio drops.
func sample(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"herd ", "dolly ", "ring ", "node ", "clone ", "image ", "\n", "sparse ", "tar ", "zstd "}
	var b bytes.Buffer
	for b.Len() < n {
		if b.Len() > n/2 && r.IntN(3) == 0 {
			for range 64 {
				b.WriteByte(byte(r.Uint32()))
			}
			continue
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// goldens are .Z files made by ncompress 4.2.4 (go test -update rewrites
// them), with the generator of their input.
var goldens = []struct {
	file string
	bits int
	in   []byte
}{
	{"empty.Z", 16, nil},
	{"one.Z", 16, []byte("a")},
	{"kwkwk.Z", 16, bytes.Repeat([]byte("a"), 100)},
	{"b10.Z", 10, sample(1, 40000)},
	{"b12.Z", 12, sample(2, 30000)},
	{"b16.Z", 16, sample(3, 20000)},
}

func TestGoldens(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join("testdata", g.file)
			if *update {
				z, err := runCompress(g.in, g.bits)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, z, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			z, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for name, wrap := range map[string]func(io.Reader) io.Reader{
				"plain":   func(r io.Reader) io.Reader { return r },
				"onebyte": iotest.OneByteReader,
				"half":    iotest.HalfReader,
				"dataerr": iotest.DataErrReader,
			} {
				got, err := decode(wrap(bytes.NewReader(z)))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.Equal(got, g.in) {
					t.Fatalf("%s: decoded %d bytes, want %d (first difference at %d)", name, len(got), len(g.in), firstDiff(got, g.in))
				}
			}
		})
	}
}

// TestAgainstCompress round-trips inputs of many sizes and widths through
// the real compress program.
func TestAgainstCompress(t *testing.T) {
	if _, err := exec.LookPath("compress"); err != nil {
		t.Skip("compress binary not installed (apt-get install ncompress)")
	}
	sizes := []int{1, 2, 511, 512, 513, 4096, 70000, 300000}
	if !testing.Short() {
		sizes = append(sizes, 3<<20)
	}
	for _, bits := range []int{10, 11, 13, 16} {
		for i, n := range sizes {
			t.Run(strconv.Itoa(bits)+"/"+strconv.Itoa(n), func(t *testing.T) {
				in := sample(uint64(100*bits+i), n)
				z, err := runCompress(in, bits)
				if err != nil {
					t.Fatal(err)
				}
				got, err := decode(bytes.NewReader(z))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, in) {
					t.Fatalf("decoded %d bytes, want %d (first difference at %d)", len(got), len(in), firstDiff(got, in))
				}
			})
		}
	}
}

// TestEncoder checks the decoder against this file's reference encoder in
// the modes compress 4.2.4 cannot write (no block mode, CLEAR at will).
func TestEncoder(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bits       int
		block      bool
		clearEvery int
		n          int
	}{
		{"noblock10", 10, false, 0, 20000},
		{"noblock16", 16, false, 0, 200000},
		{"block-clear-10", 10, true, 300, 50000},
		{"block-clear-12", 12, true, 1000, 100000},
		{"block-clear-often", 10, true, 3, 5000},
		{"block-noclear", 11, true, 0, 100000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := sample(uint64(tc.n), tc.n)
			z := encode(in, tc.bits, tc.block, tc.clearEvery)
			got, err := decode(bytes.NewReader(z))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, in) {
				t.Fatalf("decoded %d bytes, want %d (first difference at %d)", len(got), len(in), firstDiff(got, in))
			}
			if _, err := exec.LookPath("gzip"); err == nil && tc.block {
				// gzip -d reads .Z too: a check that the reference
				// encoder writes what other decoders read.
				cmd := exec.Command("gzip", "-dc")
				cmd.Stdin = bytes.NewReader(z)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("gzip -dc: %v", err)
				}
				if !bytes.Equal(out, in) {
					t.Fatalf("gzip -dc disagrees with the reference encoder")
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"short", []byte{0x1f, 0x9d}, io.ErrUnexpectedEOF},
		{"gzip", []byte{0x1f, 0x8b, 0x08, 0}, ErrHeader},
		{"bits8", []byte{0x1f, 0x9d, 0x88}, ErrHeader},
		{"bits17", []byte{0x1f, 0x9d, 0x91}, ErrHeader},
		// first code 0x101 (9 bits): not a literal
		{"firstcode", []byte{0x1f, 0x9d, 0x90, 0x01, 0x01}, ErrCorrupt},
		// 'a' then code 0x1ff: far past the next free entry
		{"future", []byte{0x1f, 0x9d, 0x90, 0x61, 0xfe, 0x07}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzUnixZ(f *testing.F) {
	for _, g := range goldens {
		if z, err := os.ReadFile(filepath.Join("testdata", g.file)); err == nil && len(z) < 4096 {
			f.Add(z)
		}
	}
	f.Add(encode([]byte("abababababababababab"), 10, true, 2))
	f.Add(encode(sample(9, 3000), 10, false, 0))
	f.Add([]byte{0x1f, 0x9d, 0x90, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, z []byte) {
		r, err := NewReader(bytes.NewReader(z))
		if err != nil {
			return
		}
		// LZW grows at most quadratically; cap it anyway.
		n, _ := io.Copy(io.Discard, io.LimitReader(r, 256<<20))
		if n > int64(len(z))*int64(len(z))+65536 {
			t.Fatalf("%d bytes from %d input bytes", n, len(z))
		}
		// Once ended, Read keeps saying so.
		if m, err := r.Read(make([]byte, 10)); m != 0 || err == nil {
			t.Fatalf("Read after the end: %d, %v", m, err)
		}
	})
}

func decode(r io.Reader) ([]byte, error) {
	zr, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func runCompress(in []byte, bits int) ([]byte, error) {
	cmd := exec.Command("compress", "-c", "-f", "-b", strconv.Itoa(bits))
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		// compress exits 2 when the output is larger than the input:
		// the output is still written.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			return nil, errors.New("compress: " + err.Error() + ": " + stderr.String())
		}
	}
	return out.Bytes(), nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// encode is a reference LZW encoder in compress's format: codes packed
// LSB first in groups of 8, the width growing when the next entry would
// not fit the decoder's view of the table, and in block mode a CLEAR after
// every clearEvery codes (0: never).
func encode(in []byte, maxBits int, block bool, clearEvery int) []byte {
	var out []byte
	flags := byte(maxBits)
	if block {
		flags |= blockMode
	}
	out = append(out, Magic[0], Magic[1], flags)
	var (
		acc     uint64
		nacc    uint
		width   = uint(initBits)
		inGroup int
	)
	put := func(code int) {
		acc |= uint64(code) << nacc
		nacc += width
		for nacc >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			nacc -= 8
		}
		inGroup = (inGroup + 1) % 8
	}
	pad := func() { // fill the group with zero codes
		for inGroup != 0 {
			put(0)
		}
	}
	first := 256
	if block {
		first = 257
	}
	type key struct {
		prefix int
		c      byte
	}
	dict := map[key]int{}
	freeEnt := first
	emitted := 0
	emit := func(code int) {
		if freeEnt > 1<<width && width < uint(maxBits) {
			pad()
			width++
		}
		put(code)
		emitted++
	}
	if len(in) == 0 {
		return out
	}
	w := int(in[0])
	for _, c := range in[1:] {
		if code, ok := dict[key{w, c}]; ok {
			w = code
			continue
		}
		emit(w)
		if freeEnt < 1<<maxBits {
			dict[key{w, c}] = freeEnt
			freeEnt++
		}
		w = int(c)
		if block && clearEvery > 0 && emitted%clearEvery == 0 {
			if freeEnt > 1<<width && width < uint(maxBits) {
				pad()
				width++
			}
			put(clearCode)
			pad()
			width = initBits
			dict = map[key]int{}
			freeEnt = first
		}
	}
	emit(w)
	if nacc > 0 {
		out = append(out, byte(acc))
	}
	return out
}
