//go:build !linux

package tftp

import (
	"errors"
	"net"
)

// attachRequestFilter is only implemented for Linux, the one system herd
// serves from: elsewhere a malformed read request would crash the process.
func attachRequestFilter(*net.UDPConn) error {
	return errors.New("the request filter needs Linux; herd's TFTP server runs on Linux only")
}
