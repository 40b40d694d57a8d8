package relay

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// sockCongestion is a connection's TCP_CONGESTION.
func sockCongestion(t *testing.T, c net.Conn) string {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var gerr error
	if err := rc.Control(func(fd uintptr) { name, gerr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt TCP_CONGESTION: %v", gerr)
	}
	return strings.TrimRight(name, "\x00")
}

func TestDialOptionsCongestion(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Skipf("no TCP congestion control here: %v", err)
	}
	system := strings.TrimSpace(string(b))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tests := []struct {
		name, congestion, want string
	}{
		// reno is built into every kernel.
		{"asked for", "reno", "reno"},
		{"none asked: the system's", "", system},
		{"unknown: the system's, and the connection still works", "no_such_algo", system},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := net.Dialer{Control: DialOptions{Congestion: tt.congestion}.control}
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if got := sockCongestion(t, c); got != tt.want {
				t.Errorf("TCP_CONGESTION = %q, want %q", got, tt.want)
			}
		})
	}
}
