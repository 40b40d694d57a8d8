package efivar

import (
	"encoding/hex"
	"fmt"
)

// ParseGUID parses a GUID in its 8-4-4-4-12 text form, in either case
// ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), into the 16 bytes a GPT entry
// or an EFI device path stores (UEFI 2.10 Appendix A): the first three
// fields little-endian, the last eight bytes as written.
func ParseGUID(s string) ([16]byte, error) {
	var g [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("GUID %q: want the form 01234567-89ab-cdef-0123-456789abcdef: %w", s, ErrMalformed)
	}
	var be [16]byte // the GUID in the order it is written
	digits := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(be[:], []byte(digits)); err != nil {
		return g, fmt.Errorf("GUID %q: %w: %w", s, ErrMalformed, err)
	}
	g[0], g[1], g[2], g[3] = be[3], be[2], be[1], be[0]
	g[4], g[5] = be[5], be[4]
	g[6], g[7] = be[7], be[6]
	copy(g[8:], be[8:])
	return g, nil
}

// FormatGUID formats the on-disk (mixed-endian) bytes of a GUID in the
// lower-case 8-4-4-4-12 form efivarfs and blkid use. It is the inverse of
// ParseGUID.
func FormatGUID(g [16]byte) string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:16])
}
