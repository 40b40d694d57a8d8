//go:build nettest

package pxetest

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeConfigFile: herd serve --config FILE and nothing else: the
// interface, inventory, directories, ports and the file to send all come
// from herd.conf; the node gets the image and is done, so herd serve,
// interrupted, exits 0.
func TestServeConfigFile(t *testing.T) {
	ns := newNetns(t, "conf", "10.252.0.1", "", "10.252.0.11")
	dir := t.TempDir()
	img := filepath.Join(dir, "golden.img")
	data := make([]byte, 4<<20)
	rand.Read(data[:1<<20])
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory")
	if err := os.WriteFile(inv, []byte("subnet 10.252.0.0/24\nnode 52:54:00:25:20:11 n1 10.252.0.11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "herd.conf")
	if err := os.WriteFile(conf, []byte(`# herd serve, all from here
interface = "`+ns.hostIf+`"
inventory = "`+inv+`"
state-dir = "`+filepath.Join(dir, "state")+`"
boot-dir = "`+filepath.Join(dir, "boot")+`"
http-port = 18180
tftp-port = 16970
no-dhcp = true
no-ra = true
wait-timeout = "60s"
file = ["`+img+` > disk.img"]
quiet = true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := start(t, dir, herdBin, "serve", "--config", conf)
	waitTCP(t, "10.252.0.1:18180", 10*time.Second)
	nodes := recvNodes(t, ns, dir, "10.252.0.11")
	register(t, "http://10.252.0.1:18180", "52:54:00:25:20:11")
	waitNodes(t, nodes)
	if got, err := os.ReadFile(filepath.Join(dir, "10.252.0.11", "disk.img")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("node: image differs (%d bytes, %v)", len(got), err)
	}
	waitState(t, "http://10.252.0.1:18180", "n1", "done", 10*time.Second)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.wait(t, 15*time.Second); code != 0 {
		t.Errorf("herd serve exit %d, want 0", code)
	}
	// The same file, printed back: every key the file gave says so.
	out, err := exec.Command(herdBin, "serve", "--config", conf, "--print-config").Output()
	if err != nil {
		t.Fatalf("herd serve --print-config: %v\n%s", err, out)
	}
	for _, want := range []string{"\nhttp-port = 18180\n", "[file]\ninterface = \"" + ns.hostIf + "\"\n", "\nfile = [\"" + img + " > disk.img\"]\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("herd serve --print-config lacks %q:\n%s", want, out)
		}
	}
}
