package cook

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"
)

// tar unpacks a tar stream (ustar, pax, GNU, with GNU sparse files) from r
// under the root, stopping at the end-of-archive marker or at the end of r.
func (x *extractor) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	last := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags names it deems
		// unsafe; clean decides here, the same way whatever the setting.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			if last != "" {
				return fmt.Errorf("tar: after entry %q: %w", last, err)
			}
			return fmt.Errorf("tar: %w", err)
		}
		last = hdr.Name
		e, ok := tarEntry(hdr, tr)
		if !ok {
			if hdr.Typeflag != tar.TypeXGlobalHeader && hdr.Typeflag != 'V' {
				x.logf("cook: tar entry %q: skipping entry of type %q", hdr.Name, hdr.Typeflag)
			}
			continue
		}
		if err := x.apply(e); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	}
	return x.finish()
}

// tarEntry converts a tar header; false for the types not unpacked
// (global headers, volume labels, anything unknown).
func tarEntry(hdr *tar.Header, body io.Reader) (*entry, bool) {
	e := &entry{
		name:     hdr.Name,
		mode:     uint32(hdr.Mode) & 0o7777,
		uid:      hdr.Uid,
		gid:      hdr.Gid,
		mtime:    hdr.ModTime,
		atime:    hdr.AccessTime,
		linkname: hdr.Linkname,
		major:    uint32(hdr.Devmajor),
		minor:    uint32(hdr.Devminor),
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		e.typ = typeFile
		e.body, e.size = body, hdr.Size
		e.sparse = hdr.Typeflag == tar.TypeGNUSparse
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				e.sparse = true
			}
		}
	case tar.TypeDir, 'D': // 'D': GNU dumpdir, a directory with a listing
		e.typ = typeDir
	case tar.TypeSymlink:
		e.typ = typeSymlink
	case tar.TypeLink:
		e.typ = typeHardlink
	case tar.TypeChar:
		e.typ = typeChar
	case tar.TypeBlock:
		e.typ = typeBlock
	case tar.TypeFifo:
		e.typ = typeFifo
	default:
		return nil, false
	}
	return e, true
}
