package source

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// splitParts lists dolly's split input parts X_0, X_1, ... up to the first
// name that does not exist. X_0 must exist.
func splitParts(base string) ([]string, error) {
	if base == "" {
		return nil, errors.New("no input: give a file or device (-I) or directories (-D)")
	}
	var parts []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("%s_%d", base, i)
		_, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				return nil, fmt.Errorf("input %s: no such file or directory (a split input %s is read from %s_0, %s_1, ...)", name, base, base, base)
			}
			return parts, nil
		}
		if err != nil {
			return nil, inputError(name, err)
		}
		parts = append(parts, name)
	}
}

func (s *Source) openSplit(base string) error {
	parts, err := splitParts(base)
	if err != nil {
		return err
	}
	// Measure every part now; read them one after the other.
	size, data := int64(0), int64(0)
	for _, p := range parts {
		in, err := openInput(p, true)
		if err != nil {
			return err
		}
		in.f.Close()
		if in.size < 0 || size < 0 {
			size, data = -1, -1
		} else {
			size += in.size
			data += in.dataSize
		}
	}
	r := &splitReader{parts: parts}
	s.name = fmt.Sprintf("%s_{0..%d}", base, len(parts)-1)
	s.size, s.dataSize = size, data
	s.r = r
	s.close = r.Close
	return nil
}

// splitReader reads the parts in order, one open file at a time.
type splitReader struct {
	parts []string

	mu     sync.Mutex // guards cur and closed against a concurrent Close
	next   int        // index of the next part to open
	cur    *os.File
	closed bool
}

func (r *splitReader) Read(p []byte) (int, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return 0, ErrClosed
		}
		if r.cur == nil {
			if r.next == len(r.parts) {
				r.mu.Unlock()
				return 0, io.EOF
			}
			in, err := openInput(r.parts[r.next], false)
			if err != nil {
				r.mu.Unlock()
				return 0, err
			}
			r.cur = in.f
			r.next++
		}
		f := r.cur
		r.mu.Unlock()

		n, err := f.Read(p)
		if err == io.EOF {
			r.mu.Lock()
			if r.cur == f {
				r.cur = nil
			}
			r.mu.Unlock()
			f.Close()
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			err = fmt.Errorf("read %s: %w", f.Name(), unwrap(err))
		}
		return n, err
	}
}

func (r *splitReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.cur != nil {
		err := r.cur.Close()
		r.cur = nil
		return err
	}
	return nil
}

func unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
