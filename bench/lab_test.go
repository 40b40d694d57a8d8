//go:build nettest

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/gobuild"
)

// bins are herd and herd-bench, built once by TestMain.
var bins *gobuild.Bins

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b, err := gobuild.Build(ctx, "./cmd/herd", "./cmd/herd-bench")
	cancel()
	if err != nil {
		fmt.Printf("bench: %v\n", err)
		os.Exit(1)
	}
	bins = b
	code := m.Run()
	bins.Remove()
	os.Exit(code)
}

// TestLabRuns builds a lab of three hosts, runs the ring, the bare relay
// and the star with two nodes on shaped links, checks the figures and
// verdicts, shows that a wrong copy is caught, and that Close leaves
// nothing behind.
func TestLabRuns(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := t.TempDir()
	mnt := filepath.Join(work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	im, err := MakeRandom(work, 16<<20, 9)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("hbt%d", os.Getpid())
	lab, err := NewLab(ctx, prefix, 3)
	if err != nil {
		t.Fatal(err)
	}
	cg, err := NewCgroupRoot(prefix)
	if err != nil {
		lab.Close()
		t.Fatal(err)
	}
	r := &Runner{Lab: lab, Herd: bins.Path("herd"), Self: bins.Path("herd-bench"), Work: work, Mnt: mnt, CG: cg}
	for _, mode := range []string{"ring", "bare", "star"} {
		res, err := r.Run(ctx, Spec{Suite: mode + "-400M", Mode: mode, N: 2, Rate: 400 * Mbit, Image: im, Rep: 1})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		t.Log(res.Line())
		if !res.Verified() {
			t.Errorf("%s: not verified: %s", mode, res.Line())
		}
		// The links carry at most their ceiling, and the run is not
		// absurdly slow either.
		if e := res.Efficiency(); e <= 0.3 || e > 1.02 {
			t.Errorf("%s: link efficiency %.3f, want within (0.3, 1.02]", mode, e)
		}
		if res.SenderCPU.Total() <= 0 || res.NodesCPU.Total() <= 0 {
			t.Errorf("%s: CPU sender %v nodes %v, want both > 0", mode, res.SenderCPU, res.NodesCPU)
		}
		if res.MaxNodeRSSKiB() <= 0 || res.SenderMaxRSSKiB <= 0 {
			t.Errorf("%s: peak RSS node %d KiB sender %d KiB, want > 0", mode, res.MaxNodeRSSKiB(), res.SenderMaxRSSKiB)
		}
		for _, v := range res.Nodes {
			if v.SHA256 != im.SHA256 {
				t.Errorf("%s: node %s hashed %s, want %s", mode, v.Node, v.SHA256, im.SHA256)
			}
		}
	}
	// Each node's tmpfs was its own: nothing reached the host's mnt.
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Errorf("the nodes' files leaked into the host's %s: %v", mnt, ents)
	}
	// A copy that does not match is caught.
	wrong := *im
	wrong.SHA256 = strings.Repeat("0", 64)
	res, err := r.Run(ctx, Spec{Suite: "ring-unlimited", Mode: "ring", N: 1, Image: &wrong, Rep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified() || len(res.Nodes) != 1 || !strings.Contains(res.Nodes[0].Reason, "want") {
		t.Errorf("a wrong digest passed: %s", res.Line())
	}
	lab.Close()
	if err := cg.Remove(); err != nil {
		t.Error(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left after Close:\n%s", out)
	}
}
