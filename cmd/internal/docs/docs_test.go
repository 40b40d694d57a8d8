package docs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// commands runs every --help once per test binary.
func commands(t *testing.T) []*Command {
	t.Helper()
	roots, err := Commands(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return roots
}

// renderers turn a page back into text: groff when installed, and a
// plain reading of the roff that needs nothing.
func renderers(t *testing.T) map[string]func([]byte) (string, error) {
	r := map[string]func([]byte) (string, error){"deroff": func(b []byte) (string, error) { return deroff(b), nil }}
	if groff, err := exec.LookPath("groff"); err == nil {
		r["groff"] = func(b []byte) (string, error) {
			cmd := exec.Command(groff, "-man", "-Tascii", "-P-cbou", "-rLL=200n", "-rHY=0") // no hyphenation
			cmd.Stdin = bytes.NewReader(b)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				return "", err
			}
			return string(out), nil
		}
	} else {
		t.Log("groff not installed: pages read back without it only")
	}
	return r
}

// deroff reads roff as text: requests dropped, escapes resolved.
func deroff(roff []byte) string {
	var b strings.Builder
	for _, l := range strings.Split(string(roff), "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			if f := strings.Fields(l); len(f) > 1 && (f[0] == ".SH" || f[0] == ".SS" || f[0] == ".TH") {
				b.WriteString(strings.Trim(strings.Join(f[1:], " "), `"`) + "\n")
			}
			continue
		}
		b.WriteString(roffEscape.ReplaceAllStringFunc(l, func(e string) string {
			switch e {
			case `\-`:
				return "-"
			case `\\`, `\e`:
				return `\`
			}
			return "" // \&, fonts
		}))
		b.WriteString("\n")
	}
	return b.String()
}

var roffEscape = regexp.MustCompile(`\\(f[BIRP]|[-&\\e])`)

// norm collapses white space.
func norm(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestManPageMatchesHelp: every page, read back as text, holds its
// command's help: the usage, every line of the prose and every option
// with its description.
func TestManPageMatchesHelp(t *testing.T) {
	roots := commands(t)
	pages := map[string]Page{}
	for _, p := range ManPages(roots, "9.9.9", "2026-12-06") {
		pages[p.Name] = p
	}
	render := renderers(t)
	var cmds []*Command
	for _, r := range roots {
		r.Walk(func(c *Command) {
			if c.OwnHelp {
				cmds = append(cmds, c)
			}
		})
	}
	for _, c := range cmds {
		t.Run(c.Name(), func(t *testing.T) {
			p, ok := pages[c.Name()]
			if !ok {
				t.Fatalf("no man page %s", c.Name())
			}
			if p.Section != c.Section() {
				t.Errorf("section %d, want %d", p.Section, c.Section())
			}
			for name, fn := range render {
				text, err := fn(p.Roff)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				text = norm(text)
				want := []string{"NAME", c.Name() + " - ", "SYNOPSIS", "DESCRIPTION", "SEE ALSO", "9.9.9"}
				for _, u := range c.Help.Usage {
					want = append(want, norm(u))
				}
				for _, l := range c.Help.Prose {
					l = norm(strings.TrimPrefix(l, "Exit status:"))
					if label.MatchString(l) {
						l = strings.TrimSuffix(l, ":")
						if l == "Exit status" {
							l = "EXIT STATUS"
						}
					}
					if l != "" {
						want = append(want, l)
					}
				}
				if len(c.Help.Flags) > 0 {
					want = append(want, "OPTIONS")
				}
				for _, f := range c.Help.Flags {
					want = append(want, norm(f.Spelling()+" "+f.Arg), norm(f.Usage))
				}
				for _, w := range want {
					if !strings.Contains(text, w) {
						t.Errorf("%s: the page lacks %q", name, w)
					}
				}
				if t.Failed() {
					return
				}
			}
		})
	}
}

// TestPagesForEveryCommand: herd's command list, the sub-commands with a
// help of their own and the dolly entry points all have a page.
func TestPagesForEveryCommand(t *testing.T) {
	roots := commands(t)
	var got []string
	for _, p := range ManPages(roots, "1", "") {
		got = append(got, p.FileName())
	}
	want := []string{
		"herd.1", "herd-send.1", "herd-recv.1", "herd-serve.8", "herd-pxe.8", "herd-nodes.1", "herd-power.8",
		"herd-agent.8", "herd-build.1", "herd-build-boot.1", "herd-image.1", "herd-image-build.1",
		"herd-image-golden.1", "herd-image-capture.1", "herd-image-info.1", "herd-plan.1", "herd-plan-check.1",
		"herd-version.1", "dolly.1", "dollyS.1", "dollyC.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	for _, s := range roots[0].Help.Commands() {
		found := false
		for _, c := range roots[0].Subs {
			found = found || c.Path[1] == s.Name && c.OwnHelp
		}
		if !found {
			t.Errorf("herd's command %s has no help of its own", s.Name)
		}
	}
}

// TestRoffLint: groff reads every page without a warning.
func TestRoffLint(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff not installed")
	}
	for _, p := range ManPages(commands(t), "1.0", "2026-12-06") {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = bytes.NewReader(p.Roff)
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff -ww %s: %v\n%s", p.FileName(), err, out)
		}
	}
}

func TestParseHelp(t *testing.T) {
	text := `Usage: herd x [OPTIONS] FILE
       herd x --other

Does x. Really.

Exit status: 0 fine.

Options:
  -H, --hosts string                nodes, comma-separated
      --file 'IN > OUT'             'IN > OUT' (raw); repeatable
      --fresh                       start anew
      --window SIZE                 recent SIZE (default "64M")
`
	got := ParseHelp(text)
	want := Help{
		Text:  text,
		Usage: []string{"herd x [OPTIONS] FILE", "herd x --other"},
		Prose: []string{"Does x. Really.", "", "Exit status: 0 fine."},
		Flags: []Flag{
			{Short: "H", Long: "hosts", Arg: "string", Usage: "nodes, comma-separated"},
			{Long: "file", Arg: "'IN > OUT'", Usage: "'IN > OUT' (raw); repeatable"},
			{Long: "fresh", Usage: "start anew"},
			{Long: "window", Arg: "SIZE", Usage: `recent SIZE (default "64M")`},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseHelp (-want +got):\n%s", diff)
	}
}

func TestSubcommands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		path  []string
		usage []string
		want  []Word
	}{
		{"alternatives", []string{"herd", "image"}, []string{"herd image build|golden [OPTIONS] ..."}, []Word{{Name: "build"}, {Name: "golden"}}},
		{"optional", []string{"herd", "nodes"}, []string{"herd nodes [OPTIONS] [list]", "herd nodes [OPTIONS] show NAME"}, []Word{{Name: "list"}, {Name: "show"}}},
		{"nested", []string{"herd", "power"}, []string{"herd power on|off NODE...|all", "herd power bootdev pxe|disk NODE...|all [--efi]"},
			[]Word{{Name: "on"}, {Name: "off"}, {Name: "bootdev", Subs: []Word{{Name: "pxe"}, {Name: "disk"}}}}},
		{"options skipped", []string{"herd", "plan"}, []string{"herd plan check [--ka] FILE"}, []Word{{Name: "check"}}},
		{"none", []string{"herd", "send"}, []string{"herd send [OPTIONS] (--config FILE | --hosts LIST)"}, nil},
		{"other command", []string{"herd", "send"}, []string{"dolly [-h] [-V]"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Help{Usage: tc.usage}.Subcommands(tc.path)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Subcommands (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEscapeMinus(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"use --bypass-timeout now", `use \-\-bypass\-timeout now`},
		{`\fB-H\fP, \fB--hosts\fP`, `\fB\-H\fP, \fB\-\-hosts\fP`},
		{"set-up, 10.0.1.45-80, node[01-16]", "set-up, 10.0.1.45-80, node[01-16]"},
		{`OUT "-" writes`, `OUT "\-" writes`},
		{`herd-send \- send`, `herd-send \- send`},
		{".TH HERD-SEND 1", ".TH HERD-SEND 1"},
		{`a\(bu-b`, `a\(bu\-b`},
	} {
		if got := string(escapeMinus([]byte(tc.in))); got != tc.want {
			t.Errorf("escapeMinus(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestMarkdownEscapes: what markdown would read as markup reaches the
// page as text.
func TestMarkdownEscapes(t *testing.T) {
	c := &Command{Path: []string{"herd", "x"}, OwnHelp: true, Help: ParseHelp(`Usage: herd x

Does x with /dev/vd* and *.list, CONFIG_RD_ZSTD=y, <release> and [a](b).
- not a list
1. not a list either
# not a heading
.not a request
'not a request

Options:
      --allow PATTERN   write only to outputs matching PATTERN (e.g. '/dev/vd*'); repeatable
`)}
	page := ManPages([]*Command{c}, "1", "")[0]
	text := norm(deroff(page.Roff))
	for _, w := range []string{
		"Does x with /dev/vd* and *.list, CONFIG_RD_ZSTD=y, <release> and [a](b).",
		"- not a list", "1. not a list either", "# not a heading", ".not a request", "'not a request",
		"--allow PATTERN write only to outputs matching PATTERN (e.g. '/dev/vd*'); repeatable",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("page lacks %q:\n%s", w, page.Roff)
		}
	}
	for _, l := range strings.Split(string(page.Roff), "\n") {
		if strings.HasPrefix(l, ".not") || strings.HasPrefix(l, "'not") {
			t.Errorf("text line read as a request: %q", l)
		}
	}
}

// TestBashCompletion: the script parses, and completes sub-commands,
// options and option values as the help says.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, BashFile)
	if err := os.WriteFile(script, Bash(commands(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	for _, d := range []string{"sub", "file.img"} {
		if err := os.MkdirAll(filepath.Join(dir, "w", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "w", "inventory"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ line, want string }{
		{"herd ", "send recv serve pxe nodes power agent build image plan version"},
		{"herd im", "image"},
		{"herd image ", "build golden capture info"},
		{"herd image golden --root-", "--root-tar"},
		{"herd send --window 64M --fa", "--failed --fanout"},
		{"herd send -H ", ""},
		{"herd serve --boot-dir ", "file.img sub"},
		{"herd nodes show --inventory in", "inventory"},
		{"herd power bootdev ", "pxe disk"},
		{"herd power bootdev --pers", "--persistent"},
		{"dolly -V", "-V"},
		{"dollyC --li", "--listen"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			cmd := exec.Command(bash, "-c", `source "$1"; read -ra COMP_WORDS <<<"$2"; [[ $2 == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _herd; echo "${COMPREPLY[*]}"`, "bash", script, tc.line)
			cmd.Dir = filepath.Join(dir, "w")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got := strings.Join(strings.Fields(string(out)), " "); got != tc.want {
				t.Errorf("completes %q, want %q", got, tc.want)
			}
		})
	}
}

// TestZshCompletion: the script parses (zsh -n), when zsh is installed.
func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh not installed")
	}
	script := filepath.Join(t.TempDir(), ZshFile)
	if err := os.WriteFile(script, Zsh(commands(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// The completion system's functions, stubbed: they print what the
	// script asked for.
	const stubs = `_describe() { local -a a; a=("${(@P)4}"); print -r -- "$3: ${a[@]%%:*}"; }
_files() { print -r -- "files $*"; }
_message() { print -r -- "message"; }
compset() { :; }
`
	for _, tc := range []struct{ line, want string }{
		{"herd image ", "command: build golden capture info"},
		{"herd image info --j", "option: --help --json"},
		{"herd serve --boot-dir ", "files -/"},
		{"herd send --failed ", "files"},
		{"herd send -H ", "message"},
		{"herd power bootdev ", "command: pxe disk"},
		{"dollyC --listen 127.0.0.2 -", "option: --help --cntlport --dataport --listen -P --portbase --report -a --timeout -v --verbose"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			out, err := exec.Command(zsh, "-fc", stubs+`words=(${=2}); [[ $2 == *" " ]] && words+=(""); CURRENT=${#words}; source "$1"`, "zsh", script, tc.line).CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != tc.want {
				t.Errorf("completes %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

// TestWrite writes the files herd-docs and the packages expect.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(context.Background(), filepath.Join(dir, "man"), filepath.Join(dir, "completion")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"man/herd.1", "man/herd-serve.8", "man/dolly.1", "completion/" + BashFile, "completion/" + ZshFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
