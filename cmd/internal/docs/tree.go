package docs

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/herdproject/herd/cmd/internal/cli"
)

// Command is a command or sub-command and its help.
type Command struct {
	// Path is the command line that names it: ["herd", "image", "golden"].
	Path []string
	// Summary is its line in the parent's command list, if any.
	Summary string
	// Help is its --help; a sub-command that shares its parent's help
	// (herd nodes show) has the parent's.
	Help Help
	// OwnHelp is false for a sub-command whose --help is its parent's:
	// it gets no man page of its own.
	OwnHelp bool
	// Subs are its sub-commands.
	Subs []*Command
}

// Name is the man page's name: the path joined with "-" (herd-image-golden).
func (c *Command) Name() string { return strings.Join(c.Path, "-") }

// Section is the man page's section: 8 for what an administrator runs as
// root on the management host or a node (serve, pxe, power, agent), 1 for
// the rest.
func (c *Command) Section() int {
	if len(c.Path) >= 2 && c.Path[0] == "herd" {
		switch c.Path[1] {
		case "serve", "pxe", "power", "agent":
			return 8
		}
	}
	return 1
}

// Walk calls fn for c and every command below it, parents first.
func (c *Command) Walk(fn func(*Command)) {
	fn(c)
	for _, s := range c.Subs {
		s.Walk(fn)
	}
}

// entryPoints are the programs one herd binary is installed as.
var entryPoints = []struct {
	name string
	main cli.Main
}{
	{"herd", cli.Herd},
	{"dolly", cli.Dolly},
	{"dollyS", cli.DollyS},
	{"dollyC", cli.DollyC},
}

// RunHelp runs path --help in this process (path[0] is the program:
// herd, dolly, dollyS or dollyC) and returns what it printed.
func RunHelp(ctx context.Context, path []string) (string, error) {
	for _, e := range entryPoints {
		if e.name != path[0] {
			continue
		}
		var stdout, stderr bytes.Buffer
		args := append(append([]string{}, path[1:]...), "--help")
		env := cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		if code := e.main(ctx, args, env); code != cli.ExitOK {
			return "", fmt.Errorf("%s --help: exit status %d: %s", strings.Join(path, " "), code, strings.TrimSpace(stderr.String()))
		}
		if stdout.Len() > 0 && stderr.Len() > 0 {
			return "", fmt.Errorf("%s --help: printed on both standard output and standard error", strings.Join(path, " "))
		}
		return stdout.String() + stderr.String(), nil
	}
	return "", fmt.Errorf("%s: not one of herd's programs", path[0])
}

// Commands runs every program's and command's --help (in this process)
// and returns the programs: herd with its commands and their
// sub-commands, dolly, dollyS and dollyC. herd's commands are those of
// its "Commands:" list; a command's sub-commands are the words its usage
// lines name after it.
func Commands(ctx context.Context) ([]*Command, error) {
	var roots []*Command
	for _, e := range entryPoints {
		c, err := command(ctx, []string{e.name}, "", nil)
		if err != nil {
			return nil, err
		}
		roots = append(roots, c)
	}
	return roots, nil
}

// command reads path's help and its sub-commands'; parent is the
// parent's help ("" at the top), subs the words the parent's usage
// names after path.
func command(ctx context.Context, path []string, summary string, parent *Help) (*Command, error) {
	text, err := RunHelp(ctx, path)
	if err != nil {
		return nil, err
	}
	c := &Command{Path: path, Summary: summary, Help: ParseHelp(text), OwnHelp: parent == nil || text != parent.Text}
	if !c.OwnHelp {
		c.Help = *parent
	}
	var subs []Word
	if len(path) == 1 && path[0] == "herd" {
		for _, s := range c.Help.Commands() {
			subs = append(subs, Word{Name: s.Name})
		}
	} else {
		subs = c.Help.Subcommands(path)
	}
	summaries := map[string]string{}
	for _, s := range c.Help.Commands() {
		summaries[s.Name] = s.Text
	}
	for _, w := range subs {
		sp := append(append([]string{}, path...), w.Name)
		sub, err := command(ctx, sp, summaries[w.Name], &c.Help)
		if err != nil {
			return nil, err
		}
		c.Subs = append(c.Subs, sub)
	}
	return c, nil
}
