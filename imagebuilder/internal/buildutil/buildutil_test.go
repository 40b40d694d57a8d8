package buildutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckTools(t *testing.T) {
	if err := CheckTools([]Tool{{Name: "sh", Package: "dash"}}); err != nil {
		t.Errorf("sh: %v", err)
	}
	err := CheckTools([]Tool{{Name: "sh", Package: "dash"}, {Name: "no-such-tool-herd", Package: "herd-b"}, {Name: "/no/such/file", Package: "herd-a"}})
	if err == nil {
		t.Fatal("missing tools: no error")
	}
	if want := "missing no-such-tool-herd, /no/such/file: install them: apt-get install herd-a herd-b"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestCheckOutput(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o644)
	if err := CheckOutput(filepath.Join(dir, "new"), false, "a file"); err != nil {
		t.Errorf("new file: %v", err)
	}
	if err := CheckOutput(f, false, "a file"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing file: %v", err)
	}
	if err := CheckOutput(f, true, "a file"); err != nil {
		t.Errorf("existing file, force: %v", err)
	}
	if err := CheckOutput(dir, true, "an image file"); err == nil || !strings.Contains(err.Error(), "give the name of an image file") {
		t.Errorf("directory: %v", err)
	}
}

// (Random UUIDs are internal/uuid's, tested there.)
func TestRandomVolumeID(t *testing.T) {
	if v, err := RandomVolumeID(); err != nil || v == 0 {
		t.Errorf("RandomVolumeID %d, %v", v, err)
	}
}

func TestTarMode(t *testing.T) {
	for m, want := range map[fs.FileMode]int64{
		0o755:                              0o755,
		0o755 | fs.ModeSetuid:              0o4755,
		0o750 | fs.ModeSetgid:              0o2750,
		0o777 | fs.ModeSticky | fs.ModeDir: 0o1777,
	} {
		if got := TarMode(m); got != want {
			t.Errorf("TarMode(%v) = %o, want %o", m, got, want)
		}
	}
}
