package iocount

import (
	"bytes"
	"errors"
	"testing"
)

type short struct{}

func (short) Write(p []byte) (int, error) { return len(p) / 2, errors.New("short write") }

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := &Writer{W: &b}
	w.Write([]byte("herd"))
	w.Write([]byte(" ring"))
	if w.N != 9 || b.String() != "herd ring" {
		t.Errorf("N %d, wrote %q", w.N, b.String())
	}
	s := &Writer{W: short{}}
	if n, err := s.Write([]byte("1234")); n != 2 || err == nil || s.N != 2 {
		t.Errorf("short write: n %d, err %v, N %d; want 2, an error, 2", n, err, s.N)
	}
}
