package modalias

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func fixtureAliases(t testing.TB) []Alias {
	t.Helper()
	f, err := os.Open("testdata/modules.alias")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := ParseAliases(f)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fixtureSoftdeps(t testing.TB) map[string][]string {
	t.Helper()
	f, err := os.Open("testdata/modules.softdep")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := ParseSoftdeps(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseAliases(t *testing.T) {
	got, err := ParseAliases(strings.NewReader(`# comment
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio-pci

  alias	scsi:t-0x00*   sd_mod  
options e1000 debug=1
blacklist floppy
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Alias{
		{Pattern: "pci:v00001AF4d00001000sv*sd*bc*sc*i*", Module: "virtio_pci"},
		{Pattern: "scsi:t-0x00*", Module: "sd_mod"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"alias onlypattern\n", "alias a b c\n", "# ok\nfrobnicate x y\n"} {
		if _, err := ParseAliases(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("ParseAliases(%q) = %v, want an error naming the line", bad, err)
		}
	}
	if n := len(fixtureAliases(t)); n != 48 {
		t.Errorf("fixture: %d aliases, want 48", n)
	}
}

func TestParseSoftdeps(t *testing.T) {
	got := fixtureSoftdeps(t)
	want := map[string][]string{
		"ext4":       {"crc32c"},
		"libcrc32c":  {"crc32c"},
		"btrfs":      {"crc32c", "xxhash64", "sha256", "blake2b_256"},
		"virtio_blk": {"virtio_ring"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got, err := ParseSoftdeps(strings.NewReader("softdep a pre: b post: c pre: d\nsoftdep a pre: b e\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"a": {"b", "d", "e"}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Words before pre:/post: are ignored, as kmod does.
	got, err = ParseSoftdeps(strings.NewReader("softdep cifs gcm\nsoftdep x y pre: z\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"x": {"z"}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"softdep a\n", "softdep\n"} {
		if _, err := ParseSoftdeps(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseSoftdeps(%q): no error", bad)
		}
	}
}

func TestMatchFixture(t *testing.T) {
	aliases := fixtureAliases(t)
	tests := []struct {
		modalias string
		want     []string
	}{
		// QEMU's devices, as their sysfs modalias reads.
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", []string{"virtio_pci"}},             // virtio-net (legacy)
		{"pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00", []string{"virtio_pci"}},             // virtio-net (modern)
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}},                                         //
		{"virtio:d00000002v00001AF4", []string{"virtio_blk"}},                                         //
		{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", []string{"e1000"}},                  // -device e1000
		{"pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", []string{"e1000e"}},                 // -device e1000e
		{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", []string{"ahci"}},                   // q35 AHCI: class and ID lines give it once
		{"pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", []string{"nvme"}},                   // -device nvme
		{"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", []string{"ata_piix"}},               // i440fx IDE
		{"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", nil},                                // host bridge
		{"scsi:t-0x00", []string{"sd_mod"}},                                                           // a disk
		{"scsi:t-0x05", []string{"sr_mod"}},                                                           // a CD-ROM
		{"serio:ty01pr00id00ex00", []string{"atkbd", "psmouse"}},                                      // file order
		{"acpi:QEMU0002:", []string{"qemu_fw_cfg"}},                                                   //
		{"of:NfwcfgT(null)Cqemu,fw-cfg-mmio", []string{"qemu_fw_cfg"}},                                // ',' and '-'
		{"cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0094,00E7", []string{"crc32c_intel"}}, // feature list
		{"usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00", []string{"usbhid"}},
		{"crc32c", []string{"crc32c_generic", "crc32c_intel"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := Match(aliases, tt.modalias); !cmp.Equal(got, tt.want) {
			t.Errorf("Match(%q) = %q, want %q", tt.modalias, got, tt.want)
		}
	}
}

// fnmatchCases are checked against fnmatch and, where a C compiler is
// present, against glibc's fnmatch(3) itself.
var fnmatchCases = []struct {
	p, s string
	want bool
}{
	{"", "", true},
	{"", "a", false},
	{"a", "", false},
	{"*", "", true},
	{"*", "anything/at/all", true},
	{"a*b", "ab", true},
	{"a*b", "axxb", true},
	{"a*b", "axxbc", false},
	{"a*b*c", "abbbbc", true},
	{"*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
	{"?", "x", true},
	{"?", "", false},
	{"??", "x", false},
	{"[abc]", "b", true},
	{"[abc]", "d", false},
	{"[!abc]", "d", true},
	{"[^abc]", "a", false},
	{"[a-f]x", "ex", true},
	{"[a-f]x", "gx", false},
	{"[]]", "]", true},
	{"[!]]", "]", false},
	{"[!]]", "x", true},
	{"[a-]", "-", false}, // '-' in the string reads as '_' (kmod)
	{"[a_]", "-", true},
	{"[", "[", true},
	{"[a", "[a", true},
	{"a[", "a[", true},
	{"[[:digit:]]x", "7x", true},
	{"[[:alpha:][:digit:]]", "_", false},
	{"[[:xdigit:]]", "F", true},
	{`\*`, "*", true},
	{`\*`, "a", false},
	{`a\`, "a", false},
	{`[\]]`, "]", true},
	{"fs-ext4", "fs_ext4", true}, // kmod normalisation
	{"fs_ext4", "fs-ext4", true},
	{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", true},
	{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i00", false},
	{"PCI:*", "pci:x", false}, // case matters
}

func TestFnmatch(t *testing.T) {
	for _, c := range fnmatchCases {
		if got := fnmatch(c.p, c.s); got != c.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
		if got := refMatch(c.p, c.s); got != c.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

// TestFnmatchGlibc compares fnmatch with glibc's fnmatch(p, s, 0) on the
// cases, both normalised as kmod does ('-' → '_' outside brackets), when
// a C compiler is at hand.
func TestFnmatchGlibc(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fnm.c")
	prog := `#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
int main(void) {
	char p[4096], s[4096];
	while (fgets(p, sizeof p, stdin) && fgets(s, sizeof s, stdin)) {
		p[strcspn(p, "\n")] = 0; s[strcspn(s, "\n")] = 0;
		printf("%d\n", fnmatch(p, s, 0) == 0);
	}
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fnm")
	if out, err := exec.Command(cc, "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("cc: %v\n%s", err, out)
	}
	type pair struct{ p, s string }
	var pairs []pair
	for _, c := range fnmatchCases {
		pairs = append(pairs, pair{c.p, c.s})
	}
	for _, a := range fixtureAliases(t) {
		pairs = append(pairs, pair{a.Pattern, "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"})
		pairs = append(pairs, pair{a.Pattern, "virtio:d00000001v00001AF4"})
		pairs = append(pairs, pair{a.Pattern, "scsi:t-0x00"})
	}
	var in bytes.Buffer
	for _, p := range pairs {
		fmt.Fprintf(&in, "%s\n%s\n", kmodNormalize(p.p), kmodNormalize(p.s))
	}
	cmd := exec.Command(bin)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(pairs) {
		t.Fatalf("%d answers for %d pairs", len(lines), len(pairs))
	}
	for i, p := range pairs {
		if got, want := fnmatch(p.p, p.s), lines[i] == "1"; got != want {
			t.Errorf("fnmatch(%q, %q) = %v, glibc says %v", p.p, p.s, got, want)
		}
	}
}

// kmodNormalize is kmod's alias_normalize: '-' → '_' outside brackets.
func kmodNormalize(s string) string {
	b := []byte(s)
	in := false
	for i, c := range b {
		switch {
		case c == '[':
			in = true
		case c == ']':
			in = false
		case c == '-' && !in:
			b[i] = '_'
		}
	}
	return string(b)
}

// refMatch is a slow, obviously correct matcher for the fuzz target:
// dynamic programming over (pattern index, string index).
func refMatch(p, s string) bool {
	memo := map[[2]int]bool{}
	var m func(pi, si int) bool
	m = func(pi, si int) bool {
		k := [2]int{pi, si}
		if v, ok := memo[k]; ok {
			return v
		}
		var r bool
		switch {
		case pi == len(p):
			r = si == len(s)
		case p[pi] == '*':
			r = m(pi+1, si) || (si < len(s) && m(pi, si+1))
		case si == len(s):
			r = false
		case p[pi] == '?':
			r = m(pi+1, si+1)
		case p[pi] == '[':
			if ok, next, valid := matchBracket(p, pi, norm(s[si])); valid {
				r = ok && m(next, si+1)
			} else {
				r = s[si] == '[' && m(pi+1, si+1)
			}
		case p[pi] == '\\':
			r = pi+1 < len(p) && norm(p[pi+1]) == norm(s[si]) && m(pi+2, si+1)
		default:
			r = norm(p[pi]) == norm(s[si]) && m(pi+1, si+1)
		}
		memo[k] = r
		return r
	}
	return m(0, 0)
}

func FuzzMatch(f *testing.F) {
	for _, c := range fnmatchCases {
		f.Add(c.p, c.s)
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 200 || len(s) > 200 {
			return
		}
		got := fnmatch(p, s)
		if want := refMatch(p, s); got != want {
			t.Fatalf("fnmatch(%q, %q) = %v, reference says %v", p, s, got, want)
		}
		mods := Match([]Alias{{p, "a"}, {"*", "b"}, {p, "a"}}, s)
		want := []string{"b"}
		if got {
			want = []string{"a", "b"}
		}
		if !cmp.Equal(mods, want) {
			t.Fatalf("Match = %q, want %q", mods, want)
		}
	})
}

func FuzzParseAliases(f *testing.F) {
	b, err := os.ReadFile("testdata/modules.alias")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("alias a b\n#x\n\noptions x y\n")
	f.Add("alias a\n")
	f.Add("softdep ext4 pre: crc32c post: x\n")
	f.Fuzz(func(t *testing.T, in string) {
		as, err := ParseAliases(strings.NewReader(in))
		if err == nil {
			for _, a := range as {
				if a.Pattern == "" || a.Module == "" || strings.Contains(a.Module, "-") {
					t.Fatalf("bad alias %+v", a)
				}
			}
		}
		sd, err := ParseSoftdeps(strings.NewReader(in))
		if err == nil {
			for m, deps := range sd {
				if m == "" || len(deps) == 0 {
					t.Fatalf("bad softdep %q: %q", m, deps)
				}
			}
		}
	})
}

// realModDir returns a module tree of this machine with a modules.alias:
// the running kernel's, else any under /lib/modules (a kernel package
// installed for building initramfs images).
func realModDir(t *testing.T) string {
	t.Helper()
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		dir := filepath.Join("/lib/modules", strings.TrimSpace(string(rel)))
		if _, err := os.Stat(filepath.Join(dir, "modules.alias")); err == nil {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/lib/modules/*/modules.alias")
	if len(dirs) == 0 {
		t.Skip("no module tree with modules.alias under /lib/modules")
	}
	return filepath.Dir(dirs[0])
}

// TestRealModuleTree reads a real kernel's modules.alias, modules.softdep
// and modules.dep, when the machine has one, and checks the drivers
// herd's QEMU nodes need match and resolve, without loading anything.
func TestRealModuleTree(t *testing.T) {
	dir := realModDir(t)
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	aliases, err := ParseAliases(f)
	if err != nil {
		t.Fatal(err)
	}
	var softdeps map[string][]string
	if sf, err := os.Open(filepath.Join(dir, "modules.softdep")); err == nil {
		softdeps, err = ParseSoftdeps(sf)
		sf.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s: %d aliases, %d softdeps", dir, len(aliases), len(softdeps))
	for modalias, want := range map[string]string{
		"virtio:d00000001v00001AF4":                             "virtio_net",
		"virtio:d00000002v00001AF4":                             "virtio_blk",
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00": "virtio_pci",
		"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00": "e1000",
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01": "ahci",
		"pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02": "nvme",
		"scsi:t-0x00": "sd_mod",
		"fs-ext4":     "ext4",
	} {
		if got := Match(aliases, modalias); !slices.Contains(got, want) {
			t.Errorf("Match(%q) = %q, want %s among them", modalias, got, want)
		}
	}
	if mods, err := Scan("/sys/devices"); err == nil {
		n := 0
		for _, m := range mods {
			n += len(Match(aliases, m))
		}
		t.Logf("this machine: %d device modaliases, %d matches", len(mods), n)
	}

	k, err := NewKernelLoader(dir)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	record := func(path string, image []byte, _ string) error {
		if len(image) < 4 || string(image[:4]) != "\x7fELF" {
			t.Errorf("%s: not an ELF object after decompression", path)
		}
		order = append(order, ModuleName(path))
		return nil
	}
	k.insertImage = record
	k.insertFile = func(path string, f *os.File, _ string) error {
		b := make([]byte, 4)
		if _, err := f.ReadAt(b, 0); err != nil {
			return err
		}
		return record(path, b, "")
	}
	for _, m := range []string{"virtio_net", "virtio_blk", "ext4", "vfat", "e1000e", "nvme"} {
		if err := k.Load(m); err != nil {
			t.Errorf("Load(%s): %v", m, err)
		}
	}
	// Every module comes after the modules it depends on.
	pos := map[string]int{}
	for i, m := range order {
		pos[m] = i
	}
	for _, m := range order {
		for _, d := range k.deps[m] {
			if p, ok := pos[d]; ok && p > pos[m] {
				t.Errorf("%s loaded before its dependency %s", m, d)
			}
		}
	}
	t.Logf("load order: %s", strings.Join(order, " "))
	// Filesystems by name: modules.softdep's "crypto-crc32c" is an
	// alias, resolved through modules.alias; herd's extras come too.
	order = nil
	loaded, err := LoadModules(context.Background(), []string{"ext4", "vfat"}, aliases, softdeps, ExtraSoftdeps(), k, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("filesystems: loaded %s", strings.Join(loaded, " "))
	idx := func(m string) int { return slices.Index(loaded, m) }
	if idx("crc32c_generic") < 0 || idx("crc32c_generic") > idx("ext4") || idx("nls_cp437") < 0 || idx("nls_cp437") > idx("vfat") {
		t.Errorf("filesystem load order %q: want crc32c_generic before ext4 and nls_cp437 before vfat", loaded)
	}
	// herd's extra softdeps exist in this kernel, as modules or built in.
	for m, deps := range ExtraSoftdeps() {
		for _, d := range append([]string{m}, deps...) {
			if _, ok := k.Path(d); !ok && !k.builtin[d] {
				t.Errorf("%s: neither a module nor built in", d)
			}
		}
	}
}
