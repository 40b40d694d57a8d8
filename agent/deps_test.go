package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoServerCode: the agent links no server or builder code; what it
// shares with herd serve is the contract package (and the ring).
func TestNoServerCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/herdproject/herd/agent/...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps gave %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		for _, server := range []string{"/pxe/", "/campaign", "/imagebuilder/", "/cmd/", "/initramfs"} {
			if strings.Contains(d, "github.com/herdproject/herd"+server) {
				t.Errorf("the agent depends on %s", d)
			}
		}
	}
}
