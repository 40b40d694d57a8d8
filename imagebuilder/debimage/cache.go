package debimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FormatVersion names what the builder does with its inputs; it goes
// into every cache key, so a change of layout, files or GRUB handling
// here must change it to keep old cached images from being reused.
const FormatVersion = "herd-debimage-1"

// Names in a cache entry, the directory CacheDir/<key>.
const (
	ImageName   = "disk.img"
	RootTarName = "root.tar.zst"
	ResultName  = "build.json"
	// DebsDir is CacheDir's directory of downloaded .deb files, shared
	// by all builds (mmdebstrap's sync-in and sync-out hooks).
	DebsDir = "debs"
)

// keyInputs is everything a build depends on, hashed for its cache key.
type keyInputs struct {
	Format         string   `json:"format"`
	Suite          string   `json:"suite"`
	Sources        []string `json:"sources"`
	Packages       []string `json:"packages"`
	Hooks          []string `json:"hooks"`
	Size           int64    `json:"size"`
	ESPSize        int64    `json:"esp_size"`
	RootPassword   string   `json:"root_password_sha256"`
	AuthorizedKeys string   `json:"authorized_keys_sha256"`
}

// cacheKey is the SHA-256 (hex) of the inputs: the suite, the exact
// apt source lines, the package list (defaults and extras, in order),
// the hooks, the sizes, the contents of the password and key files (nil
// = none, which differs from an empty file) and FormatVersion.
func cacheKey(suite string, sources, packages, hooks []string, size, espSize int64, password, keys []byte) string {
	sum := func(b []byte) string {
		if b == nil {
			return ""
		}
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	in := keyInputs{FormatVersion, suite, sources, packages, hooks, size, espSize, sum(password), sum(keys)}
	if in.Sources == nil {
		in.Sources = []string{}
	}
	if in.Packages == nil {
		in.Packages = []string{}
	}
	if in.Hooks == nil {
		in.Hooks = []string{}
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic(err) // strings and integers always marshal
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// loadCached returns the result stored in a finished cache entry, nil
// when there is none (or it is incomplete, which a finished entry never
// is: entries are renamed into place whole).
func loadCached(entry string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(entry, ResultName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(entry, ResultName), err)
	}
	for _, n := range []string{ImageName, RootTarName} {
		if _, err := os.Stat(filepath.Join(entry, n)); err != nil {
			return nil, fmt.Errorf("cache entry %s: %w (remove the directory to rebuild)", entry, err)
		}
	}
	r.CachedImage, r.CachedRootTar = filepath.Join(entry, ImageName), filepath.Join(entry, RootTarName)
	return &r, nil
}

// CloneFile copies the regular file src to dst, atomically (a temporary
// file in dst's directory, renamed) and keeping holes: a reflink
// (FICLONE) when the file system can share the blocks, else a copy of
// the data regions SEEK_DATA and SEEK_HOLE find, the rest left as holes.
// dst is replaced if it exists.
func CloneFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if err := copySparse(out, in, st.Size()); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
	}
	if err := out.Chmod(st.Mode().Perm()); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		return err
	}
	ok = true
	return nil
}

// copySparse copies in's data regions to out at the same offsets and
// sets out's size to size; holes stay holes. Without SEEK_DATA it copies
// everything.
func copySparse(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		start, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			start = off // no SEEK_DATA: copy all
		}
		end, err := unix.Seek(int(in.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		for p := start; p < end; {
			n := int64(len(buf))
			if end-p < n {
				n = end - p
			}
			r, err := in.ReadAt(buf[:n], p)
			if r > 0 {
				if werr := writeNonZero(out, buf[:r], p); werr != nil {
					return werr
				}
				p += int64(r)
			}
			if err != nil && !(errors.Is(err, io.EOF) && r > 0) {
				return err
			}
		}
		off = end
	}
	return nil
}

// zeroBlock is the unit writeNonZero leaves as a hole when it is all
// zeros.
const zeroBlock = 4096

// writeNonZero writes b at off in f, leaving out the 4 KiB blocks (by
// offset in the file) that are all zeros: f was truncated to its size,
// so they read as zeros anyway.
func writeNonZero(f *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n := zeroBlock - int(off%zeroBlock)
		if n > len(b) {
			n = len(b)
		}
		if !allZero(b[:n]) {
			if _, err := f.WriteAt(b[:n], off); err != nil {
				return err
			}
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
