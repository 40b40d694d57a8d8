package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.ks", "lang C\npart / --size=1024 --grow\npart swap --size=512\nimage root.tar.zst --to /\nbootloader --location=mbr\n")
	desc := write("nodes.desc", "linux 3500 extended fill logical swap 500 logical linux fill\n")
	bad := write("bad.ks", "part / --size=1024\nimage root.tar --to /srv\n")
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"plan", "check", good}, ExitOK, "plan OK (2 partition(s), 1 image(s), 1 warning(s))", "good.ks:1: lang is not supported"},
		{[]string{"plan", "check", desc}, ExitOK, "partition  swap       swap   logical  500 MiB", ""},
		{[]string{"plan", "check", "--ka", good}, ExitUsage, "", `good.ks:1: unknown word "lang"`},
		{[]string{"plan", "check", bad}, ExitUsage, "", "bad.ks:2: image root.tar --to /srv: no partition of the plan is mounted there"},
		{[]string{"plan", "check", filepath.Join(dir, "missing.ks")}, ExitUsage, "", "missing.ks: no such file"},
		{[]string{"plan", "check"}, ExitUsage, "", "give a plan FILE"},
		{[]string{"plan", "verify", good}, ExitUsage, "", `unknown plan command "verify"`},
	} {
		code, stdout, stderr := run(Herd, tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.out) || !strings.Contains(stderr, tc.err) {
			t.Errorf("herd %s: exit %d, stdout %q, stderr %q; want exit %d, %q, %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.out, tc.err)
		}
	}
}
