package cli

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// --state, --fresh and --sender-wait: the state file a session keeps (one
// per command by default, none with "none"), and how long its nodes wait
// for a sender that went away (the default when unset, none with 0).
func TestStateFlags(t *testing.T) {
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	parse := func(t *testing.T, args ...string) *sendOpts {
		t.Helper()
		fs := pflag.NewFlagSet("herd send", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := addSendFlags(fs)
		if err := fs.Parse(append([]string{"-I", "golden.img", "-O", "/dev/sda"}, args...)); err != nil {
			t.Fatal(err)
		}
		o, err := f.options(env, fs, "herd send", "10.0.0.11,10.0.0.12")
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, tc := range []struct {
		args  []string
		wait  time.Duration
		fresh bool
		state func(string) bool
	}{
		{nil, 0, false, func(p string) bool { return strings.Contains(p, filepath.Join("herd", "send", "session-")) }},
		{[]string{"--sender-wait", "0"}, -1, false, nil},
		{[]string{"--sender-wait", "90"}, 90 * time.Second, false, nil},
		{[]string{"--sender-wait", "2m"}, 2 * time.Minute, false, nil},
		{[]string{"--state", "none"}, 0, false, func(p string) bool { return p == "" }},
		{[]string{"--state", "/tmp/s.json", "--fresh"}, 0, true, func(p string) bool { return p == "/tmp/s.json" }},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o := parse(t, tc.args...)
			if o.cfg.SenderWait != tc.wait || o.cfg.Fresh != tc.fresh {
				t.Errorf("SenderWait %v, Fresh %v; want %v, %v", o.cfg.SenderWait, o.cfg.Fresh, tc.wait, tc.fresh)
			}
			if tc.state != nil {
				if p := o.stateFile(); !tc.state(p) {
					t.Errorf("state file %q", p)
				}
			}
		})
	}
	// The same command keeps the same file.
	a, b := parse(t).stateFile(), parse(t).stateFile()
	if a != b {
		t.Errorf("the same command: %s and %s", a, b)
	}
}
