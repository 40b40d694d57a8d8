package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line string
		want Entry
		ok   bool
	}{
		{"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
			Entry{DevID: "98:0", Point: "/mnt2", FSType: "ext3", Source: "/dev/root", RW: true}, true},
		{"22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw",
			Entry{DevID: "8:2", Point: "/", FSType: "ext4", Source: "/dev/sda2", RW: true}, true},
		{"23 1 8:1 / /boot ro,relatime - vfat /dev/sda1 rw,fmask=0022",
			Entry{DevID: "8:1", Point: "/boot", FSType: "vfat", Source: "/dev/sda1"}, true},
		// Mount options rw but the superblock read-only: nothing writes.
		{"24 1 8:3 / /data rw - ext4 /dev/sda3 ro,errors=remount-ro",
			Entry{DevID: "8:3", Point: "/data", FSType: "ext4", Source: "/dev/sda3"}, true},
		{`25 1 8:4 / /mnt/my\040disk rw - ext4 /dev/sda4 rw`,
			Entry{DevID: "8:4", Point: "/mnt/my disk", FSType: "ext4", Source: "/dev/sda4", RW: true}, true},
		{"26 1 0:5 / /dev rw,nosuid - devtmpfs udev rw,size=1k",
			Entry{DevID: "0:5", Point: "/dev", FSType: "devtmpfs", Source: "udev", RW: true}, true},
		{"garbage", Entry{}, false},
		{"1 2 3:4 / /x rw no separator here", Entry{}, false},
		{"1 2 3:4 / /x rw -", Entry{}, false},
	}
	for _, tt := range tests {
		got, ok := Parse(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`/mnt/my\040disk`, "/mnt/my disk"},
		{`a\011b\012c\134d`, "a\tb\nc\\d"},
		{`plain`, "plain"},
		{`end\04`, `end\04`}, // too short
		{`x\400y`, `x\400y`}, // not a byte
		{`x\08ay`, `x\08ay`}, // not octal
		{`\\040`, `\ `},      // the first backslash stays
		{`tail\`, `tail\`},
	} {
		if got := Unescape(tc.in); got != tc.want {
			t.Errorf("Unescape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
	f.Add(`25 1 8:4 / /mnt/my\040disk rw - ext4 /dev/sda4 rw`)
	f.Add("1 2 3:4 / /x rw -")
	f.Fuzz(func(t *testing.T, line string) {
		e, ok := Parse(line)
		if !ok {
			return
		}
		if e.DevID == "" || e.DevID != strings.Fields(line)[2] {
			t.Errorf("Parse(%q): device %q", line, e.DevID)
		}
	})
}

func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`a\040b`, `\`, `\777`, `x\0`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Unescape(s)
		if len(got) > len(s) {
			t.Errorf("Unescape(%q) = %q: longer than its input", s, got)
		}
		if !strings.Contains(s, `\`) && got != s {
			t.Errorf("Unescape(%q) = %q: changed a string without escapes", s, got)
		}
	})
}
