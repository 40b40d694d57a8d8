// Package iocount counts the bytes that pass through a writer: the size of
// an image or archive as it is written, without a second pass.
package iocount

import "io"

// Writer passes every write to W and adds what W took to N.
type Writer struct {
	W io.Writer
	N int64
}

func (c *Writer) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
