package wire

import "net"

// Conn is a connection after its handshake, with the Channel that seals
// its messages and KeepAlives.
type Conn struct {
	net.Conn
	*Channel
}

// NewConn pairs c with its channel.
func NewConn(c net.Conn, ch *Channel) *Conn { return &Conn{Conn: c, Channel: ch} }
