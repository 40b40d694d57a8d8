//go:build nettest

package pxetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/gobuild"
	"github.com/herdproject/herd/internal/netnstest"
	"github.com/herdproject/herd/pxe/inventory"
)

var herdBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("pxetest: needs root (network namespaces); skipping")
		os.Exit(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bins, err := gobuild.Build(ctx, "./cmd/herd")
	cancel()
	if err != nil {
		fmt.Printf("pxetest: %v\n", err)
		os.Exit(1)
	}
	herdBin = bins.Path("herd")
	// The tests give their options; no host herd.conf adds any.
	os.Setenv("HERD_CONFIG", "none")
	code := m.Run()
	bins.Remove()
	os.Exit(code)
}

// netns is a network namespace (netnstest) with one end of a veth pair
// inside (nodeIf) and the other in the test's namespace (hostIf); both
// are removed at cleanup.
type netns struct {
	*netnstest.NS
	hostIf, nodeIf string
}

// newNetns makes namespace herd-<tag>-<pid> whose veth end has MAC mac
// ("": the kernel's) and addresses nodeIPs (/24), with hostIP/24 on the
// host end.
func newNetns(t *testing.T, tag, hostIP, mac string, nodeIPs ...string) *netns {
	t.Helper()
	ns := netnstest.New(t, tag)
	v := ns.AddVeth("eth0", nil)
	n := &netns{NS: ns, hostIf: v.Peer, nodeIf: v.Name}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		ns.SetMAC(n.nodeIf, hw)
	}
	netnstest.Run(t, "ip", "addr", "add", hostIP+"/24", "dev", n.hostIf)
	for _, ip := range nodeIPs {
		ns.AddAddr(n.nodeIf, ip+"/24")
	}
	return n
}

type proc struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
	done      chan struct{}
}

// start starts args[0] in the test's namespace, in dir; it is killed at
// cleanup if still running.
func start(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	return startCmd(t, dir, exec.Command(args[0], args[1:]...))
}

// start is start inside namespace ns.
func (ns *netns) start(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	return startCmd(t, dir, ns.Command(args[0], args[1:]...))
}

func startCmd(t *testing.T, dir string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("=== %s\n--- stdout:\n%s--- stderr:\n%s", strings.Join(cmd.Args, " "), p.out.String(), p.errb.String())
		}
	})
	return p
}

func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v", p.cmd.Path, d)
		return -1
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// register registers the nodes of these MACs with the herd serve at
// base, as their agents do.
func register(t *testing.T, base string, macs ...string) {
	t.Helper()
	for _, mac := range macs {
		resp, err := http.Post(base+"/api/register", "application/json", strings.NewReader(`{"mac":"`+mac+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("register %s: %s", mac, resp.Status)
		}
	}
}

// waitTCP polls addr until it accepts, for at most d.
func waitTCP(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not listening after %v", addr, d)
}

// recvNodes starts herd recv in ns for each address, each in its own
// directory under dir (named by the address).
func recvNodes(t *testing.T, ns *netns, dir string, ips ...string) []*proc {
	t.Helper()
	var nodes []*proc
	for _, ip := range ips {
		nd := filepath.Join(dir, ip)
		if err := os.Mkdir(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, ns.start(t, nd, herdBin, "recv", "--listen", ip))
	}
	return nodes
}

// waitNodes waits for every node to end its session, successfully.
func waitNodes(t *testing.T, nodes []*proc) {
	t.Helper()
	for _, n := range nodes {
		if code := n.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("node exited %d:\n%s", code, n.errb.String())
		}
	}
}

// waitStatus polls the API (read-only: a boot script request would mark
// the node booting) until node name's status satisfies ok, for at most
// d; want says what ok waits for, for the failure.
func waitStatus(t *testing.T, base, name string, d time.Duration, want string, ok func(inventory.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var st inventory.Status
		s := httpGet(t, base+"/api/nodes/"+name)
		if json.Unmarshal([]byte(s), &st) == nil && ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: not %s after %v:\n%s", name, want, d, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitState waits until node name is in state.
func waitState(t *testing.T, base, name, state string, d time.Duration) {
	t.Helper()
	waitStatus(t, base, name, d, state, func(st inventory.Status) bool { return string(st.State) == state })
}

// TestServeSession: herd serve waits for the registered nodes, sends an
// image through a ring of them (herd recv processes in a network namespace
// of the test's), switches the verified nodes to local boot, reports the
// node that never came; herd nodes reinstall switches a node back.
func TestServeSession(t *testing.T) {
	ns := newNetns(t, "srv", "10.251.0.1", "", "10.251.0.11", "10.251.0.12")
	dir := t.TempDir()
	img := filepath.Join(dir, "golden.img")
	data := make([]byte, 24<<20)
	rand.Read(data[:8<<20])
	rand.Read(data[16<<20:])
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte(`# test rack
subnet 10.251.0.0/24
node 52:54:00:25:10:11 n1 10.251.0.11
node 52:54:00:25:10:12 n2 10.251.0.12
node 52:54:00:25:10:13 n3 10.251.0.13
`), 0o644)
	state, boot := filepath.Join(dir, "state"), filepath.Join(dir, "boot")
	common := []string{"--inventory", inv, "--state-dir", state}
	srv := start(t, dir, append([]string{herdBin, "serve", "--interface", ns.hostIf, "--boot-dir", boot,
		"--http-port", "18080", "--tftp-port", "16969", "--no-dhcp", "--no-ra", "--min", "2", "--wait-timeout", "60s",
		"-I", img, "-O", "disk.img", "-q"}, common...)...)
	waitTCP(t, "10.251.0.1:18080", 10*time.Second)

	nodes := recvNodes(t, ns, dir, "10.251.0.11", "10.251.0.12")
	register(t, "http://10.251.0.1:18080", "52:54:00:25:10:11", "52:54:00:25:10:12")
	waitNodes(t, nodes)
	for _, ip := range []string{"10.251.0.11", "10.251.0.12"} {
		got, err := os.ReadFile(filepath.Join(dir, ip, "disk.img"))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("node %s: image differs (%d bytes, %v)", ip, len(got), err)
		}
	}
	// The verified nodes boot from disk now; n3 never came and installs.
	waitState(t, "http://10.251.0.1:18080", "n1", "done", 10*time.Second)
	if s := httpGet(t, "http://10.251.0.1:18080/boot/52:54:00:25:10:11.ipxe"); !strings.Contains(s, "exit") || strings.Contains(s, "kernel ") {
		t.Errorf("n1 after done: want a local-boot script, got:\n%s", s)
	}
	if s := httpGet(t, "http://10.251.0.1:18080/boot/52:54:00:25:10:13.ipxe"); !strings.Contains(s, "kernel ") {
		t.Errorf("n3 (never came): want an install script, got:\n%s", s)
	}
	out, err := exec.Command(herdBin, append([]string{"nodes"}, common...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("herd nodes: %v\n%s", err, out)
	}
	for _, want := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("herd nodes lacks %s:\n%s", want, out)
		}
	}
	if !strings.Contains(string(out), "done") {
		t.Errorf("herd nodes shows no node done:\n%s", out)
	}
	if out, err := exec.Command(herdBin, append([]string{"nodes", "reinstall", "n1"}, common...)...).CombinedOutput(); err != nil {
		t.Fatalf("herd nodes reinstall: %v\n%s", err, out)
	}
	if s := httpGet(t, "http://10.251.0.1:18080/boot/52:54:00:25:10:11.ipxe"); !strings.Contains(s, "kernel ") {
		t.Errorf("n1 after reinstall: want an install script, got:\n%s", s)
	}
	if !strings.Contains(srv.out.String(), "NEVER CAME: 1 node(s): n3") {
		t.Errorf("serve did not report n3 as never came:\n%s", srv.out.String())
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.wait(t, 15*time.Second); code != 1 {
		t.Errorf("herd serve exit %d, want 1 (a node never came)", code)
	}
}
