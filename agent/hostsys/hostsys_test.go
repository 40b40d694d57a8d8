package hostsys

import (
	"errors"
	"os/exec"
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
