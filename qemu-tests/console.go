package qemutests

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// console collects a VM's serial output as it arrives: in memory as plain
// text (terminal escapes, carriage returns and backspaces applied or
// dropped) for the waits, and line by line in a log file, each line
// prefixed with the seconds since the VM started.
type console struct {
	mu    sync.Mutex
	cond  *sync.Cond
	buf   []byte // plain text so far; buf[line:] is the unfinished line
	line  int
	lineT time.Duration // when the unfinished line began
	done  bool          // the output ended (QEMU exited)
	esc   int           // escape sequence state: 0 none, 1 after ESC, 2 in CSI, 3 one more byte
	log   io.Writer
	start time.Time
	ended chan struct{} // closed when the reader is done
}

// newConsole starts reading r until it ends.
func newConsole(r io.Reader, log io.Writer, start time.Time) *console {
	c := &console{log: log, start: start, ended: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.read(r)
	return c
}

func (c *console) read(r io.Reader) {
	defer close(c.ended)
	chunk := make([]byte, 4096)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			c.mu.Lock()
			c.add(chunk[:n])
			c.mu.Unlock()
			c.cond.Broadcast()
		}
		if err != nil {
			c.mu.Lock()
			if len(c.buf) > c.line {
				c.add([]byte{'\n'})
			}
			c.done = true
			c.mu.Unlock()
			c.cond.Broadcast()
			return
		}
	}
}

// add appends p as plain text; c.mu is held.
func (c *console) add(p []byte) {
	for _, b := range p {
		switch c.esc {
		case 1:
			switch b {
			case '[':
				c.esc = 2
			case '(', ')', '#':
				c.esc = 3
			default:
				c.esc = 0
			}
			continue
		case 2:
			if b >= 0x40 && b <= 0x7e {
				c.esc = 0
			}
			continue
		case 3:
			c.esc = 0
			continue
		}
		switch {
		case b == 0x1b:
			c.esc = 1
		case b == '\b':
			if len(c.buf) > c.line {
				c.buf = c.buf[:len(c.buf)-1]
			}
		case b == '\n':
			c.buf = append(c.buf, '\n')
			fmt.Fprintf(c.log, "[%7.2fs] %s", c.lineT.Seconds(), c.buf[c.line:])
			c.line = len(c.buf)
		case b == '\t' || b >= 0x20 && b != 0x7f:
			if len(c.buf) == c.line {
				c.lineT = time.Since(c.start)
			}
			c.buf = append(c.buf, b)
		}
	}
}

// waitDone waits at most d for the output to end.
func (c *console) waitDone(d time.Duration) {
	select {
	case <-c.ended:
	case <-time.After(d):
	}
}

// waitFor waits until re matches the whole lines after offset from, at
// most until deadline; it returns the match's offsets, or ok = false with why
// (the deadline passed, or the output ended).
func (c *console) waitFor(re *regexp.Regexp, from int, deadline time.Time) (start, end int, ok bool, why string) {
	timer := time.AfterFunc(time.Until(deadline), c.cond.Broadcast)
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if from > len(c.buf) {
			from = len(c.buf)
		}
		// Only whole lines are searched (the rest once the output ended):
		// a line still being written would match a pattern such as
		// `id=(\S+)` with half its value.
		upto := bytes.LastIndexByte(c.buf, '\n') + 1
		if c.done {
			upto = len(c.buf)
		}
		if from < upto {
			if loc := re.FindIndex(c.buf[from:upto]); loc != nil {
				return from + loc[0], from + loc[1], true, ""
			}
		}
		if c.done {
			return 0, 0, false, "the console ended (QEMU exited)"
		}
		if !time.Now().Before(deadline) {
			return 0, 0, false, "timed out"
		}
		c.cond.Wait()
	}
}

// lineAt returns the whole line around offsets [start, end).
func (c *console) lineAt(start, end int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := bytes.LastIndexByte(c.buf[:start], '\n') + 1
	e := len(c.buf)
	if i := bytes.IndexByte(c.buf[end:], '\n'); i >= 0 {
		e = end + i
	}
	if end > 0 && c.buf[end-1] == '\n' {
		e = end - 1
	}
	return string(c.buf[s:e])
}

// text returns everything so far.
func (c *console) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// size is the length of the text so far.
func (c *console) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// tail returns the last n lines.
func (c *console) tail(n int) string {
	return lastLines(c.text(), n)
}

// lastLines returns s's last n lines.
func lastLines(s string, n int) string {
	if n <= 0 {
		return ""
	}
	s = strings.TrimRight(s, "\n")
	i := len(s)
	for ; n > 0; n-- {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
	}
	return s[i+1:]
}
