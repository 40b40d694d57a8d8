package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		name string
		data string
	}{
		{"new file", `{"a":1}`},
		{"replaced, longer", `{"a":1,"b":"a longer content than before"}`},
		{"replaced, shorter", `{}`},
		{"empty", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Write(p, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.data {
				t.Errorf("read %q, want %q", got, tc.data)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), TempInfix) {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "dir", "f")
	err := Write(missing, []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Write into a missing directory: %v, want an error naming %s", err, missing)
	}
	// A directory in the way of the rename: the old content stays and
	// no temporary file is left.
	target := filepath.Join(dir, "isdir")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("x"), 0o644); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), TempInfix) {
			t.Errorf("temporary file %s left behind after a failed write", e.Name())
		}
	}
}

// TestCopy: a copy into a directory that does not exist yet, over an
// existing file, and from a source that is missing (dst untouched).
func TestCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	data := strings.Repeat("herd", 100000) // larger than one io.Copy buffer
	if err := os.WriteFile(src, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "tree", "sub", "dst.bin")
	for range 2 {
		if err := Copy(src, dst, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dst); string(got) != data {
			t.Fatalf("copy holds %d bytes, want %d", len(got), len(data))
		}
	}
	err := Copy(filepath.Join(dir, "missing"), dst, 0o644)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("copy of a missing file: %v", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != data {
		t.Error("a failed copy changed the target")
	}
}
