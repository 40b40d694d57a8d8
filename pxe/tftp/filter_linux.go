//go:build linux

package tftp

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// requestFilter is a classic BPF socket filter for the listening socket.
// It drops a read request (opcode 1) whose payload is shorter than four
// bytes or does not end in NUL: pack.ag/tftp's request decoder slices
// out of range on such a datagram and panics. Everything else passes. A
// UDP socket's filter sees the UDP header (8 bytes) before the payload.
var requestFilter = []unix.SockFilter{
	/* 0 */ {Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN},
	/* 1 */ {Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: 8 + 2, Jf: 8}, // < 2 bytes: the library skips it
	/* 2 */ {Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 8},
	/* 3 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 1, Jf: 6}, // not RRQ: pass
	/* 4 */ {Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN},
	/* 5 */ {Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: 8 + 4, Jf: 5}, // RRQ under 4 bytes: drop
	/* 6 */ {Code: unix.BPF_ALU | unix.BPF_SUB | unix.BPF_K, K: 1},
	/* 7 */ {Code: unix.BPF_MISC | unix.BPF_TAX},
	/* 8 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: 0}, // last byte
	/* 9 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0, Jt: 0, Jf: 1},
	/* 10 */ {Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // pass
	/* 11 */ {Code: unix.BPF_RET | unix.BPF_K, K: 0}, // drop
}

// attachRequestFilter attaches requestFilter to c (SO_ATTACH_FILTER,
// socket(7)); no privilege is needed.
func attachRequestFilter(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("request filter: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(requestFilter)), Filter: &requestFilter[0]}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
	}); err != nil {
		return fmt.Errorf("request filter: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("attach request filter: %w", serr)
	}
	return nil
}
