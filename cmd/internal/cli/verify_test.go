package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/herdproject/herd/ring/wire"
	"github.com/spf13/pflag"
)

// --verify: readback by default for herd serve (installs), stream for
// herd send, either on request; anything else is bad usage naming the flag.
func TestVerifyFlag(t *testing.T) {
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	for _, tc := range []struct {
		prog string
		args []string
		want string // sender.Config.Verify
		err  string
	}{
		{"herd send", nil, "", ""},
		{"herd serve", nil, wire.VerifyReadback, ""},
		{"herd send", []string{"--verify", "readback"}, wire.VerifyReadback, ""},
		{"herd serve", []string{"--verify", "stream"}, "", ""},
		{"herd send", []string{"--verify", "yes"}, "", `--verify "yes": want readback`},
	} {
		t.Run(tc.prog+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			fs := pflag.NewFlagSet(tc.prog, pflag.ContinueOnError)
			f := addSendFlags(fs)
			if err := fs.Parse(append([]string{"-I", "golden.img", "-O", "/dev/sda"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			o, err := f.options(env, fs, tc.prog, "10.0.0.11")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.Verify != tc.want {
				t.Errorf("Config.Verify %q, want %q", o.cfg.Verify, tc.want)
			}
		})
	}
}
