package tftp

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"pxelinux.0", "pxelinux.0", nil},
		{"/pxelinux.0", "pxelinux.0", nil},
		{"pxelinux.cfg/01-52-54-00-00-00-01", "pxelinux.cfg/01-52-54-00-00-00-01", nil},
		{"./a//b/./c", "a/b/c", nil},
		{"a/b/", "a/b", nil},
		{`boot\pxelinux.0`, `boot\pxelinux.0`, nil}, // a name like any other on Linux
		{"//etc/passwd", "", errAccess},
		{"../x", "", errAccess},
		{"/../x", "", errAccess},
		{"a/../b", "", errAccess},
		{"a/..", "", errAccess},
		{"", "", errNotFound},
		{"/", "", errNotFound},
		{"./.", "", errNotFound},
		{"...", "...", nil},
		{"..a", "..a", nil},
	} {
		got, err := cleanName(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"pxelinux.0", "/a/b", "../x", "a/../../b", "//x", "", ".", "a//./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := cleanName(in)
		if err != nil {
			if got != "" {
				t.Fatalf("cleanName(%q) = %q with error %v", in, got, err)
			}
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") {
			t.Fatalf("cleanName(%q) = %q", in, got)
		}
		for _, e := range strings.Split(got, "/") {
			if e == "" || e == "." || e == ".." {
				t.Fatalf("cleanName(%q) = %q has element %q", in, got, e)
			}
		}
	})
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want request
		err  string
	}{
		{"plain", "\x00\x01pxelinux.0\x00octet\x00", request{Opcode: 1, Name: "pxelinux.0", Mode: "octet"}, ""},
		{"options", "\x00\x01f\x00octet\x00blksize\x001468\x00tsize\x000\x00", request{Opcode: 1, Name: "f", Mode: "octet", Options: []option{{"blksize", "1468"}, {"tsize", "0"}}}, ""},
		{"write", "\x00\x02f\x00netascii\x00", request{Opcode: 2, Name: "f", Mode: "netascii"}, ""},
		{"short", "\x00", request{}, "too short"},
		{"data", "\x00\x03\x00\x01", request{}, "not a request"},
		{"no NUL", "\x00\x01f", request{}, "not NUL-terminated"},
		{"empty", "\x00\x01", request{}, "not NUL-terminated"},
		{"no mode", "\x00\x01f\x00", request{}, "without a mode"},
		{"option without value", "\x00\x01f\x00octet\x00blksize\x00", request{}, `option "blksize" without a value`},
		{"no name", "\x00\x01\x00octet\x00", request{}, "without a file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00windowsize\x004\x00"))
	f.Add([]byte("\x00\x01f"))
	f.Add([]byte("\x00\x02f\x00octet\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := parseRequest(in)
		if err != nil {
			return
		}
		if r.Name == "" || (r.Opcode != 1 && r.Opcode != 2) {
			t.Fatalf("parseRequest(%q) = %+v", in, r)
		}
		_ = checkOptions(r.Options) // must not panic
	})
}

func TestCheckOptions(t *testing.T) {
	for _, tc := range []struct {
		opts []option
		err  string
	}{
		{nil, ""},
		{[]option{{"blksize", "1468"}, {"tsize", "0"}, {"windowsize", "16"}, {"timeout", "5"}}, ""},
		{[]option{{"blksize", "8"}}, ""},
		{[]option{{"blksize", "65464"}, {"windowsize", "16"}}, ""},
		{[]option{{"blksize", "512"}, {"windowsize", "2048"}}, ""},
		{[]option{{"BLKSIZE", "0"}, {"multicast", ""}}, ""}, // ignored by the library: harmless
		{[]option{{"blksize", "7"}}, "blksize"},
		{[]option{{"blksize", "65465"}}, "blksize"},
		{[]option{{"blksize", "-1"}}, "blksize"},
		{[]option{{"blksize", "1468"}, {"blksize", "0"}}, "blksize"},
		{[]option{{"windowsize", "0"}}, "windowsize"},
		{[]option{{"windowsize", "65536"}}, "windowsize"},
		{[]option{{"timeout", "0"}}, "timeout"},
		{[]option{{"timeout", "256"}}, "timeout"},
		{[]option{{"tsize", ""}}, "tsize"},
		{[]option{{"blksize", "1468"}, {"windowsize", "1024"}}, "window of"},
	} {
		err := checkOptions(tc.opts)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkOptions(%v) = %v, want %q", tc.opts, err, tc.err)
		}
	}
}
