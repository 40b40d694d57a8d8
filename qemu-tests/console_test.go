//go:build qemu

package qemutests

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The console turns a serial stream into plain lines (escapes, carriage
// returns and backspaces applied), also when a sequence is split between
// reads, and finds lines after a cursor.
func TestConsole(t *testing.T) {
	pr, pw := io.Pipe()
	var log bytes.Buffer
	c := newConsole(pr, &log, time.Now())
	for _, chunk := range []string{
		"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1)\r\n",
		"Press Ctrl-B...\b \b\b \b\x1b", "[0;1mok\x1b[0m\r\n",
		"\x1b(Bnet0: 10.251.20.21/255.255.255.0\r\n",
		"registered as n1 (plan \"\")\r\n",
		"partial",
	} {
		if _, err := pw.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	re := regexp.MustCompile(`registered as n1 `)
	start, end, ok, why := c.waitFor(re, 0, time.Now().Add(5*time.Second))
	if !ok {
		t.Fatalf("waitFor: %s; text %q", why, c.text())
	}
	if got := c.lineAt(start, end); got != `registered as n1 (plan "")` {
		t.Errorf("line %q", got)
	}
	if _, _, ok, _ := c.waitFor(re, end, time.Now().Add(50*time.Millisecond)); ok {
		t.Error("found the same match again after its end")
	}
	if _, _, ok, _ := c.waitFor(regexp.MustCompile(`partial`), end, time.Now().Add(50*time.Millisecond)); ok {
		t.Error("a line still being written was searched (a pattern could match half of it)")
	}
	if _, err := pw.Write([]byte(" line\r\n")); err != nil {
		t.Fatal(err)
	}
	if s, e, ok, _ := c.waitFor(regexp.MustCompile(`partial\S*`), end, time.Now().Add(5*time.Second)); !ok || c.lineAt(s, e) != "partial line" {
		t.Errorf("the finished line is not found whole: ok %v", ok)
	}
	pw.Close()
	c.waitDone(5 * time.Second)
	if _, _, ok, why := c.waitFor(regexp.MustCompile(`never`), 0, time.Now().Add(time.Minute)); ok || !strings.Contains(why, "ended") {
		t.Errorf("after the end: ok %v, %q", ok, why)
	}
	want := "SeaBIOS (version 1)\nPress Ctrl-B.ok\nnet0: 10.251.20.21/255.255.255.0\nregistered as n1 (plan \"\")\npartial line\n"
	if got := c.text(); got != want {
		t.Errorf("text:\n%q\nwant\n%q", got, want)
	}
	if got := regexp.MustCompile(`(?m)^\[ *[0-9.]+s\] `).ReplaceAllString(log.String(), ""); got != want {
		t.Errorf("log without time stamps:\n%q\nwant\n%q", got, want)
	}
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""}, {"a\nb\nc\n", 2, "b\nc"}, {"a\nb\nc", 5, "a\nb\nc"}, {"a\nb", 0, ""}, {"\n\n", 1, ""},
	} {
		if got := lastLines(tc.s, tc.n); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
	if !versionLess("/boot/vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-56-amd64") || versionLess("6.10", "6.9") {
		t.Error("versionLess does not compare numbers as numbers")
	}
}
