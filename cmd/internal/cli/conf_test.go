package cli

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite docs/herd.conf.example")

// confExample is the shipped example herd.conf.
const confExample = "../../../docs/herd.conf.example"

// writeConf writes a herd.conf in a test directory.
func writeConf(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "herd.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadConf parses args as herd serve (or, with pxe, herd pxe) does, then
// applies herd.conf with $HERD_CONFIG env; it returns the flag set, what
// --print-config wrote and the error.
func loadConf(t *testing.T, pxe bool, env string, args ...string) (*pflag.FlagSet, string, error) {
	t.Helper()
	fs := pflag.NewFlagSet("herd serve", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	var c *confFlags
	var other *pflag.FlagSet
	if pxe {
		c = addConfFlags(fs)
		addBootFlags(fs)
		addPortFlags(fs)
		fs.BoolP("verbose", "v", false, "")
		other = serveFlagSet()
	} else {
		c = addServeFlags(fs).conf
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := Env{Stdout: &out, Stderr: io.Discard, Getenv: func(k string) string {
		if k == confPathEnv {
			return env
		}
		return ""
	}}
	_, err := c.apply(e, fs, "herd serve", other)
	return fs, out.String(), err
}

// flagValues are fs's flags' values, as --print-config would show them.
func flagValues(fs *pflag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(fl *pflag.Flag) {
		if !confNotKeys[fl.Name] {
			m[fl.Name] = fl.Value.String()
		}
	})
	return m
}

// The command line wins over herd.conf, which wins over the defaults.
func TestConfPrecedence(t *testing.T) {
	conf := writeConf(t, `# a rack
interface = "br0"
inventory = "/srv/herd/inventory"
http-port = 8081
power = true
register-timeout = "10m"
wait-timeout = 90
file = ["disk.img.zst >> /dev/sda", "extra.tar > /srv"]
`)
	for _, tc := range []struct {
		name string
		pxe  bool
		env  string // $HERD_CONFIG
		args []string
		want map[string]string // flag values, the rest untested
	}{
		{"file", false, "", []string{"--config", conf}, map[string]string{
			"interface": "br0", "inventory": "/srv/herd/inventory", "http-port": "8081", "power": "true",
			"register-timeout": "10m0s", "wait-timeout": "1m30s", "file": "[disk.img.zst >> /dev/sda,extra.tar > /srv]",
			"tftp-port": "69", "state-dir": "/var/lib/herd/state"}},
		{"flags win", false, "", []string{"--config", conf, "-i", "eth1", "--http-port", "9000", "--power=false", "--file", "a > b"}, map[string]string{
			"interface": "eth1", "http-port": "9000", "power": "false", "file": "[a > b]", "inventory": "/srv/herd/inventory"}},
		{"$HERD_CONFIG", false, conf, nil, map[string]string{"interface": "br0", "http-port": "8081"}},
		{"--config none", false, conf, []string{"--config", "none"}, map[string]string{"interface": "", "http-port": "8080"}},
		{"$HERD_CONFIG none", false, "none", nil, map[string]string{"interface": "", "power": "false"}},
		{"default path missing", false, filepath.Join(t.TempDir(), "absent.conf"), nil, map[string]string{"interface": "", "http-port": "8080"}},
		{"herd pxe takes its keys", true, "", []string{"--config", conf, "--tftp-port", "6969"}, map[string]string{
			"interface": "br0", "http-port": "8081", "tftp-port": "6969", "inventory": "/srv/herd/inventory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _, err := loadConf(t, tc.pxe, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			got := flagValues(fs)
			for k := range got {
				if _, ok := tc.want[k]; !ok {
					delete(got, k)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("flags (-want +got):\n%s", diff)
			}
		})
	}
}

// --print-config writes a herd.conf that gives the same options back.
func TestPrintConfigRoundTrip(t *testing.T) {
	conf := writeConf(t, "interface = \"br0\"\nfile = [\"a.zst >> /dev/sda\", 'b \"q\" > /dev/sdb']\nregister-timeout = 600\nkernel-args = \"console=ttyS0 quiet\\tx\"\n")
	fs, out, err := loadConf(t, false, "", "--config", conf, "--print-config", "--http-port", "9000", "--power", "--retries", "3")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n# boot network INTERFACE (required) [file]\ninterface = \"br0\"\n",
		"# HTTP PORT [command line]\nhttp-port = 9000\n",
		"# TFTP PORT [default]\ntftp-port = 69\n",
		"power = true\n",
		"register-timeout = \"10m0s\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
	back, out2, err := loadConf(t, false, "", "--config", writeConf(t, out), "--print-config")
	if err != nil {
		t.Fatalf("--print-config's output does not load: %v\n%s", err, out)
	}
	if diff := cmp.Diff(flagValues(fs), flagValues(back)); diff != "" {
		t.Errorf("round trip (-first +second):\n%s", diff)
	}
	if strings.Contains(out2, "[default]") || strings.Contains(out2, "[command line]") {
		t.Errorf("loaded back, every key comes from the file:\n%s", out2)
	}
}

// herd serve --print-config and herd pxe --print-config print and exit 0,
// starting nothing.
func TestPrintConfigExits(t *testing.T) {
	conf := writeConf(t, "interface = \"br0\"\nmin = 2\n")
	for _, cmd := range []string{"serve", "pxe"} {
		state := filepath.Join(t.TempDir(), "state")
		code, stdout, stderr := runEnv(Herd, func(k string) string {
			if k == confPathEnv {
				return conf
			}
			return ""
		}, cmd, "--print-config", "--state-dir", state)
		if code != ExitOK || stderr != "" {
			t.Errorf("herd %s --print-config: exit %d, stderr %q", cmd, code, stderr)
		}
		if want := "# herd " + cmd + "'s options: defaults, " + conf + " and the command line."; !strings.HasPrefix(stdout, want) {
			t.Errorf("herd %s --print-config does not start with %q:\n%s", cmd, want, stdout)
		}
		if !strings.Contains(stdout, "\ninterface = \"br0\"\n") || !strings.Contains(stdout, "\nstate-dir = \""+state+"\"\n") {
			t.Errorf("herd %s --print-config:\n%s", cmd, stdout)
		}
		if got := strings.Contains(stdout, "\nmin = 2\n"); got != (cmd == "serve") {
			t.Errorf("herd %s --print-config shows min = 2: %v", cmd, got)
		}
		if _, err := os.Stat(state); err == nil {
			t.Errorf("herd %s --print-config made the state directory", cmd)
		}
	}
}

// A bad herd.conf: exit 2 with FILE:LINE, before anything is read or
// written.
func TestConfErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text string
		args       []string // after serve --config FILE
		want       string   // in stderr; FILE stands for the file
	}{
		{"syntax", "interface = \"br0\"\nhttp-port = = 1\n", nil, "FILE:2: "},
		{"unterminated string", "interface = \"br0\n", nil, "FILE:1: "},
		{"duplicate key", "interface = \"a\"\n\ninterface = \"b\"\n", nil, "FILE:3: "},
		{"unknown key", "interface = \"br0\"\n\ninterfaces = \"br1\"\n", nil, `FILE:3: key "interfaces": unknown key`},
		{"short name", "i = \"br0\"\n", nil, `FILE:1: key "i": unknown key`},
		{"table", "[serve]\ninterface = \"br0\"\n", nil, `FILE:1: key "serve": unknown key: herd.conf has no tables`},
		{"wrong type, bool", "interface = \"br0\"\npower = \"yes\"\n", nil, `FILE:2: key "power": want a boolean (true or false), not the string "yes"`},
		{"wrong type, int", "http-port = \"80\"\n", nil, `FILE:1: key "http-port": want an integer, not the string "80"`},
		{"wrong type, string", "interface = 1\n", nil, `FILE:1: key "interface": want a string, not the integer 1`},
		{"wrong type, array", "file = [1, 2]\n", nil, `FILE:1: key "file": want an array of strings, not an array`},
		{"wrong type, even overridden", "power = 1\n", []string{"--power"}, `FILE:1: key "power": want a boolean`},
		{"bad duration", "\n\nregister-timeout = \"ten minutes\"\n", nil, `FILE:3: key "register-timeout": "ten minutes": want seconds (30) or a duration (30s, 2m)`},
		{"dolly file", "infile /images/stage2.img\noutfile /dev/ram3\nserver mgmt\nfirstclient n1\nlastclient n1\nclients 1\nn1\nendconfig\n", nil,
			"FILE: this is a dolly configuration file (the files to send), not a herd.conf: give it with -f FILE (long name --session-config)"},
		{"dolly+ file, broken", "iofiles 2\n/a > /b\n", nil, "FILE: this is a dolly configuration file"},
		{"password", "interface = \"br0\"\nbmc-password = \"secret\"\n", nil, `FILE:2: key "bmc-password": a password does not belong in herd.conf`},
		{"config in config", "config = \"/etc/other.conf\"\n", nil, `FILE:1: key "config": an option of the command line only`},
		{"missing", "", nil, "--config: open FILE: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".conf")
			if tc.name != "missing" {
				if err := os.WriteFile(conf, []byte(tc.text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			state := filepath.Join(dir, "state-"+strings.ReplaceAll(tc.name, " ", "_"))
			args := append([]string{"serve", "--config", conf, "--state-dir", state, "-I", "/dev/null"}, tc.args...)
			code, stdout, stderr := run(Herd, args...)
			want := strings.ReplaceAll(tc.want, "FILE", conf)
			if code != ExitUsage || !strings.Contains(stderr, want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, ExitUsage, want)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			if _, err := os.Stat(state); err == nil {
				t.Errorf("the state directory was made")
			}
		})
	}
}

// docs/herd.conf.example is every key, commented out, with its default;
// uncommented, it loads and gives the defaults. go test -update rewrites
// it.
func TestConfExample(t *testing.T) {
	var b bytes.Buffer
	if err := printConf(&b, serveFlagSet(), "herd serve", nil, true); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(confExample, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shipped, err := os.ReadFile(confExample)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.String(), string(shipped)); diff != "" {
		t.Errorf("%s is stale (go test ./cmd/internal/cli -run TestConfExample -update) (-want +shipped):\n%s", confExample, diff)
	}
	var keys []string
	for _, line := range strings.Split(string(shipped), "\n") {
		if k, _, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = "); ok && !strings.Contains(k, " ") {
			keys = append(keys, strings.TrimPrefix(line, "# "))
		}
	}
	fs, _, err := loadConf(t, false, "", "--config", writeConf(t, strings.Join(keys, "\n")))
	if err != nil {
		t.Fatalf("the example's keys, uncommented: %v", err)
	}
	if diff := cmp.Diff(flagValues(serveFlagSet()), flagValues(fs)); diff != "" {
		t.Errorf("the example's keys, uncommented, are not the defaults (-want +got):\n%s", diff)
	}
	if len(keys) != len(flagValues(fs)) {
		t.Errorf("the example has %d keys, herd serve %d options", len(keys), len(flagValues(fs)))
	}
}

// FuzzConf: no input makes the herd.conf loader panic.
func FuzzConf(f *testing.F) {
	for _, s := range []string{
		"interface = \"br0\"\npower = true\nfile = [\"a > b\"]\nregister-timeout = 60\n",
		"[serve]\nx = 1\n",
		"infile a outfile b endconfig\n",
		"http-port = 1e3\nwait-timeout = 1.5\nstate-dir = 1979-05-27\n",
		"a.b.c = [[1], {x = 2}]\n",
		"file = \"one > string\"\n\"inventory\" = '''x'''\n",
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile(confExample); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseConf("fuzz.conf", data)
		if err != nil {
			return
		}
		fs := serveFlagSet()
		if err := applyConf(fs, "fuzz.conf", entries, nil, map[string]string{}); err != nil {
			return
		}
		var b bytes.Buffer
		if err := printConf(&b, fs, "herd serve", &confResult{from: map[string]string{}}, false); err != nil {
			t.Fatalf("print: %v", err)
		}
		if _, err := parseConf("printed.conf", b.Bytes()); err != nil {
			t.Fatalf("--print-config's output does not parse: %v\n%s", err, b.String())
		}
	})
}
