// Package mountinfo reads the kernel's mount table, /proc/PID/mountinfo
// (proc(5)), and decodes the octal escapes it, /proc/swaps and fstab(5)
// write for spaces, tabs, newlines and backslashes in paths.
package mountinfo

import (
	"strings"
)

// Entry is the part of a mountinfo line herd's checks need.
type Entry struct {
	// DevID is the mounted device's "major:minor".
	DevID string
	// Point is the mount point, Source the mount source ("/dev/sda1"),
	// FSType the filesystem type; escapes decoded.
	Point, FSType, Source string
	// RW: both the mount and the superblock are read-write.
	RW bool
}

// Parse reads one line of /proc/PID/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
// ok is false for a line that is not one.
func Parse(line string) (e Entry, ok bool) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+3 > len(f) {
		return Entry{}, false
	}
	e = Entry{DevID: f[2], Point: Unescape(f[4]), FSType: f[sep+1], Source: Unescape(f[sep+2])}
	super := ""
	if sep+3 < len(f) {
		super = f[sep+3]
	}
	e.RW = hasOption(f[5], "rw") && (super == "" || hasOption(super, "rw"))
	return e, true
}

func hasOption(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// Unescape decodes the \NNN octal escapes ("\040" is a space) of
// mountinfo, /proc/swaps and fstab; a backslash not followed by three
// octal digits of a byte value (at most \377) stays as it is.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
