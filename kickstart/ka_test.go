package kickstart

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The descriptions of the Mandriva cluster cloning guide
// (../shared/reference/mandriva-cluster-cloning-guide.txt).
func TestParseKaGuide(t *testing.T) {
	got, err := ParseKa("desc", strings.NewReader("linux 3500 extended fill logical swap 500 logical linux fill\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Part{
		{Kind: Primary, SizeMiB: 3500, Line: 1},
		{Kind: Extended, Grow: true, Line: 1},
		{Kind: Logical, Mount: "swap", FSType: "swap", SizeMiB: 500, Line: 1},
		{Kind: Logical, Grow: true, Line: 1},
	}
	if diff := cmp.Diff(want, got.Parts); diff != "" {
		t.Errorf("parts (-want +got):\n%s", diff)
	}

	// fdisk_to_desc's wrong output for a large disk, as the guide
	// prints it: the logical partitions do not fit the extended one.
	_, err = ParseKa("desc", strings.NewReader("swap 509 linux 5992 extended 71657 logical linux 52281 logical linux 19375 logical linux 78167 logical linux 156327"))
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "more than the extended partition's 71657") {
		t.Errorf("the guide's wrong description: %v, want the logical partitions too big for the extended one", err)
	}
	// ... and its fix.
	got, err = ParseKa("desc", strings.NewReader("swap 509 linux 5992 extended fill logical linux 52281 logical linux 19375 logical linux 78167 logical linux fill\n"))
	if err != nil {
		t.Fatalf("the guide's fixed description: %v", err)
	}
	if n := len(got.Parts); n != 7 || got.Parts[0].FSType != "swap" || !got.Parts[6].Grow || got.Parts[2].Kind != Extended {
		t.Errorf("the guide's fixed description: %+v", got.Parts)
	}
}

func TestParseKaErrors(t *testing.T) {
	for _, tc := range []struct {
		desc string
		line int
		want string
	}{
		{"", 1, "empty partition description"},
		{"# only a comment\n", 1, "empty partition description"},
		{"linux", 1, "missing size"},
		{"linux big", 1, `size "big"`},
		{"linux 0", 1, `size "0"`},
		{"linux fill linux 100", 1, "after a partition that fills the disk"},
		{"logical linux 100", 1, "logical before any extended partition"},
		{"extended 100 logical ntfs 50", 1, `logical "ntfs": want linux or swap`},
		{"extended 100 logical linux fill logical swap 10", 1, "after a logical partition that fills"},
		{"extended 100 logical linux 60\nlogical swap 50", 2, "need 110 MB, more than the extended partition's 100"},
		{"extended 100", 1, "without logical partitions"},
		{"extended 100 logical linux 10 linux 5", 1, "a primary partition after the extended one"},
		{"extended 10 logical linux 1 extended 5", 1, "a second extended partition"},
		{"linux 1 linux 1 linux 1 swap 1 linux 1", 1, "more than 4 primary"},
		{"\n\nfat 100", 3, `unknown word "fat"`},
	} {
		_, err := ParseKa("desc", strings.NewReader(tc.desc))
		var pe *Error
		if !errors.As(err, &pe) || pe.File != "desc" || pe.Line != tc.line || !strings.Contains(pe.Msg, tc.want) {
			t.Errorf("%q: %v; want desc:%d: ...%s...", tc.desc, err, tc.line, tc.want)
		}
	}
}

func FuzzParseKa(f *testing.F) {
	for _, s := range []string{
		"linux 3500 extended fill logical swap 500 logical linux fill",
		"swap 509 linux 5992 extended 71657 logical linux 52281 logical linux 19375",
		"linux fill # comment\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseKa("fuzz", strings.NewReader(s))
		if err != nil {
			return
		}
		var prim, ext int
		for _, pt := range p.Parts {
			switch pt.Kind {
			case Primary:
				prim++
			case Extended:
				ext++
			}
			if !pt.Grow && pt.SizeMiB <= 0 {
				t.Fatalf("partition %+v of %q has no size", pt, s)
			}
		}
		if prim+ext > 4 || ext > 1 {
			t.Fatalf("%d primary and %d extended partitions from %q", prim, ext, s)
		}
	})
}
