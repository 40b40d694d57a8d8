package hostsys

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	if p, err := Find("sh"); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("Find(sh) = %q, %v", p, err)
	}
	_, err := Find("herd-no-such-tool")
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "herd-no-such-tool: executable file not found in $PATH, nor in /usr/sbin, /usr/bin, /sbin, /bin") {
		t.Errorf("Find of a missing tool: %v", err)
	}
	_, err = FindTool("herd-no-such-tool", "herd-pkg")
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "nor in /usr/sbin") || !strings.Contains(err.Error(), "install Debian package herd-pkg") {
		t.Errorf("FindTool of a missing tool: %v", err)
	}
}

func TestFindIn(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"usr/bin/ssh-keygen", "sbin/extlinux", "usr/sbin/grub-mkconfig"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), []byte("#!"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/sbin/dir-not-file"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"ssh-keygen": "/usr/bin/ssh-keygen", "extlinux": "/sbin/extlinux", "grub-mkconfig": "/usr/sbin/grub-mkconfig",
		"dir-not-file": "", "missing": "",
	} {
		if got := FindIn(root, name); got != want {
			t.Errorf("FindIn(%s) = %q, want %q", name, got, want)
		}
	}
}
