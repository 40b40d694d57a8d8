package source

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/internal/atomicfile"
	"github.com/herdproject/herd/ring/digest"
)

// A digest cache is a small JSON file beside an image, IMAGE.herd-digest,
// that keeps the image's SHA-256 (of the file's bytes, and of the decoded
// image for a compressed one) with the identity of the file it was
// computed from: size, mtime and ctime in nanoseconds, device and inode.
// herd image info and capture write it; the sender (ring/sender) reads it
// instead of hashing an input whose identity still matches.
//
// The identity is checked, not the bytes: an image rewritten in place
// within one tick of the file system's clock, or with its times forged
// (ctime needs the system clock changed), keeps a stale digest. That can
// only fail nodes, never pass them: every node hashes what it received
// and the sender compares that digest with the cached one, so a cached
// digest that does not describe the bytes sent makes every node fail
// "verify failed"; it never makes a wrong output verify.

// DigestCacheSuffix is appended to an image's path to name its digest
// cache.
const DigestCacheSuffix = ".herd-digest"

// DigestCacheVersion is the digest cache format this herd writes and
// reads; a file of another version is ignored.
const DigestCacheVersion = 1

// maxDigestCache bounds the file read: a real one is a few hundred bytes.
const maxDigestCache = 64 << 10

// ErrNoDigestCache is returned (wrapped) when an input has no digest
// cache, or cannot have one (not a regular file, compressed on the fly).
var ErrNoDigestCache = errors.New("no digest cache")

// ErrStaleDigestCache is returned (wrapped) when a digest cache does not
// describe the file beside it any more (another size, time, device or
// inode).
var ErrStaleDigestCache = errors.New("stale digest cache")

// DigestCache is the content of IMAGE.herd-digest.
type DigestCache struct {
	// Version is DigestCacheVersion.
	Version int `json:"version"`
	// Size, MtimeNs, CtimeNs, Dev and Ino identify the file the digests
	// describe: its length in bytes, modification and change times in
	// nanoseconds since 1970, device and inode number.
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	// SHA256 is the hex SHA-256 of the file's bytes: what a raw send
	// ('IMAGE > OUT') compares every node's digest with.
	SHA256 string `json:"sha256"`
	// Tree is the hex tree digest (package ring/digest) of the file's
	// bytes; empty in caches older than it (then a send with the tree
	// digest hashes the file).
	Tree string `json:"tree,omitempty"`
	// Decoded is set for a compressed image: the digest of its decoded
	// bytes, what a cooked send ('IMAGE.zst >> OUT') compares with.
	Decoded *DecodedDigest `json:"decoded,omitempty"`
}

// DecodedDigest is a compressed image's decoded digest.
type DecodedDigest struct {
	// Compression is how the file is decoded: package ring/cook's
	// compression name ("zst", "gz", "xz", "Z").
	Compression string `json:"compression"`
	// Size is the decoded length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the decoded bytes.
	SHA256 string `json:"sha256"`
	// Tree is their hex tree digest; empty in older caches.
	Tree string `json:"tree,omitempty"`
}

// Of returns the file's digest in algorithm alg; "" when the cache has
// none.
func (d DigestCache) Of(alg digest.Alg) string {
	if alg == digest.Tree {
		return d.Tree
	}
	return d.SHA256
}

// Of returns the decoded digest in algorithm alg; "" when the cache has
// none.
func (d *DecodedDigest) Of(alg digest.Alg) string {
	if alg == digest.Tree {
		return d.Tree
	}
	return d.SHA256
}

// NewDigestCache returns a digest cache for the file fi describes (a
// regular file) with its raw digest sha; Decoded is left for the caller.
func NewDigestCache(fi fs.FileInfo, sha string) (DigestCache, error) {
	d := DigestCache{Version: DigestCacheVersion, SHA256: sha}
	if err := d.setIdentity(fi); err != nil {
		return d, err
	}
	return d, d.check()
}

func (d *DigestCache) setIdentity(fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w: not a regular file", fi.Name(), ErrNoDigestCache)
	}
	d.Size = fi.Size()
	d.MtimeNs = time.Unix(st.Mtim.Unix()).UnixNano()
	d.CtimeNs = time.Unix(st.Ctim.Unix()).UnixNano()
	d.Dev, d.Ino = uint64(st.Dev), uint64(st.Ino)
	return nil
}

// WithIdentity returns d for the file fi describes: a copy of the file d
// describes, made by the caller (the same bytes, so the same digests).
func (d DigestCache) WithIdentity(fi fs.FileInfo) (DigestCache, error) {
	err := d.setIdentity(fi)
	return d, err
}

// Matches returns nil when d describes the file fi describes, else an
// error wrapping ErrStaleDigestCache that says what differs.
func (d DigestCache) Matches(fi fs.FileInfo) error {
	var now DigestCache
	if err := now.setIdentity(fi); err != nil {
		return err
	}
	var what string
	switch {
	case now.Dev != d.Dev || now.Ino != d.Ino:
		what = fmt.Sprintf("the file was replaced (device %d inode %d, the cache has %d %d)", now.Dev, now.Ino, d.Dev, d.Ino)
	case now.Size != d.Size:
		what = fmt.Sprintf("the file has %d bytes, the cache says %d", now.Size, d.Size)
	case now.MtimeNs != d.MtimeNs:
		what = fmt.Sprintf("the file was modified at %s, the cache is of %s", fmtNs(now.MtimeNs), fmtNs(d.MtimeNs))
	case now.CtimeNs != d.CtimeNs:
		what = fmt.Sprintf("the file changed at %s, the cache is of %s", fmtNs(now.CtimeNs), fmtNs(d.CtimeNs))
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrStaleDigestCache, what)
}

func fmtNs(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// Write writes d beside image (image + DigestCacheSuffix), atomically.
func (d DigestCache) Write(image string) error {
	if err := d.check(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(image+DigestCacheSuffix, append(b, '\n'), 0o644)
}

// ParseDigestCache decodes and checks a digest cache: a known version,
// sizes not negative, digests of 64 lower-case hex digits.
func ParseDigestCache(b []byte) (DigestCache, error) {
	var d DigestCache
	if len(b) > maxDigestCache {
		return d, fmt.Errorf("digest cache of %d bytes: too long", len(b))
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("digest cache: %w", err)
	}
	return d, d.check()
}

// check says what is wrong with d, if anything.
func (d DigestCache) check() error {
	if d.Version != DigestCacheVersion {
		return fmt.Errorf("digest cache version %d: this herd reads version %d", d.Version, DigestCacheVersion)
	}
	if d.Size < 0 {
		return fmt.Errorf("digest cache: negative size %d", d.Size)
	}
	if !isDigest(d.SHA256) {
		return fmt.Errorf("digest cache: sha256 %q is not a SHA-256 in hex", d.SHA256)
	}
	if d.Tree != "" && !isDigest(d.Tree) {
		return fmt.Errorf("digest cache: tree %q is not a digest in hex", d.Tree)
	}
	if dd := d.Decoded; dd != nil {
		switch {
		case dd.Compression == "":
			return errors.New("digest cache: decoded digest without a compression")
		case dd.Size < 0:
			return fmt.Errorf("digest cache: negative decoded size %d", dd.Size)
		case !isDigest(dd.SHA256):
			return fmt.Errorf("digest cache: decoded sha256 %q is not a SHA-256 in hex", dd.SHA256)
		case dd.Tree != "" && !isDigest(dd.Tree):
			return fmt.Errorf("digest cache: decoded tree %q is not a digest in hex", dd.Tree)
		}
	}
	return nil
}

// isDigest reports whether s is a SHA-256 in lower-case hex.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == strings.ToLower(s)
}

// ReadDigestCache reads image's digest cache and checks it against fi,
// the image's own stat (taken on the open file the caller reads). The
// error wraps ErrNoDigestCache when there is none, ErrStaleDigestCache
// when it describes another file or version of the file.
func ReadDigestCache(image string, fi fs.FileInfo) (DigestCache, error) {
	path := image + DigestCacheSuffix
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DigestCache{}, fmt.Errorf("%s: %w", path, ErrNoDigestCache)
	}
	if err != nil {
		return DigestCache{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDigestCache+1))
	if err != nil {
		return DigestCache{}, fmt.Errorf("read %s: %w", path, err)
	}
	d, err := ParseDigestCache(b)
	if err != nil {
		return DigestCache{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := d.Matches(fi); err != nil {
		return DigestCache{}, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}
