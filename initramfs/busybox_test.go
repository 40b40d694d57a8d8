package initramfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPrebuiltRoundTrip writes a busybox as mkbb does and reads it back
// as a herd that embeds the files does.
func TestPrebuiltRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bb")
	raw := bytes.Repeat([]byte("not really a busybox\x00"), 5000)
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := manifestOf(bin)
	if err != nil {
		t.Fatal(err)
	}
	pre := filepath.Join(dir, PrebuiltDir)
	if err := WritePrebuilt(pre, bin, m); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(pre, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	b := builtin{zbb: read(PrebuiltBusybox), manifest: read(PrebuiltManifest)}
	if len(b.zbb) >= len(raw) {
		t.Errorf("%s is %d bytes, the binary %d: not compressed", PrebuiltBusybox, len(b.zbb), len(raw))
	}
	parsed, err := ParseManifest([]byte(b.manifest))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(m, parsed); d != "" {
		t.Errorf("manifest (-written +read):\n%s", d)
	}

	out := filepath.Join(dir, "out")
	if _, err := extractBuiltin(b, out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, raw) {
		t.Error("extracted busybox differs from the one written")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("extracted busybox: %v, not executable", st)
	}

	for _, tc := range []struct {
		name string
		edit func(Manifest) Manifest
		want string
	}{
		{"stale commands", func(m Manifest) Manifest { m.Commands = m.Commands[1:]; return m }, "make build"},
		{"wrong sum", func(m Manifest) Manifest { m.SHA256 = strings.Repeat("0", 64); return m }, "manifest says"},
		{"wrong size", func(m Manifest) Manifest { m.Size++; return m }, "manifest says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := builtin{zbb: b.zbb, manifest: string(tc.edit(m).Marshal())}
			if _, err := extractBuiltin(bad, filepath.Join(t.TempDir(), "bb")); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("extractBuiltin = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestParseManifestErrors(t *testing.T) {
	for name, text := range map[string]string{
		"empty":       "",
		"no commands": "size 10\nsha256 " + strings.Repeat("ab", 32) + "\n",
		"bad size":    "size x\n",
		"bad sum":     "sha256 xyz\n",
		"unknown key": "colour blue\n",
		"no path":     "command\n",
	} {
		if _, err := ParseManifest([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSelf: a test binary is not herd, so an initramfs built from a test
// never takes it for the agent.
func TestSelf(t *testing.T) {
	if p, err := Self(); err == nil || !strings.Contains(err.Error(), HerdMain) {
		t.Errorf("Self() in a test binary = %q, %v; want an error naming %s", p, err, HerdMain)
	}
}

func TestCheckStatic(t *testing.T) {
	if err := CheckStatic("/bin/sh"); !errors.Is(err, ErrNotStatic) || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("CheckStatic(/bin/sh) = %v, want ErrNotStatic and how to build herd static", err)
	}
	text := filepath.Join(t.TempDir(), "text")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckStatic(text); !errors.Is(err, ErrNotStatic) {
		t.Errorf("CheckStatic(a script) = %v, want ErrNotStatic", err)
	}
}
