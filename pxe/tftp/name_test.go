package tftp

import (
	"errors"
	"strings"
	"testing"
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
