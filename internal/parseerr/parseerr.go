// Package parseerr holds what herd's line-oriented parsers share (dolly
// configuration files, inventories, and later install plans): an error
// that names the file and line, and a size-capped read of the input.
package parseerr

import (
	"fmt"
	"io"
)

// Error is a fatal error in a parsed file.
type Error struct {
	// File is the name given to the parser.
	File string
	// Line is the 1-based line at fault (for a file that ends too early,
	// its last line).
	Line int
	// Msg says what is wrong and what was expected.
	Msg string
}

// Error returns "FILE:LINE: MSG" ("line LINE: MSG" without a file name).
func (e *Error) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ReadAll reads r, named name in messages, refusing more than max bytes
// with an *Error at line 1 saying the input is not what (e.g. "an
// inventory file").
func ReadAll(name string, r io.Reader, max int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, &Error{File: name, Line: 1, Msg: fmt.Sprintf("larger than %d MiB: not %s", max>>20, what)}
	}
	return data, nil
}
