// Package diskimage inspects and captures whole-disk images: the raw
// images the ring writes to block devices, and their compressed forms
// (.zst, .gz, .xz, .Z) that a ring node decodes on the fly ("golden.img.zst
// >> /dev/vda").
//
// Inspect reports an image's decoded size, its data size (the bytes the
// ring sends as data: every Block-aligned block that is not all zeros; the
// rest travels as holes), the SHA-256 of the decoded image (what every
// node reports for what it wrote), its MBR partition table and, behind a
// protective MBR, its GUID partition table (GPT). Compressed
// images are decoded by package ring/cook, the decoder ring nodes run.
//
// Capture reads a block device or an image file, skipping the holes of
// sparse files, and writes it zstd-compressed, atomically.
package diskimage

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/herdproject/herd/ring/blockdev"
	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/sink"
	"github.com/herdproject/herd/ring/source"
)

// Formats Inspect reports.
const (
	FormatRaw  = "raw"
	FormatZstd = "zstd"
	FormatGzip = "gzip"
	FormatXz   = "xz"
	FormatZ    = "compress" // Unix compress (.Z)
)

// compressions maps formats to package cook's compression names.
var compressions = map[string]string{FormatZstd: "zst", FormatGzip: "gz", FormatXz: "xz", FormatZ: "Z"}

// magics are the compressed formats' first bytes.
var magics = []struct {
	format string
	magic  []byte
}{
	{FormatZstd, []byte{0x28, 0xB5, 0x2F, 0xFD}},
	{FormatGzip, []byte{0x1F, 0x8B}},
	{FormatXz, []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}},
	{FormatZ, []byte{0x1F, 0x9D}},
}

// Info describes an image.
type Info struct {
	// Path is the image's file name, as given.
	Path string `json:"path"`
	// Format is FormatRaw or the compression (FormatZstd, ...).
	Format string `json:"format"`
	// FileSize is the image file's length (for a compressed image, the
	// compressed size; for a block device, its size).
	FileSize int64 `json:"file_size"`
	// Allocated is what a raw regular file takes on disk (sparse files
	// take less than their size); 0 for others.
	Allocated int64 `json:"allocated,omitempty"`
	// Size is the decoded image's length in bytes.
	Size int64 `json:"size"`
	// DataSize is the number of bytes in Block-aligned blocks that are not
	// all zeros: what the ring sends as data (the rest travels as holes).
	DataSize int64 `json:"data_size"`
	// SHA256 is the hex SHA-256 of the decoded image.
	SHA256 string `json:"sha256"`
	// FileSHA256 is the hex SHA-256 of a compressed image's file (what a
	// raw send of the file compares); empty for a raw image, whose file
	// digest is SHA256.
	FileSHA256 string `json:"file_sha256,omitempty"`
	// Tree and FileTree are the same as the ring's tree digest (package
	// ring/digest), what herd send verifies with by default.
	Tree     string `json:"tree,omitempty"`
	FileTree string `json:"file_tree,omitempty"`
	// Table is the MBR partition table; nil when there is none.
	Table *Table `json:"partition_table,omitempty"`
	// NoTable says why Table is nil ("" when it is not).
	NoTable string `json:"no_partition_table,omitempty"`
	// GPT is the GUID partition table, read when Table is a protective
	// MBR (Label "gpt"); nil otherwise.
	GPT *GPT `json:"gpt,omitempty"`
	// NoGPT says why GPT is nil although the protective MBR announces
	// one: a damaged header or entry array (bad CRC32), a truncated
	// image. "" when GPT is read, or not announced.
	NoGPT string `json:"no_gpt,omitempty"`
	// Duration of the inspection.
	Duration time.Duration `json:"-"`

	// cache is the image's digest cache when it was read whole and was
	// a regular file that did not change while it was read.
	cache *source.DigestCache
}

// DigestCache returns the digest cache Inspect found for the image (see
// package ring/source): the digests with the identity of the file they
// describe; false when the image is no regular file, was only partly read
// (InspectHead) or changed while it was read.
func (i *Info) DigestCache() (source.DigestCache, bool) {
	if i.cache == nil {
		return source.DigestCache{}, false
	}
	return *i.cache, true
}

// SaveDigestCache writes the image's digest cache beside it (IMAGE +
// source.DigestCacheSuffix), atomically, for the sender: an input whose
// digest cache matches it is not hashed again. It returns the file
// written.
func (i *Info) SaveDigestCache() (string, error) {
	d, ok := i.DigestCache()
	if !ok {
		return "", fmt.Errorf("%s: no digest cache: not a regular file, or it changed while it was read", i.Path)
	}
	if err := d.Write(i.Path); err != nil {
		return "", err
	}
	return i.Path + source.DigestCacheSuffix, nil
}

// Detect returns the format of the image at path: by its first bytes,
// which must agree with a compression suffix the name has. A name that
// says archive (.tar, .cpio, .tar.gz, ...) is refused: the ring unpacks
// those under a directory, they are no disk images.
func Detect(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return detect(path, head[:n])
}

func detect(path string, head []byte) (string, error) {
	byMagic := FormatRaw
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			byMagic = m.format
			break
		}
	}
	k, kerr := cook.KindOf(path)
	if kerr == nil && k.Archive != "" {
		return "", fmt.Errorf("%s is named as a %s archive, not a disk image: images are raw, or compressed whole (.zst, .gz, .xz, .Z)", path, k)
	}
	if kerr == nil && byMagic != FormatRaw && compressions[byMagic] != k.Compression {
		return "", fmt.Errorf("%s is named .%s but holds %s data: rename it, or the ring will decode it wrongly", path, k.Compression, byMagic)
	}
	if kerr == nil && byMagic == FormatRaw {
		return "", fmt.Errorf("%s is named .%s but does not start with that format's magic bytes: a truncated or mislabelled file (a raw image should not carry a compression suffix)", path, k.Compression)
	}
	return byMagic, nil
}

// Inspect reads the image at path whole (a raw image's holes are
// skipped, not read) and describes it. ctx cancels the read.
func Inspect(ctx context.Context, path string) (*Info, error) { return inspect(ctx, path, 0) }

// InspectHead is Inspect reading only the image's first HeadBytes
// (decoded): its partition tables (MBR, GPT) and format, at once whatever
// the image's size. Size, DataSize and SHA256 stay zero; Size is the
// bytes read when the image ended before HeadBytes.
func InspectHead(ctx context.Context, path string) (*Info, error) {
	return inspect(ctx, path, HeadBytes)
}

// inspect is Inspect, or InspectHead when limit > 0.
func inspect(ctx context.Context, path string, limit int64) (*Info, error) {
	start := time.Now()
	format, err := Detect(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	info := &Info{Path: path, Format: format, FileSize: st.Size()}
	isBlock := st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0
	switch {
	case isBlock:
		if info.FileSize, err = blockdev.Size(f); err != nil {
			return nil, fmt.Errorf("size of %s: %w", path, err)
		}
	case st.Mode().IsRegular():
		info.Allocated = allocated(st)
	default:
		return nil, fmt.Errorf("%s is not a regular file or block device", path)
	}

	sc := newScanner(format == FormatRaw && limit == 0, limit == 0)
	sc.limit = limit
	var res sink.Result
	var fileSum, fileTree []byte
	if format == FormatRaw {
		size := info.FileSize
		if limit > 0 {
			size = min(size, limit)
		}
		if err := scanRaw(ctx, f, size, sc); err != nil && !errors.Is(err, errHeadRead) {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		res, _ = sc.Close()
	} else {
		res, fileSum, fileTree, err = decode(ctx, f, format, path, sc)
		if err != nil && !errors.Is(err, errHeadRead) {
			return nil, err
		}
	}
	switch {
	case limit == 0:
		info.Size, info.DataSize, info.SHA256 = res.Bytes, sc.data, hex.EncodeToString(res.Digest)
		info.Tree = sc.treeHex()
		if fileSum != nil {
			info.FileSHA256, info.FileTree = hex.EncodeToString(fileSum), hex.EncodeToString(fileTree)
		}
		info.cache = digestCache(f, st, info)
	case sc.pos < limit:
		info.Size = sc.pos
	}
	info.tables(sc)
	info.Duration = time.Since(start)
	return info, nil
}

// digestCache is the digest cache of the image f that was read whole,
// before as st (a regular file), described by info; nil when f changed
// while it was read (it may change within one tick of the file system's
// clock unseen: see package ring/source for why that is safe).
func digestCache(f *os.File, st os.FileInfo, info *Info) *source.DigestCache {
	if !st.Mode().IsRegular() {
		return nil
	}
	after, err := f.Stat()
	if err != nil {
		return nil
	}
	sum, tree := info.SHA256, info.Tree
	if info.Format != FormatRaw {
		sum, tree = info.FileSHA256, info.FileTree
	}
	d, err := source.NewDigestCache(st, sum)
	if err != nil || d.Matches(after) != nil {
		return nil
	}
	d.Tree = tree
	if info.Format != FormatRaw {
		d.Decoded = &source.DecodedDigest{Compression: compressions[info.Format], Size: info.Size, SHA256: info.SHA256, Tree: info.Tree}
	}
	return &d
}

// tables fills in the MBR and GPT the scanner saw.
func (info *Info) tables(sc *scanner) {
	if t, err := sc.table(); err != nil {
		info.NoTable = strings.TrimPrefix(err.Error(), ErrNoMBR.Error()+": ")
	} else {
		info.Table = t
	}
	switch g, err := sc.gpt(info.Table); {
	case err != nil:
		info.NoGPT = err.Error()
	case g != nil:
		info.GPT = g
		info.Table.Notes = slices.DeleteFunc(info.Table.Notes, func(n string) bool { return n == noteProtective })
	}
}

// ESP returns the image's first EFI System Partition in its GPT; false
// when it has none, or no GPT that could be read (NoGPT says why). See
// HasESP for MBR disks.
func (i *Info) ESP() (GPTPartition, bool) { return i.GPT.ESP() }

// BIOSBoot returns the image's first BIOS boot partition in its GPT
// (where GRUB's core.img goes on a GPT disk booted by BIOS).
func (i *Info) BIOSBoot() (GPTPartition, bool) { return i.GPT.BIOSBoot() }

// HasESP reports whether UEFI firmware finds an EFI System Partition on
// the image: a GPT entry of that type, or, on an MBR (dos) disk, a
// partition of type 0xEF (UEFI 2.10 §5.2). A GPT that Inspect could not
// read (NoGPT) counts as none: herd reads only the primary header, not
// the backup that firmware may fall back on.
func (i *Info) HasESP() bool {
	if _, ok := i.ESP(); ok {
		return true
	}
	if i.Table == nil || i.Table.Label != "dos" {
		return false
	}
	for _, p := range i.Table.Partitions {
		if p.Type == 0xEF {
			return true
		}
	}
	return false
}

// decode pushes the compressed file through the ring's cooked decoder
// into the scanner, as a ring node would push it into its output, and
// hashes the file's own bytes as they are read: fileSum and fileTree, the
// SHA-256 and tree digest of the file when it was read to its end.
func decode(ctx context.Context, f *os.File, format, path string, sc *scanner) (res sink.Result, fileSum, fileTree []byte, err error) {
	k := cook.Kind{Compression: compressions[format]}
	s, err := cook.NewSink(k, "the decoded image", cook.Options{
		OpenRaw: func(string) (sink.Sink, error) { return sc, nil },
	})
	if err != nil {
		return sink.Result{}, nil, nil, err
	}
	fh, ft := digest.New(digest.SHA256), digest.New(digest.Tree)
	both := digest.Concurrent{fh, ft}
	buf := make([]byte, readBuf)
	for {
		if err := ctx.Err(); err != nil {
			s.Abort()
			return sink.Result{}, nil, nil, err
		}
		n, rerr := f.Read(buf)
		if n > 0 {
			both.Write(buf[:n])
			if _, err := s.Write(buf[:n]); err != nil {
				s.Abort()
				return sink.Result{}, nil, nil, fmt.Errorf("decode %s: %w", path, err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			s.Abort()
			return sink.Result{}, nil, nil, fmt.Errorf("read %s: %w", path, rerr)
		}
	}
	res, err = s.Close()
	if err != nil {
		return sink.Result{}, nil, nil, fmt.Errorf("decode %s: %w (a truncated or damaged file?)", path, err)
	}
	return res, fh.Sum(nil), ft.Sum(nil), nil
}
