package cli

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/campaign"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/ring/plan"
	"github.com/spf13/pflag"
)

func run(m Main, args ...string) (int, string, string) {
	return runEnv(m, func(string) string { return "" }, args...)
}

// runEnv is run with an environment; without $HERD_CONFIG in it, herd
// serve and herd pxe read no herd.conf (not the host's).
func runEnv(m Main, getenv func(string) string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	env := func(k string) string {
		if v := getenv(k); v != "" || k != confPathEnv {
			return v
		}
		return confNone
	}
	code := m(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: env})
	return code, out.String(), errb.String()
}

// Usage errors exit 2 with a message naming what is wrong, before any
// network or disk is touched.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		m    Main
		args []string
		want string
	}{
		{"dolly no hosts", Dolly, []string{"-s", "-I", "/etc/hostname"}, "no clients"},
		{"dolly no input", Dolly, []string{"-H", "127.0.0.9"}, "no input"},
		{"dolly password", Dolly, []string{"-P", "secret", "-H", "127.0.0.9", "-I", "/x"}, "-P"},
		{"dolly bad -b", Dolly, []string{"-b", "big", "-H", "127.0.0.9", "-I", "/x"}, "-b"},
		{"dolly -X without -D", Dolly, []string{"-H", "127.0.0.9", "-I", "/x", "-X", "a"}, "-X only applies to -D"},
		{"dolly -f with -H", Dolly, []string{"-f", "a.cfg", "-H", "127.0.0.9"}, "cannot be combined"},
		{"dolly bad range", Dolly, []string{"-H", "10.0.0.9-3", "-I", "/x"}, "-H"},
		{"dolly stray arg", Dolly, []string{"-v", "extra"}, "unexpected argument"},
		{"dollyS no config", DollyS, []string{"-v"}, "no configuration file"},
		{"dollyC -P and --dataport", DollyC, []string{"-P", "12000", "--dataport", "5"}, "do not combine"},
		{"herd send bad --file", Herd, []string{"send", "-H", "127.0.0.9", "--file", "a b"}, "want 'IN > OUT'"},
		{"herd unknown", Herd, []string{"frobnicate"}, "unknown command"},
		{"herd send port 0", Herd, []string{"send", "-H", "127.0.0.9", "-I", "/x", "--data-port", "0"}, "--data-port 0: want a TCP port"},
		{"herd send ports alike", Herd, []string{"send", "-H", "127.0.0.9", "-I", "/x", "--data-port", "9997"}, "--data-port and --control-port are both 9997"},
		{"herd recv port too high", Herd, []string{"recv", "--report-port", "70000"}, "--report-port 70000"},
		{"dolly -K port", Dolly, []string{"-K", "127.0.0.9", "--control-port", "-1"}, "--control-port -1"},
		{"dollyC -P base then --report alike", DollyC, []string{"--dataport", "9996"}, "--dataport and --report are both 9996"},
		{"herd serve --power without a password", Herd, []string{"serve", "-i", "lo", "-I", "/x", "--power"}, "no BMC password: give --bmc-password-file FILE or set $HERD_BMC_PASSWORD"},
		{"herd serve --bmc-password", Herd, []string{"serve", "-i", "lo", "-I", "/x", "--power", "--bmc-password=x"}, "--bmc-password: a password on the command line is visible"},
		{"herd serve --power-cycles 0", Herd, []string{"serve", "-i", "lo", "-I", "/x", "--power", "--power-cycles", "0"}, "--power-cycles 0: want at least 1"},
		{"herd pxe ports alike", Herd, []string{"pxe", "-i", "lo", "--inventory", "/nonexistent", "--report-port", "9998"}, "--data-port and --report-port are both 9998"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(tt.m, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", stderr, tt.want)
			}
		})
	}
}

func TestParseFileSpec(t *testing.T) {
	tests := []struct {
		spec string
		want plan.File
		bad  bool
	}{
		{spec: "/dev/hda1 > /tmp/dev/hda1", want: plan.File{Input: "/dev/hda1", Output: "/tmp/dev/hda1"}},
		{spec: "boot.tar.Z >> /boot", want: plan.File{Input: "boot.tar.Z", Output: "/boot", Mode: plan.Cooked}},
		{spec: "a>>b", want: plan.File{Input: "a", Output: "b", Mode: plan.Cooked}},
		{spec: "a > ", bad: true},
		{spec: "a >>> b", bad: true},
		{spec: "nothing", bad: true},
	}
	for _, tt := range tests {
		got, err := parseFileSpec(tt.spec)
		if (err != nil) != tt.bad {
			t.Errorf("%q: err %v", tt.spec, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); !tt.bad && diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.spec, diff)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4096": 4096, "64k": 65536, "1M": 1 << 20, "2g": 2 << 30} {
		if got, err := parseSize(in, "-b"); err != nil || got != want {
			t.Errorf("%s: %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "-1", "1X", "k"} {
		if _, err := parseSize(in, "-b"); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// dolly+'s -P BASE sets report=BASE, control=BASE+1, data=BASE+2.
func TestDollyPlusPortBase(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	p := addDollyPlusPorts(fs)
	if err := fs.Parse([]string{"-P", "12000"}); err != nil {
		t.Fatal(err)
	}
	var d, c, r int
	if err := p.apply(fs, &d, &c, &r); err != nil {
		t.Fatal(err)
	}
	if r != 12000 || c != 12001 || d != 12002 {
		t.Errorf("report %d control %d data %d", r, c, d)
	}
}

func TestByName(t *testing.T) {
	code, _, stderr := run(ByName("/usr/sbin/dolly"), "-V")
	if code != 0 || !strings.HasPrefix(stderr, "Dolly version ") {
		t.Errorf("dolly -V: %d %q", code, stderr)
	}
	code, out, _ := run(ByName("herd"), "version")
	if code != 0 || !strings.HasPrefix(out, "herd ") {
		t.Errorf("herd version: %d %q", code, out)
	}
}

// -a and -t take dolly's plain seconds as well as Go durations.
func TestSecondsFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"3": 3 * time.Second, "0.5": 500 * time.Millisecond, "2m": 2 * time.Minute, "0": 0} {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		d := secondsFlag(fs, "timeout", "a", "")
		if err := fs.Parse([]string{"-a", in}); err != nil || *d != want {
			t.Errorf("-a %s: %v, %v", in, *d, err)
		}
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	secondsFlag(fs, "timeout", "a", "")
	if err := fs.Parse([]string{"-a", "-3"}); err == nil {
		t.Error("-a -3 accepted")
	}
}

// herd serve takes a dolly configuration's files (the Mandriva guide's
// "infile stage2.img outfile /dev/ram3", -f or --session-config) but its
// hosts from the inventory; herd send keeps refusing --config with
// --hosts.
func TestServeConfigHosts(t *testing.T) {
	cfg := t.TempDir() + "/stage2.conf"
	if err := os.WriteFile(cfg, []byte("infile stage2.img outfile /dev/ram3 server servernode firstclient 12.12.12.1 lastclient 12.12.12.3 clients 3 12.12.12.1 12.12.12.2 12.12.12.3 endconfig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("herd serve", pflag.ContinueOnError)
	f := addServeFlags(fs).send
	if err := fs.Parse([]string{"--session-config", cfg}); err != nil {
		t.Fatal(err)
	}
	if fl := fs.ShorthandLookup("f"); fl == nil || fl.Name != "session-config" {
		t.Errorf("herd serve -f is %v, want --session-config", fl)
	}
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	o0, err := f.options(env, fs, "herd serve", "")
	if err != nil {
		t.Fatal(err)
	}
	o := sessionOpts(o0, campaign.Session{Kind: campaign.KindInstall, Nodes: []inventory.Node{
		{Name: "n1", IP: netip.MustParseAddr("10.0.0.11")}, {Name: "n2", IP: netip.MustParseAddr("10.0.0.12")}}})
	if o.cfg.Plan.Server != "" {
		t.Errorf("server %q: the configuration's server line is not herd serve's", o.cfg.Plan.Server)
	}
	if diff := cmp.Diff([]string{"10.0.0.11", "10.0.0.12"}, o.cfg.Plan.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if len(o.cfg.Plan.Files) != 1 || o.cfg.Plan.Files[0].Output != "/dev/ram3" {
		t.Errorf("files %+v", o.cfg.Plan.Files)
	}
	sfs := pflag.NewFlagSet("herd send", pflag.ContinueOnError)
	sf := addSendFlags(sfs)
	if err := sfs.Parse([]string{"--config", cfg}); err != nil {
		t.Fatal(err)
	}
	if _, err := sf.options(env, sfs, "herd send", "10.0.0.11"); err == nil || !strings.Contains(err.Error(), "cannot be combined") {
		t.Errorf("herd send --config with hosts: %v", err)
	}
}

// herd serve checks every plan before it serves anything: a bad one, or
// one the inventory names that is missing, is exit 2 naming the node,
// the file and the line.
func TestServeBadPlans(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory")
	if err := os.WriteFile(inv, []byte("subnet 10.0.0.0/24\nnode 52:54:00:00:00:02 n2 10.0.0.12\nnode 52:54:00:00:00:01 n1 10.0.0.11 plan=c.ks\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.ks")
	if err := os.WriteFile(bad, []byte("zerombr\npart / --size=ten\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.ks")
	if err := os.WriteFile(good, []byte("part / --size=100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--interface", "lo", "--inventory", inv, "--state-dir", filepath.Join(dir, "state"), "--boot-dir", dir, "-I", good, "-O", "/dev/null"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing plan=", nil, "node n1 (" + inv + ":3) plan=c.ks: open " + filepath.Join(dir, "c.ks")},
		{"bad --plan", []string{"--plan", bad, "--plan-dir", filepath.Join(dir, "none")}, "--plan: " + bad + ":2: part / --size=\"ten\""},
		{"bad plan=", []string{"--plan-dir", dir, "--plan", good}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				// c.ks is the bad plan now.
				if err := os.Rename(bad, filepath.Join(dir, "c.ks")); err != nil {
					t.Fatal(err)
				}
				tc.want = "node n1 (" + inv + ":3) plan=c.ks: " + filepath.Join(dir, "c.ks") + ":2:"
			}
			code, _, stderr := run(Herd, append(base, tc.args...)...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, ExitUsage, tc.want)
			}
		})
	}
}
