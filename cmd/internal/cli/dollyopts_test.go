package cli

import (
	"io"
	"os"
	"strings"
	"testing"
)

// dolly072Getopt is dolly 0.72's option string (dolly.c, getopt).
const dolly072Getopt = "a:c:f:r:vqo:S:shdnR46:VI:O:Y:H:D:P:X:K:"

// TestDollyGetoptArity: every option of dolly 0.72 exists in herd's
// dolly with the same arity: one that takes an argument takes the next
// word, whatever it looks like (getopt does: "-6 -v" gives -6 the
// argument "-v"), also glued to it ("-r40"); a flag takes none, and
// flags combine ("-vsn").
func TestDollyGetoptArity(t *testing.T) {
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	opts := map[byte]bool{} // option → takes an argument
	for i := 0; i < len(dolly072Getopt); i++ {
		c := dolly072Getopt[i]
		arg := i+1 < len(dolly072Getopt) && dolly072Getopt[i+1] == ':'
		if arg {
			i++
		}
		opts[c] = arg
	}
	if len(opts) != 24 {
		t.Fatalf("%d options in %q, want 24", len(opts), dolly072Getopt)
	}
	for c, arg := range opts {
		name := "-" + string(c)
		t.Run(name, func(t *testing.T) {
			fs, _ := dollyFlagSet(env)
			fl := fs.ShorthandLookup(string(c))
			if fl == nil {
				t.Fatalf("herd's dolly has no %s", name)
			}
			if got := fl.NoOptDefVal == "" && fl.Value.Type() != "bool"; got != arg {
				t.Fatalf("%s takes an argument: %v, dolly 0.72: %v", name, got, arg)
			}
			if !arg {
				if err := fs.Parse([]string{name, "word"}); err != nil {
					t.Fatal(err)
				}
				if fs.NArg() != 1 || fs.Arg(0) != "word" {
					t.Errorf("flag %s took the next word", name)
				}
				return
			}
			// The next word, even one that looks like an option (a
			// number option refuses it as its value, naming itself).
			if err := fs.Parse([]string{name, "-v"}); err != nil {
				if !strings.Contains(err.Error(), name+",") || !strings.Contains(err.Error(), `"-v"`) {
					t.Errorf("%s -v: %v", name, err)
				}
				return
			}
			if fl.Value.String() != "-v" || fs.Lookup("verbose").Changed {
				t.Errorf("%s -v: %s got %q, -v set %v; want the argument \"-v\"", name, name, fl.Value.String(), fs.Lookup("verbose").Changed)
			}
		})
	}
	// Glued arguments and combined flags, as command lines have them.
	fs, v := dollyFlagSet(env)
	if err := fs.Parse(strings.Fields("-vsn -r40 -a 30 -SSERVER -Hnode1,node2 -I/dev/vdd -O /dev/vdd")); err != nil {
		t.Fatal(err)
	}
	if !*v.verbose || !*v.server || !*v.noSync || *v.retries != 40 || *v.timeout != 30 || *v.serverName != "SERVER" ||
		*v.hosts != "node1,node2" || *v.input != "/dev/vdd" || *v.output != "/dev/vdd" || fs.NArg() != 0 {
		t.Errorf("parsed %+v, args %q", v, fs.Args())
	}
}

// TestDollyRefusals: every command line dolly 0.72 refuses, herd's dolly
// refuses too, before any network or disk is touched: exit 2, a message
// on standard error naming the option, file or word at fault, nothing on
// standard output and no output file. dolly072 is dolly 0.72's message
// (it exits 1), kept to show what a script sees there.
func TestDollyRefusals(t *testing.T) {
	dir := t.TempDir()
	out := dir + "/out.img"
	in := dir + "/in.img"
	if err := os.WriteFile(in, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	noEnd := dir + "/noend.cfg"
	if err := os.WriteFile(noEnd, []byte("infile "+in+"\noutfile "+out+"\n127.0.0.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := []string{"-H", "127.0.0.9"}
	tests := []struct {
		name     string
		args     []string
		want     string
		dolly072 string
	}{
		{"unknown option", []string{"-x"}, "'x'", "invalid option -- 'x'"},
		{"-S without its name", []string{"-S"}, "'S'", "option requires an argument -- 'S'"},
		{"-S empty", append([]string{"-S", "", "-I", in, "-O", out}, h...), "not a valid server name", "'' is not a valid servername"},
		{"-s without clients", []string{"-s"}, "no clients", "Missing parameter -f <configfile>"},
		{"-I missing", append([]string{"-I", dir + "/none", "-O", out}, h...), dir + "/none", "Error ! ... is not a file or a device."},
		{"-D not a directory", append([]string{"-D", dir + "/none", "-O", dir}, h...), dir + "/none", "Error ! ... is not a directory."},
		{"-D without -O", append([]string{"-D", dir}, h...), "-D needs -O", "-O [outpufile] must be set when using -D"},
		{"-H without input", h, "no input", "inputfile via '-I [FILE|-]' or '-D [DIR]' must be set"},
		{"-f missing file, client", []string{"-v", "-f", dir + "/none.cfg"}, dir + "/none.cfg", "fopen dollytab '...': No such file or directory"},
		{"-f missing file, server", []string{"-s", "-f", dir + "/none.cfg"}, dir + "/none.cfg", "fopen dollytab '...': No such file or directory"},
		{"-f without endconfig", []string{"-s", "-f", noEnd}, noEnd, "Missing 'endconfig' in config-file."},
		{"-a not a number", append([]string{"-a", "abc", "-I", in, "-O", out}, h...), `"abc"`, "Timeout of 0 doesn't make sense."},
		{"-a negative", append([]string{"-a", "-5", "-I", in, "-O", out}, h...), "-a -5", "Timeout of 4294967291 doesn't make sense."},
		{"-r not a number", append([]string{"-r", "abc", "-I", in, "-O", out}, h...), `"abc"`, "(none: atoi gives 0, one try)"},
		{"-K without hosts", []string{"-K"}, "'K'", "option requires an argument -- 'K'"},
		{"-P without password", []string{"-P"}, "'P'", "option requires an argument -- 'P'"},
		{"stray word", append([]string{"-I", in, "-O", out, "extra"}, h...), `"extra"`, "(none: getopt skips it)"},
		{"P password", []string{"-v", "P", "secret"}, "did you mean -P secret?", "(none: a client without the password)"},
		{"-f with -H", append([]string{"-f", noEnd}, h...), "cannot be combined", "(none: -H wins, the file is not read)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(Dolly, tt.args...)
			if code != ExitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("dolly %q: exit %d, stderr %q; want exit %d naming %q (dolly 0.72: %s)", tt.args, code, stderr, ExitUsage, tt.want, tt.dolly072)
			}
			if stdout != "" {
				t.Errorf("dolly %q wrote to standard output: %q", tt.args, stdout)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("dolly %q created %s", tt.args, out)
			}
		})
	}
}

// TestDollyMessages: what dolly 0.72 prints that scripts read: -V's line
// on standard error ("Dolly version 0.72.0 ..."; awk '{print $3}' gives
// the version), and -h's help on standard error, which also says where
// herd differs on purpose.
func TestDollyMessages(t *testing.T) {
	code, stdout, stderr := run(Dolly, "-V")
	if f := strings.Fields(stderr); code != 0 || stdout != "" || !strings.HasPrefix(stderr, "Dolly version ") || len(f) < 3 || f[2] != DollyVersion {
		t.Errorf("dolly -V: exit %d, stdout %q, stderr %q; want exit 0 and \"Dolly version %s ...\" on standard error", code, stdout, stderr, DollyVersion)
	}
	code, stdout, stderr = run(Dolly, "-h")
	if code != 0 || stdout != "" {
		t.Errorf("dolly -h: exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
		dolly072Getopt,
		"-S, --server-name NAME",
		"-6, --ipv6 ARG",
		"-Y, --hyphen-normal ARG",
		"Where herd\ndiffers on purpose",
		"bypassed, not waited for",
		"-a 0 waits forever",
		"-h exits 0",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("dolly -h lacks %q", want)
		}
	}
}
