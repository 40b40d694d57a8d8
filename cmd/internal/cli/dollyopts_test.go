package cli

import (
	"io"
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
