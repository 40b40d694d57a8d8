package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"pack.ag/tftp"
)

// request is a decoded read or write request: RFC 1350 §5 with the
// options of RFC 2347 §2.
type request struct {
	Opcode  uint16 // 1 read, 2 write
	Name    string
	Mode    string
	Options []option // in the order sent, names as sent
}

type option struct{ Name, Value string }

// parseRequest decodes an RRQ or WRQ datagram.
func parseRequest(pkt []byte) (request, error) {
	if len(pkt) < 2 {
		return request{}, errors.New("datagram too short for an opcode")
	}
	op := binary.BigEndian.Uint16(pkt)
	if op != 1 && op != 2 {
		return request{}, fmt.Errorf("opcode %d is not a request", op)
	}
	body := pkt[2:]
	if len(body) == 0 || body[len(body)-1] != 0 {
		return request{}, errors.New("request not NUL-terminated")
	}
	fields := strings.Split(string(body[:len(body)-1]), "\x00")
	if len(fields) < 2 {
		return request{}, errors.New("request without a mode")
	}
	if len(fields)%2 != 0 {
		return request{}, fmt.Errorf("option %q without a value", fields[len(fields)-1])
	}
	if fields[0] == "" {
		return request{}, errors.New("request without a file name")
	}
	r := request{Opcode: op, Name: fields[0], Mode: fields[1]}
	for i := 2; i < len(fields); i += 2 {
		r.Options = append(r.Options, option{Name: fields[i], Value: fields[i+1]})
	}
	return r, nil
}

// checkOptions refuses the option values pack.ag/tftp would accept but
// cannot serve safely. The library matches option names exactly
// (lower case) and keeps the last of repeated options; other spellings
// are ignored by it and so here.
func checkOptions(opts []option) error {
	blksize, windowsize := uint64(512), uint64(1)
	for _, o := range opts {
		switch o.Name {
		case "blksize": // RFC 2348: 8..65464
			v, err := strconv.ParseUint(o.Value, 10, 16)
			if err != nil || v < 8 || v > 65464 {
				return fmt.Errorf("blksize %q outside 8..65464", o.Value)
			}
			blksize = v
		case "windowsize": // RFC 7440: 1..65535
			v, err := strconv.ParseUint(o.Value, 10, 16)
			if err != nil || v < 1 {
				return fmt.Errorf("windowsize %q outside 1..65535", o.Value)
			}
			windowsize = v
		case "timeout": // RFC 2349: 1..255 seconds
			v, err := strconv.ParseUint(o.Value, 10, 8)
			if err != nil || v < 1 {
				return fmt.Errorf("timeout %q outside 1..255", o.Value)
			}
		case "tsize": // RFC 2349: a size, 0 in a read request
			if _, err := strconv.ParseInt(o.Value, 10, 64); err != nil {
				return fmt.Errorf("tsize %q is not a number", o.Value)
			}
		}
	}
	if blksize*windowsize > MaxWindowBytes {
		return fmt.Errorf("window of %d × %d bytes above %d: ask for a smaller windowsize", windowsize, blksize, MaxWindowBytes)
	}
	return nil
}

// errNoRequest means the request datagram behind a tftp.ReadRequest could
// not be found.
var errNoRequest = errors.New("cannot read the request's options: pack.ag/tftp's internals changed (update pxe/tftp/options.go)")

// requestOf returns the request datagram behind r. pack.ag/tftp does not
// expose the options a client asked for, only negotiates them at the
// first Write; to refuse the values it mishandles, the request is read
// from the library's unexported fields (readRequest.conn.rx, a datagram
// {buf []byte; offset int}) of the pinned version. It is read only,
// before the library parses it, on the transfer's own goroutine.
// Every transfer depends on it, so the tests fail when an update of the
// library moves these fields.
func requestOf(r tftp.ReadRequest) (request, error) {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return request{}, errNoRequest
	}
	c := v.Elem().FieldByName("conn")
	if c.Kind() != reflect.Pointer || c.IsNil() || c.Elem().Kind() != reflect.Struct {
		return request{}, errNoRequest
	}
	rx := c.Elem().FieldByName("rx")
	if rx.Kind() != reflect.Struct {
		return request{}, errNoRequest
	}
	buf, off := rx.FieldByName("buf"), rx.FieldByName("offset")
	if buf.Kind() != reflect.Slice || buf.Type().Elem().Kind() != reflect.Uint8 || off.Kind() != reflect.Int {
		return request{}, errNoRequest
	}
	b, n := buf.Bytes(), int(off.Int())
	if n < 0 || n > len(b) {
		return request{}, errNoRequest
	}
	req, err := parseRequest(bytes.Clone(b[:n]))
	if err != nil {
		return request{}, fmt.Errorf("%w: %v", errNoRequest, err)
	}
	return req, nil
}
