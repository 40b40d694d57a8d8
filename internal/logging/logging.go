// Package logging is herd's one logging convention: log/slog with levels,
// written in herd's plain one-line format for people, or as JSON lines
// for machines.
//
// The convention: a record's message says everything a person needs, in
// words; its attributes repeat what a machine reads (node, state, bytes,
// state_file...). The plain format is what herd always printed, "PROG:
// message", with "warning: " or "error: " after the prefix for those
// levels, and the attributes only at LevelDebug (-v), appended as
// key=value. The JSON format has them all. Debug records are written only
// at LevelDebug. The level is always the caller's: nothing is guessed
// from a message's words.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// Format is how records are written.
type Format string

// Formats.
const (
	// Plain is herd's one line per record for people.
	Plain Format = "plain"
	// JSON is slog's JSON handler: one object per line, with time,
	// level, msg and the attributes, for log collectors.
	JSON Format = "json"
)

// ParseFormat reads a --log-format value.
func ParseFormat(s string) (Format, bool) {
	switch Format(s) {
	case "", Plain:
		return Plain, true
	case JSON:
		return JSON, true
	}
	return "", false
}

// New returns a logger writing to w at level and above: plain lines
// prefixed "prog: " (no prefix when prog is ""), or JSON lines with a
// "prog" attribute.
func New(w io.Writer, prog string, level slog.Leveler, f Format) *slog.Logger {
	if f == JSON {
		l := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
		if prog != "" {
			l = l.With("prog", prog)
		}
		return l
	}
	return slog.New(&plainHandler{w: w, mu: new(sync.Mutex), prefix: prog, level: level})
}

// Discard is a logger that writes nothing.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Level is LevelDebug when verbose, else LevelInfo.
func Level(verbose bool) slog.Level {
	if verbose {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// plainHandler writes "prefix: [warning: |error: ]msg k=v ...".
type plainHandler struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	level  slog.Leveler
	attrs  []slog.Attr // from WithAttrs, already qualified by groups
	group  string      // "a.b." for WithGroup("a").WithGroup("b")
}

func (h *plainHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *plainHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if h.prefix != "" {
		b.WriteString(h.prefix)
		b.WriteString(": ")
	}
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	if h.level.Level() > slog.LevelDebug {
		b.WriteByte('\n')
		return h.write(b.String())
	}
	for _, a := range h.attrs {
		writeAttr(&b, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	return h.write(b.String())
}

func (h *plainHandler) write(line string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line)
	return err
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			writeAttr(b, g, ga)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteByte('=')
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}

func (h *plainHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		if h.group != "" {
			a.Key = h.group + a.Key
		}
		h2.attrs = append(h2.attrs, a)
	}
	return &h2
}

func (h *plainHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group += name + "."
	return &h2
}

// Func is a logger at LevelDebug that hands each plain line, without its
// newline, to f: tests pass t.Log, or collect the lines.
func Func(f func(line string)) *slog.Logger {
	return New(funcWriter(f), "", slog.LevelDebug, Plain)
}

type funcWriter func(string)

func (f funcWriter) Write(b []byte) (int, error) {
	f(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
