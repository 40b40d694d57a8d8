package cook

import (
	"errors"
	"strings"
	"testing"
)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Kind
		ok   bool
	}{
		{"disk.img.gz", Kind{"gz", ""}, true},
		{"disk.img.GZ", Kind{"gz", ""}, true},
		{"disk.zst", Kind{"zst", ""}, true},
		{"/srv/images/disk.xz", Kind{"xz", ""}, true},
		{"disk.Z", Kind{"Z", ""}, true},
		{"root.tar", Kind{"", "tar"}, true},
		{"root.TAR", Kind{"", "tar"}, true},
		{"root.tar.gz", Kind{"gz", "tar"}, true},
		{"root.tgz", Kind{"gz", "tar"}, true},
		{"root.tar.Z", Kind{"Z", "tar"}, true},
		{"root.TAR.Z", Kind{"Z", "tar"}, true},
		{"root.taz", Kind{"Z", "tar"}, true},
		{"root.tar.zst", Kind{"zst", "tar"}, true},
		{"root.tzst", Kind{"zst", "tar"}, true},
		{"root.tar.xz", Kind{"xz", "tar"}, true},
		{"root.txz", Kind{"xz", "tar"}, true},
		{"initrd.cpio", Kind{"", "cpio"}, true},
		{"initrd.cpio.gz", Kind{"gz", "cpio"}, true},
		{"initrd.cpio.Z", Kind{"Z", "cpio"}, true},
		{"initrd.cpio.zst", Kind{"zst", "cpio"}, true},
		{"initrd.CPIO.XZ", Kind{"xz", "cpio"}, true},
		{"disk.z", Kind{}, false},     // pack(1), not compress
		{"root.tar.z", Kind{}, false}, // likewise
		{"disk.img", Kind{}, false},
		{"disk.bz2", Kind{}, false},
		{"", Kind{}, false},
		{"gz", Kind{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KindOf(tc.name)
			if tc.ok {
				if err != nil || got != tc.want {
					t.Fatalf("KindOf(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("KindOf(%q) = %v, want an error", tc.name, got)
			}
			if !errors.Is(err, ErrUnknownKind) || !strings.Contains(err.Error(), ".tar.zst") || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("error %q should wrap ErrUnknownKind, name the input and list the suffixes", err)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		{}:              "raw",
		{"gz", ""}:      "gz",
		{"", "tar"}:     "tar",
		{"Z", "tar"}:    "tar.Z",
		{"zst", "cpio"}: "cpio.zst",
	} {
		if got := k.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", k, got, want)
		}
	}
}

func FuzzKindOf(f *testing.F) {
	for _, s := range []string{"a.tar.gz", "b.Z", "c.taz", "d", ".cpio.zst", "x.TXZ", "\x00.gz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k, err := KindOf(name)
		if err != nil {
			if !errors.Is(err, ErrUnknownKind) {
				t.Fatalf("error does not wrap ErrUnknownKind: %v", err)
			}
			return
		}
		if err := k.check(); err != nil {
			t.Fatalf("KindOf(%q) = %v, which NewSink refuses: %v", name, k, err)
		}
		// The kind's own name, as a suffix, gives the kind back.
		if k2, err := KindOf("x." + k.String()); err != nil || k2 != k {
			t.Fatalf("KindOf(%q) = %v, but KindOf(x.%s) = %v, %v", name, k, k, k2, err)
		}
		if k.Compression == "Z" && !strings.HasSuffix(name, "Z") && !strings.HasSuffix(strings.ToLower(name), ".taz") {
			t.Fatalf("KindOf(%q) = %v without an upper-case Z", name, k)
		}
	})
}
