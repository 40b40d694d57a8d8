package bootlayout

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestRel(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"pxelinux.0", "pxelinux.0", nil},
		{"/pxelinux.cfg/default", "pxelinux.cfg/default", nil},
		{"a//./b/", "a/b", nil},
		{"..", "", ErrOutside},
		{"a/../b", "", ErrOutside}, // refused although it stays inside
		{"/../etc/passwd", "", ErrOutside},
		{"..foo", "..foo", nil}, // a name, not an element ".."
		{"", "", ErrEmpty},
		{"/", "", ErrEmpty},
		{"./.", "", ErrEmpty},
	} {
		got, err := Rel(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Rel(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzRel: a result is a clean relative path with no ".." element, which
// path.Clean leaves as it is; an error leaves no path.
func FuzzRel(f *testing.F) {
	for _, s := range []string{"pxelinux.0", "/a/b", "../x", "a/../../b", "//x", "", ".", "a//./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Rel(in)
		if err != nil {
			if got != "" {
				t.Fatalf("Rel(%q) = %q with error %v", in, got, err)
			}
			return
		}
		if got == "" || path.Clean(got) != got || path.IsAbs(got) {
			t.Fatalf("Rel(%q) = %q: not a clean relative path", in, got)
		}
		for _, e := range strings.Split(got, "/") {
			if e == ".." {
				t.Fatalf("Rel(%q) = %q has element ..", in, got)
			}
		}
	})
}
