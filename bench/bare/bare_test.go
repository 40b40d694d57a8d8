package bare

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestChain sends a file through three nodes on loopback, after a probe
// that each node must ignore, and checks every copy.
func TestChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	data := make([]byte, 3*Block+12345)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(data)
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 3
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	type res struct {
		n   int64
		err error
	}
	done := make(chan res, n)
	cfg := Config{Block: 64 << 10}
	for i, ln := range lns {
		next := ""
		if i+1 < n {
			next = lns[i+1].Addr().String()
		}
		out := filepath.Join(dir, "out"+string(rune('0'+i)))
		go func() {
			got, err := Node(ctx, ln, out, next, cfg)
			done <- res{got, err}
		}()
		probe, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		probe.Close()
	}
	sent, err := Send(ctx, in, lns[0].Addr().String(), cfg)
	if err != nil || sent != int64(len(data)) {
		t.Fatalf("Send: %d bytes, %v; want %d", sent, err, len(data))
	}
	for range n {
		if r := <-done; r.err != nil || r.n != int64(len(data)) {
			t.Errorf("Node: %d bytes, %v", r.n, r.err)
		}
	}
	for i := range n {
		got, err := os.ReadFile(filepath.Join(dir, "out"+string(rune('0'+i))))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("node %d: copy differs (%d bytes, %v)", i, len(got), err)
		}
	}
}

// TestNodeCancel: a node waiting for its stream ends with its context.
func TestNodeCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Node(ctx, ln, filepath.Join(t.TempDir(), "out"), "", Config{}); err == nil {
		t.Fatal("Node returned without an error after its context ended")
	}
}
