//go:build nettest

package pxetest

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/netnstest"
)

// TestServeRestart: herd serve killed with SIGKILL in the middle of the
// install session and started again with the same command takes the
// session back: the nodes (herd recv in a namespace, behind a 40 Mbit/s
// link) are not registered again, keep what they have, and end verified
// with the image; the nodes switch to local boot and herd serve exits 0
// when interrupted.
func TestServeRestart(t *testing.T) {
	ns := newNetns(t, "rst", "10.251.2.1", "", "10.251.2.11", "10.251.2.12")
	netnstest.Run(t, "tc", "qdisc", "add", "dev", ns.hostIf, "root", "tbf", "rate", "40mbit", "burst", "32kb", "latency", "200ms")
	dir := t.TempDir()
	img := filepath.Join(dir, "golden.img")
	data := make([]byte, 24<<20)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte(`subnet 10.251.2.0/24
node 52:54:00:25:12:11 n1 10.251.2.11
node 52:54:00:25:12:12 n2 10.251.2.12
`), 0o644)
	state, boot := filepath.Join(dir, "state"), filepath.Join(dir, "boot")
	cmd := []string{herdBin, "serve", "--interface", ns.hostIf, "--boot-dir", boot, "--inventory", inv, "--state-dir", state,
		"--http-port", "18082", "--tftp-port", "16971", "--no-dhcp", "--no-ra", "--wait-timeout", "60s",
		"-I", img, "-O", "disk.img", "-q", "--sender-wait", "60s"}
	srv := start(t, dir, cmd...)
	waitTCP(t, "10.251.2.1:18082", 10*time.Second)

	ips := []string{"10.251.2.11", "10.251.2.12"}
	var nodes []*proc
	for _, ip := range ips {
		nd := filepath.Join(dir, ip)
		os.Mkdir(nd, 0o755)
		nodes = append(nodes, ns.start(t, nd, herdBin, "recv", "--listen", ip))
	}
	register(t, "http://10.251.2.1:18082", "52:54:00:25:12:11", "52:54:00:25:12:12")
	// Kill herd serve once the first node has a third of the image.
	out := filepath.Join(dir, ips[0], "disk.img")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if fi, err := os.Stat(out); err == nil && fi.Size() >= int64(len(data))/3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 did not get a third of the image within 60s:\n%s", srv.errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	stateFile := filepath.Join(state, "sessions", "install.json")
	if _, err := os.Stat(stateFile); err != nil {
		t.Fatalf("no session state after the kill: %v", err)
	}
	fi, _ := os.Stat(out)
	t.Logf("herd serve killed with node 1 at %d of %d bytes", fi.Size(), len(data))

	again := start(t, dir, cmd...)
	for i, n := range nodes {
		if code := n.wait(t, 90*time.Second); code != 0 {
			t.Fatalf("node %d exited %d:\n%s", i+1, code, n.errb.String())
		}
		if !strings.Contains(n.errb.String(), "waiting up to 1m0s for the sender to come back") {
			t.Errorf("node %d does not say that it waited for its sender:\n%s", i+1, n.errb.String())
		}
	}
	for _, ip := range ips {
		got, err := os.ReadFile(filepath.Join(dir, ip, "disk.img"))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("node %s: image differs (%d bytes, %v)", ip, len(got), err)
		}
	}
	// herd serve records the outcome once its summary is out, a moment
	// after the nodes exit. (Asking for a boot script before that would
	// mark the node booting, as a reset node's iPXE does.)
	waitState(t, "http://10.251.2.1:18082", "n2", "done", 10*time.Second)
	for _, mac := range []string{"52:54:00:25:12:11", "52:54:00:25:12:12"} {
		if s := httpGet(t, "http://10.251.2.1:18082/boot/"+mac+".ipxe"); !strings.Contains(s, "exit") || strings.Contains(s, "kernel ") {
			t.Errorf("%s after the resumed session: want a local-boot script, got:\n%s", mac, s)
		}
	}
	if _, err := os.Stat(stateFile); err == nil {
		t.Errorf("the session state %s is still there after the session ended", stateFile)
	}
	again.cmd.Process.Signal(syscall.SIGTERM)
	if code := again.wait(t, 15*time.Second); code != 0 {
		t.Errorf("the restarted herd serve exited %d, want 0", code)
	}
	for _, want := range []string{"resuming it with its 2 node(s)", "resumed after 1 restart"} {
		if !strings.Contains(again.errb.String(), want) {
			t.Errorf("the restarted herd serve does not say %q:\n%s", want, again.errb.String())
		}
	}
}
