package bench

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Image is a file the benchmark sends, with what every node must end up
// with.
type Image struct {
	// Kind is "random", "sparse" or "zstd".
	Kind string
	// Name labels the image in results ("random-256M").
	Name string
	// Path is the file the sender reads; for zstd the compressed file,
	// cooked (decompressed) on the nodes.
	Path string
	// Size is the size of what a node writes; Data the bytes that are not
	// holes; Wire what crosses each link (the compressed size for zstd).
	Size, Data, Wire int64
	// SHA256 is the digest of what a node writes.
	SHA256 string
}

// Cooked tells whether the nodes decode the image ('>>').
func (im *Image) Cooked() bool { return im.Kind == "zstd" }

// MiB formats n bytes as "256M" or "4G".
func MiB(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%dG", n>>30)
	}
	return fmt.Sprintf("%dM", n>>20)
}

// randomReader is a fast deterministic stream of random bytes.
type randomReader struct{ r *rand.ChaCha8 }

func newRandom(seed uint64) *randomReader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &randomReader{rand.NewChaCha8(s)}
}

func (r *randomReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// MakeRandom writes size random bytes to dir/random-SIZE.img.
func MakeRandom(dir string, size int64, seed uint64) (*Image, error) {
	im := &Image{Kind: "random", Name: "random-" + MiB(size), Size: size, Data: size, Wire: size}
	im.Path = filepath.Join(dir, im.Name+".img")
	sum, err := writeFile(im.Path, func(w io.Writer) error {
		_, err := io.CopyN(w, newRandom(seed), size)
		return err
	})
	im.SHA256 = sum
	return im, err
}

// MakeSparse writes a size-byte image of which fraction (0..1) is random
// data, in 1 MiB extents spread evenly, and the rest holes: a disk image
// as a partly filled file system leaves it.
func MakeSparse(dir string, size int64, fraction float64, seed uint64) (*Image, error) {
	const extent = 1 << 20
	every := int64(float64(extent) / fraction)
	every -= every % 4096
	im := &Image{Kind: "sparse", Name: fmt.Sprintf("sparse-%s-%d%%", MiB(size), int(fraction*100+0.5)), Size: size, Wire: size}
	im.Path = filepath.Join(dir, im.Name+".img")
	f, err := os.Create(im.Path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	rnd := newRandom(seed)
	buf := make([]byte, extent)
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += every {
		n := min(extent, size-off)
		if _, err := io.ReadFull(rnd, buf[:n]); err != nil {
			return nil, err
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Path, err)
		}
		h.Write(buf[:n])
		im.Data += n
		for gap := min(every, size-off) - n; gap > 0; {
			k := min(gap, int64(len(zeros)))
			h.Write(zeros[:k])
			gap -= k
		}
	}
	if err := f.Truncate(size); err != nil {
		return nil, fmt.Errorf("image %s: %w", im.Path, err)
	}
	im.SHA256 = hex.EncodeToString(h.Sum(nil))
	return im, f.Close()
}

// MakeZstd writes a compressible size-byte image (a mix of random blocks
// and repeated text, about 3:1 under zstd, as a system image compresses)
// and its zstd compression dir/zstd-SIZE.img.zst, which the nodes cook.
func MakeZstd(dir string, size int64, seed uint64) (*Image, error) {
	im := &Image{Kind: "zstd", Name: "zstd-" + MiB(size), Size: size, Data: size}
	im.Path = filepath.Join(dir, im.Name+".img.zst")
	f, err := os.Create(im.Path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if err := compressible(io.MultiWriter(zw, h), size, seed); err != nil {
		return nil, fmt.Errorf("image %s: %w", im.Path, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("image %s: %w", im.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	im.Wire = fi.Size()
	im.SHA256 = hex.EncodeToString(h.Sum(nil))
	return im, f.Close()
}

// compressible writes size bytes in 64 KiB blocks: one in four random,
// the others lines drawn from a small vocabulary.
func compressible(w io.Writer, size int64, seed uint64) error {
	rnd := newRandom(seed)
	pick := rand.New(rand.NewPCG(seed, 7))
	words := []string{"kernel", "module", "lib", "usr", "share", "x86_64", "config", "node", "cluster", "herd",
		"systemd", "python3", "firmware", "locale", "doc", "man", "bin", "etc", "0x7f45", "ELF", "init", "boot"}
	block := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := int(min(int64(len(block)), left))
		if pick.IntN(4) == 0 {
			if _, err := io.ReadFull(rnd, block[:n]); err != nil {
				return err
			}
		} else {
			for pos := 0; pos < n; {
				pos += copy(block[pos:n], words[pick.IntN(len(words))])
				sep := "/"
				if pick.IntN(6) == 0 {
					sep = "\n"
				}
				pos += copy(block[pos:n], sep)
			}
		}
		if _, err := w.Write(block[:n]); err != nil {
			return err
		}
		left -= int64(n)
	}
	return nil
}

// writeFile writes path with fill and returns the SHA-256 of the bytes.
func writeFile(path string, fill func(io.Writer) error) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := fill(io.MultiWriter(bw, h)); err != nil {
		return "", fmt.Errorf("image %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("image %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}
