// Package wire is herd's ring protocol: fixed 24-byte frame headers, binary
// data and hole frames on the data path, and small JSON messages on the
// control path.
//
// Every frame starts with a header, big-endian:
//
//	0  magic "HD" (2 bytes)
//	2  version (1 byte)
//	3  type (1 byte)
//	4  file index (uint32)
//	8  offset in the file's stream (uint64)
//	16 length (uint32): payload bytes that follow (Data and control frames),
//	   or the number of zero bytes a Hole stands for (no payload follows)
//	20 flags (uint32): FlagMAC, or zero
//
// With FlagMAC, a MACSize-byte MAC follows the payload (see auth.go and
// channel.go).
//
// A data connection carries DataHello, then for each file FileStart, Data
// and Hole frames in offset order, FileEnd (Offset = the file's length),
// and finally End. A control connection carries JSON messages in both
// directions (see the message types).
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the size of every frame header in bytes.
const HeaderSize = 24

// Version is the protocol version this package speaks.
const Version = 1

// MaxData is the largest Data payload a peer accepts (16 MiB).
const MaxData = 16 << 20

// MaxMsg is the largest control message payload a peer accepts (1 MiB).
const MaxMsg = 1 << 20

const magic0, magic1 = 'H', 'D'

// Type is a frame's type.
type Type uint8

// Frame types. Data-path frames first, then control messages.
const (
	TData      Type = 0x01
	THole      Type = 0x02
	TFileStart Type = 0x03
	TFileEnd   Type = 0x04
	TEnd       Type = 0x05
	TDataHello Type = 0x06
	// TKeepAlive goes the other way on a data connection: the child
	// telling its upstream it is alive and making progress (a child
	// waiting on a slow disk or on its own child is backpressure, not a
	// node to bypass).
	TKeepAlive Type = 0x07

	THello     Type = 0x20
	TSetup     Type = 0x21
	TReady     Type = 0x22
	TFail      Type = 0x23
	TConnect   Type = 0x24
	TConnected Type = 0x25
	TProgress  Type = 0x26
	TVerdict   Type = 0x27
	TAbort     Type = 0x28
	TBye       Type = 0x29
	TChallenge Type = 0x2A
	TAuth      Type = 0x2B
	TKill      Type = 0x2C
	TPosition  Type = 0x2D
	TBypassed  Type = 0x2E
	TFetch     Type = 0x2F
	// TResumed is a node's answer to a resuming sender (Hello.Resume).
	TResumed Type = 0x30
)

var typeNames = map[Type]string{
	TData: "Data", THole: "Hole", TFileStart: "FileStart", TFileEnd: "FileEnd",
	TEnd: "End", TDataHello: "DataHello", TKeepAlive: "KeepAlive", THello: "Hello", TSetup: "Setup",
	TReady: "Ready", TFail: "Fail", TConnect: "Connect", TConnected: "Connected",
	TProgress: "Progress", TVerdict: "Verdict", TAbort: "Abort", TBye: "Bye",
	TChallenge: "Challenge", TAuth: "Auth", TKill: "Kill",
	TPosition: "Position", TBypassed: "Bypassed", TFetch: "Fetch",
	TResumed: "Resumed",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// IsMsg reports whether frames of type t carry a JSON message.
func (t Type) IsMsg() bool { return t == TDataHello || t >= THello && t <= TResumed }

// Header is a decoded frame header.
type Header struct {
	Type   Type
	File   uint32
	Offset uint64
	Length uint32
	Flags  uint32
}

// Errors the decoder returns; wrapped with detail.
var (
	ErrMagic   = errors.New("not a herd frame (bad magic): is the peer a herd/dolly of this version?")
	ErrVersion = errors.New("unsupported protocol version")
	ErrType    = errors.New("unknown frame type")
	ErrLength  = errors.New("frame length out of range")
	ErrFlags   = errors.New("unknown frame flags")
)

// Put encodes h into b, which must hold HeaderSize bytes.
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	b[0], b[1], b[2], b[3] = magic0, magic1, Version, byte(h.Type)
	binary.BigEndian.PutUint32(b[4:], h.File)
	binary.BigEndian.PutUint64(b[8:], h.Offset)
	binary.BigEndian.PutUint32(b[16:], h.Length)
	binary.BigEndian.PutUint32(b[20:], h.Flags)
}

// ParseHeader decodes and checks a header: magic, version, known type, and
// a length within the limits of its type.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: short header (%d bytes)", ErrLength, len(b))
	}
	if b[0] != magic0 || b[1] != magic1 {
		return Header{}, ErrMagic
	}
	if b[2] != Version {
		return Header{}, fmt.Errorf("%w %d (this herd speaks %d): run the same herd version on every host", ErrVersion, b[2], Version)
	}
	h := Header{
		Type:   Type(b[3]),
		File:   binary.BigEndian.Uint32(b[4:]),
		Offset: binary.BigEndian.Uint64(b[8:]),
		Length: binary.BigEndian.Uint32(b[16:]),
		Flags:  binary.BigEndian.Uint32(b[20:]),
	}
	if _, ok := typeNames[h.Type]; !ok {
		return Header{}, fmt.Errorf("%w %d", ErrType, b[3])
	}
	if h.Flags&^knownFlags != 0 {
		return Header{}, fmt.Errorf("%w: flags %#x on a %s frame", ErrFlags, h.Flags, h.Type)
	}
	switch {
	case h.Type == TData:
		if h.Length == 0 || h.Length > MaxData {
			return Header{}, fmt.Errorf("%w: data frame of %d bytes (limit %d)", ErrLength, h.Length, MaxData)
		}
	case h.Type == THole:
		if h.Length == 0 {
			return Header{}, fmt.Errorf("%w: empty hole", ErrLength)
		}
	case h.Type.IsMsg():
		if h.Length > MaxMsg {
			return Header{}, fmt.Errorf("%w: %s message of %d bytes (limit %d)", ErrLength, h.Type, h.Length, MaxMsg)
		}
	default:
		if h.Length != 0 {
			return Header{}, fmt.Errorf("%w: %s frame with %d payload bytes", ErrLength, h.Type, h.Length)
		}
	}
	return h, nil
}

// PayloadLen is the number of payload bytes that follow h on the wire.
func (h Header) PayloadLen() int {
	if h.Type == THole {
		return 0
	}
	return int(h.Length)
}

// ReadHeader reads and parses one header from r into buf.
func ReadHeader(r io.Reader, buf *[HeaderSize]byte) (Header, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return Header{}, err
	}
	return ParseHeader(buf[:])
}

// msgBody encodes v as the JSON body of a message of type t.
func msgBody(t Type, v any) ([]byte, error) {
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("encode %s: %w", t, err)
		}
	}
	if len(body) > MaxMsg {
		return nil, fmt.Errorf("encode %s: %w (%d bytes)", t, ErrLength, len(body))
	}
	return body, nil
}

// WriteMsg sends v as a JSON message of type t.
func WriteMsg(w io.Writer, t Type, v any) error {
	body, err := msgBody(t, v)
	if err != nil {
		return err
	}
	b := make([]byte, HeaderSize+len(body))
	Header{Type: t, Length: uint32(len(body))}.Put(b)
	copy(b[HeaderSize:], body)
	_, err = w.Write(b)
	return err
}

// WriteFrame sends a header-only frame (FileStart, FileEnd, End, Hole).
func WriteFrame(w io.Writer, h Header) error {
	var b [HeaderSize]byte
	h.Put(b[:])
	_, err := w.Write(b[:])
	return err
}

// ReadMsg reads one frame that must be a message and returns its header
// and raw JSON body.
func ReadMsg(r io.Reader) (Header, []byte, error) {
	var hb [HeaderSize]byte
	h, err := ReadHeader(r, &hb)
	if err != nil {
		return h, nil, err
	}
	if !h.Type.IsMsg() {
		return h, nil, fmt.Errorf("expected a message, got a %s frame", h.Type)
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(r, body); err != nil {
		return h, nil, fmt.Errorf("read %s message: %w", h.Type, err)
	}
	return h, body, nil
}

// Expect reads one message, checks it has type t (a Fail or Abort from the
// peer becomes an error carrying its reason) and decodes it into v.
func Expect(r io.Reader, t Type, v any) error {
	h, body, err := ReadMsg(r)
	if err != nil {
		return err
	}
	return Decode(h, body, t, v)
}

// Decode is Expect for a message already read.
func Decode(h Header, body []byte, t Type, v any) error {
	switch {
	case h.Type == t:
	case h.Type == TFail || h.Type == TAbort:
		var f Fail
		_ = json.Unmarshal(body, &f)
		return &PeerError{Type: h.Type, Reason: f.Reason}
	default:
		return fmt.Errorf("expected %s, got %s", t, h.Type)
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", t, err)
	}
	return nil
}

// PeerError is a Fail or Abort the peer sent.
type PeerError struct {
	Type   Type
	Reason string
}

func (e *PeerError) Error() string { return e.Reason }
