//go:build ringtest

package ringtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/source"
)

// TestDigestCache runs herd image capture and info, then herd send with
// the digest caches they wrote: the sender hashes and decodes nothing and
// every node verifies; once the image is touched the cache is ignored and
// the session is still right; a cache with a wrong digest fails every
// node (never passes it), unless --no-digest-cache.
func TestDigestCache(t *testing.T) {
	dir := workDir(t)
	img := filepath.Join(dir, "golden.img")
	makeSparse(t, img, 24<<20, []extent{{0, 1 << 20}, {9<<20 + 5, 2 << 20}, {24<<20 - 100, 100}})
	zst := img + ".zst"
	herd := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "herd"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("herd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	herd("image", "capture", img, "-o", zst)
	herd("image", "info", img)
	for _, p := range []string{img, zst} {
		if _, err := os.Stat(p + source.DigestCacheSuffix); err != nil {
			t.Fatalf("no digest cache: %v", err)
		}
	}
	session := func(t *testing.T, nodeAddrs []string, extra ...string) *result {
		t.Helper()
		nodes := startNodes(t, dir, nodeAddrs, nodeOpts{})
		args := append([]string{"send", "-v", "-H", strings.Join(nodeAddrs, ","),
			"--file", img + " > raw.img", "--file", zst + " >> cooked.img"}, extra...)
		r := send(t, dir, time.Minute, "herd", args...)
		if r.code == 0 {
			waitExit(t, nodes, 0)
			for _, nd := range nodes {
				sameFile(t, img, filepath.Join(nd.dir, "raw.img"))
				sameFile(t, img, filepath.Join(nd.dir, "cooked.img"))
			}
		}
		return r
	}

	t.Run("cached", func(t *testing.T) {
		r := session(t, addrs(55, 56))
		wantExit(t, r, 0)
		allDone(t, r, addrs(55, 56))
		containsAll(t, "the sender's log", r.stderr, "(not hashed)", "(not decoded)")
		containsAll(t, "the sender's log", r.stderr, "tree digest")
	})
	t.Run("cached, --digest sha256", func(t *testing.T) {
		r := session(t, addrs(54), "--digest", "sha256")
		wantExit(t, r, 0)
		allDone(t, r, addrs(54))
		containsAll(t, "the sender's log", r.stderr, "SHA-256", "(not hashed)", "(not decoded)")
	})
	t.Run("touched", func(t *testing.T) {
		if err := os.Chtimes(img, time.Now(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		r := session(t, addrs(57))
		wantExit(t, r, 0)
		allDone(t, r, addrs(57))
		containsAll(t, "the sender's log", r.stderr, "digest cache ignored", "(not decoded)")
	})
	// A cache that matches the file but holds wrong digests.
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	d, err := source.NewDigestCache(fi, strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	d.Tree = strings.Repeat("1", 64) // what the default --digest tree takes
	if err := d.Write(img); err != nil {
		t.Fatal(err)
	}
	t.Run("wrong digest", func(t *testing.T) {
		r := session(t, addrs(58))
		wantExit(t, r, 1)
		lines := checkSummary(t, r, addrs(58), map[string]string{addr(58): "failed"})
		if len(lines) == 1 && !strings.Contains(lines[0].reason, "verify failed") {
			t.Errorf("node failed with %q, want verify failed", lines[0].reason)
		}
	})
	t.Run("no-digest-cache", func(t *testing.T) {
		r := session(t, addrs(59), "--no-digest-cache")
		wantExit(t, r, 0)
		allDone(t, r, addrs(59))
		if strings.Contains(r.stderr, "not hashed") || strings.Contains(r.stderr, "not decoded") {
			t.Errorf("--no-digest-cache: the sender used a digest cache:\n%s", r.stderr)
		}
	})
}
