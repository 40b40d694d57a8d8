// Package cook decodes a file's stream on a node while it arrives: dolly+'s
// cooked outputs ("in >> out"). The input's name says what the bytes are
// (.gz, .zst, .xz, .Z, .tar, .cpio and their combinations); a cooked sink
// decompresses them, and either writes the result to one raw output (a file,
// a block device, standard output) or unpacks the archive under a
// directory.
//
// The node pushes the encoded bytes into a Sink with Write and Zero; inside,
// one goroutine runs the decoder on the other end of a pipe. Digest runs the
// same decoder without writing, so a sender can compute, for each cooked
// file, the length and SHA-256 that every node's Sink will report.
package cook

import (
	"errors"
	"fmt"
	"strings"
)

// Compression and archive names, as Kind holds them.
const (
	compNone = ""
	compGzip = "gz"
	compZstd = "zst"
	compXz   = "xz"
	compZ    = "Z" // Unix compress, LZW

	archNone = ""
	archTar  = "tar"
	archCpio = "cpio"
)

// Kind says how to decode a stream: a compression, an archive format, or
// both (decompress, then unpack).
type Kind struct {
	// Compression is "" (none), "gz" (gzip, multi-member), "zst" (zstd),
	// "xz" or "Z" (Unix compress).
	Compression string
	// Archive is "" (none: the decoded bytes go to one output), "tar" or
	// "cpio" (newc, crc or odc), unpacked under the output directory.
	Archive string
}

// ErrUnknownKind is wrapped by KindOf for a name it cannot decode by, and
// by NewSink and Digest for a Kind they do not know.
var ErrUnknownKind = errors.New("unknown kind")

// suffixes maps name endings to kinds, longest first so that ".tar.gz"
// wins over ".gz". Matching ignores case, except that a "Z" must be upper
// case: ".z" was pack(1), which this package does not read.
var suffixes = []struct {
	suffix string
	kind   Kind
}{
	{".cpio.zst", Kind{compZstd, archCpio}},
	{".tar.zst", Kind{compZstd, archTar}},
	{".cpio.gz", Kind{compGzip, archCpio}},
	{".cpio.xz", Kind{compXz, archCpio}},
	{".cpio.Z", Kind{compZ, archCpio}},
	{".tar.gz", Kind{compGzip, archTar}},
	{".tar.xz", Kind{compXz, archTar}},
	{".tar.Z", Kind{compZ, archTar}},
	{".tzst", Kind{compZstd, archTar}},
	{".cpio", Kind{compNone, archCpio}},
	{".tgz", Kind{compGzip, archTar}},
	{".taz", Kind{compZ, archTar}},
	{".txz", Kind{compXz, archTar}},
	{".tar", Kind{compNone, archTar}},
	{".zst", Kind{compZstd, archNone}},
	{".gz", Kind{compGzip, archNone}},
	{".xz", Kind{compXz, archNone}},
	{".Z", Kind{compZ, archNone}},
}

// Supported lists the name endings KindOf knows, for messages and help
// texts.
func Supported() []string {
	s := make([]string, len(suffixes))
	for i, x := range suffixes {
		s[i] = x.suffix
	}
	return s
}

// KindOf returns how to decode the input named inputName, from the end of
// the name: .gz .zst .xz .Z .tar .tar.gz .tgz .tar.Z .taz .tar.zst .tzst
// .tar.xz .txz .cpio .cpio.gz .cpio.Z .cpio.zst .cpio.xz. Case does not
// matter, except for .Z (Unix compress), which must be upper case. Any
// other name is an error (wrapping ErrUnknownKind) that names the input and
// lists what is supported.
func KindOf(inputName string) (Kind, error) {
	lower := strings.ToLower(inputName)
	for _, x := range suffixes {
		if !strings.HasSuffix(lower, strings.ToLower(x.suffix)) {
			continue
		}
		if strings.HasSuffix(x.suffix, "Z") && !strings.HasSuffix(inputName, "Z") {
			continue
		}
		return x.kind, nil
	}
	return Kind{}, fmt.Errorf("cook %q: %w: the name must end in one of %s (use a raw output for anything else)",
		inputName, ErrUnknownKind, strings.Join(Supported(), " "))
}

// String returns the kind as a name ending without the dot: "tar.gz",
// "cpio", "Z"; "raw" for the zero Kind.
func (k Kind) String() string {
	switch {
	case k.Archive == "" && k.Compression == "":
		return "raw"
	case k.Archive == "":
		return k.Compression
	case k.Compression == "":
		return k.Archive
	}
	return k.Archive + "." + k.Compression
}

// check reports a Kind this package cannot decode.
func (k Kind) check() error {
	switch k.Compression {
	case compNone, compGzip, compZstd, compXz, compZ:
	default:
		return fmt.Errorf("%w: compression %q (want gz, zst, xz, Z or none)", ErrUnknownKind, k.Compression)
	}
	switch k.Archive {
	case archNone, archTar, archCpio:
	default:
		return fmt.Errorf("%w: archive %q (want tar, cpio or none)", ErrUnknownKind, k.Archive)
	}
	if k == (Kind{}) {
		return fmt.Errorf("%w: nothing to decode (a raw output takes the stream as it is)", ErrUnknownKind)
	}
	return nil
}
