package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// splitSink is dolly's "outfile X split SIZE": the stream goes to X_0,
// X_1, ..., regular files of at most limit bytes each, holes kept as holes.
// X_0 is created at once (an empty stream leaves an empty X_0); X_i+1 only
// when a byte goes past X_i. At Close, parts X_n, X_n+1, ... left over from
// an earlier, longer stream are removed, so that reading the parts back
// ("infile X split") gives exactly this stream.
type splitSink struct {
	base  string
	limit int64
	opts  Options

	mu     sync.Mutex // guards everything: Abort may come from another goroutine
	cur    *fileSink
	idx    int   // index of cur
	curLen int64 // stream bytes in cur
	total  int64
	done   bool
	res    Result
	err    error
}

func openSplit(path string, opts Options) (*splitSink, error) {
	s := &splitSink{base: path, limit: opts.Split, opts: opts}
	cur, err := s.openPart(0)
	if err != nil {
		return nil, err
	}
	s.cur = cur
	return s, nil
}

func (s *splitSink) openPart(i int) (*fileSink, error) {
	name := partName(s.base, i)
	fi, err := os.Stat(name)
	if err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("output %s exists and is not a regular file: remove it or split under another name", name)
	}
	return openRegular(name, Options{NoSync: s.opts.NoSync, Size: -1, DataSize: -1})
}

// next closes the full current part and opens the following one.
func (s *splitSink) next() error {
	if _, err := s.cur.Close(); err != nil {
		return err
	}
	cur, err := s.openPart(s.idx + 1)
	if err != nil {
		return fmt.Errorf("next part at offset %d: %w", s.total, err)
	}
	s.cur, s.idx, s.curLen = cur, s.idx+1, 0
	return nil
}

func (s *splitSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return 0, &OffsetError{Op: "write", Path: s.base, Offset: s.total, Err: ErrClosed}
	}
	written := 0
	for len(p) > 0 {
		if s.curLen == s.limit {
			if err := s.next(); err != nil {
				return written, err
			}
		}
		k := min(int64(len(p)), s.limit-s.curLen)
		n, err := s.cur.Write(p[:k])
		written += n
		s.curLen += int64(n)
		s.total += int64(n)
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

func (s *splitSink) Zero(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return &OffsetError{Op: "zero", Path: s.base, Offset: s.total, Err: ErrClosed}
	}
	if n < 0 {
		return fmt.Errorf("zero %s at offset %d: negative length %d", s.base, s.total, n)
	}
	for n > 0 {
		if s.curLen == s.limit {
			if err := s.next(); err != nil {
				return err
			}
		}
		k := min(n, s.limit-s.curLen)
		if err := s.cur.Zero(k); err != nil {
			return err
		}
		s.curLen += k
		s.total += k
		n -= k
	}
	return nil
}

func (s *splitSink) Close() (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.res, s.err
	}
	s.done = true
	if _, err := s.cur.Close(); err != nil {
		s.err = err
		return s.res, err
	}
	if err := s.removeStale(); err != nil {
		s.err = err
		return s.res, err
	}
	s.res = Result{Bytes: s.total}
	return s.res, nil
}

// removeStale removes X_idx+1, X_idx+2, ... as long as they exist and are
// regular files.
func (s *splitSink) removeStale() error {
	for i := s.idx + 1; ; i++ {
		name := partName(s.base, i)
		fi, err := os.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stale part %s: %w", name, unwrapPath(err))
		}
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("remove stale part %s (left by an earlier, longer stream): %w", name, unwrapPath(err))
		}
	}
}

func (s *splitSink) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.err = &OffsetError{Op: "close", Path: s.base, Offset: -1, Err: ErrAborted}
	s.cur.Abort()
}
