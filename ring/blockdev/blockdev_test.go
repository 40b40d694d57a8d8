package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSizeOf(t *testing.T) {
	f := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, 3<<20); err != nil {
		t.Fatal(err)
	}
	if n, err := SizeOf(f); err != nil || n != 3<<20 {
		t.Errorf("SizeOf(regular file) = %d, %v; want %d", n, err, 3<<20)
	}
	if _, err := SizeOf("/dev/null"); err == nil || !strings.Contains(err.Error(), "neither a block device nor a regular file") {
		t.Errorf("SizeOf(/dev/null): %v", err)
	}
	if _, err := SizeOf(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SizeOf(missing): %v", err)
	}
}
