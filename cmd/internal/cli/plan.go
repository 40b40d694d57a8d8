package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/herdproject/herd/kickstart"
	"github.com/spf13/pflag"
)

const planUsage = `Usage: herd plan check [--ka] FILE

Checks an install plan without a node: a kickstart file (herd's subset,
with its image and kexec commands) or, with --ka or a .desc or .ka name, a
ka-deploy partition description. Prints the plan, then a warning per line
herd will not carry out. Exit status: 0 the plan is usable (warnings
included); 2 it is not, with FILE:LINE and what is wrong.

Options:
`

func herdPlan(_ context.Context, args []string, env Env) error {
	if err := groupHelp(env, args, planUsage, "want a command: herd plan check FILE"); err != nil {
		return err
	}
	if args[0] != "check" {
		return usagef("unknown plan command %q: want check (see herd plan --help)", args[0])
	}
	fs := pflag.NewFlagSet("herd plan check", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	ka := fs.Bool("ka", false, "FILE is a ka-deploy partition description")
	if err := parseArgs(fs, env, planUsage, args[1:], 1, "a plan FILE", " (see herd plan --help)"); err != nil {
		return err
	}
	name := fs.Arg(0)
	f, err := os.Open(name)
	if err != nil {
		return usagef("%v", err)
	}
	defer f.Close()
	var p *kickstart.Plan
	if *ka {
		p, err = kickstart.ParseKa(name, f)
	} else {
		p, err = kickstart.ParseNamed(name, f)
	}
	if err != nil {
		return usagef("%v", err)
	}
	printPlan(env.Stdout, p)
	for _, w := range p.Warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(env.Stdout, "%s: plan OK (%d partition(s), %d image(s), %d warning(s))\n", name, len(p.Parts), len(p.Images), len(p.Warnings))
	return nil
}

// printPlan writes what a plan will do, one line per step.
func printPlan(w io.Writer, p *kickstart.Plan) {
	if p.ClearPart != nil {
		what := "every disk herd may use"
		if len(p.ClearPart.Drives) > 0 {
			what = strings.Join(p.ClearPart.Drives, ",")
		}
		label := p.ClearPart.DiskLabel
		if label == "" {
			label = "gpt on UEFI or over 2 TiB, else dos"
		}
		fmt.Fprintf(w, "clear      %s (new partition table: %v, label %s)\n", what, p.ClearPart.InitLabel || p.ZeroMBR, label)
	}
	if len(p.OnlyUse) > 0 {
		fmt.Fprintf(w, "disks      only %s\n", strings.Join(p.OnlyUse, ","))
	}
	for _, pt := range p.Parts {
		size := fmt.Sprintf("%d MiB", pt.SizeMiB)
		if pt.Grow {
			size = fmt.Sprintf("%d MiB and the room left", pt.SizeMiB)
			if pt.MaxSizeMiB > 0 {
				size += fmt.Sprintf(" up to %d MiB", pt.MaxSizeMiB)
			}
		}
		disk := pt.OnDisk
		if disk == "" {
			disk = "first disk"
		}
		fmt.Fprintf(w, "partition  %-10s %-6s %-8s %s on %s\n", orDash(pt.Mount), orDash(pt.FSType), pt.Kind, size, disk)
	}
	for _, im := range p.Images {
		fmt.Fprintf(w, "image      %s -> %s\n", im.Source, im.To)
	}
	if b := p.Bootloader; b != nil {
		fmt.Fprintf(w, "bootloader %s append=%q timeout=%d\n", b.Location, b.Append, b.Timeout)
	}
	for _, n := range p.Network {
		fmt.Fprintf(w, "network    %s device=%s hostname=%s\n", n.BootProto, orDash(n.Device), orDash(n.Hostname))
	}
	if p.RootPW != nil {
		fmt.Fprintf(w, "rootpw     crypted=%v locked=%v\n", p.RootPW.Crypted, p.RootPW.Lock)
	}
	if p.Timezone != "" {
		fmt.Fprintf(w, "timezone   %s (utc %v)\n", p.Timezone, p.UTC)
	}
	for _, s := range p.Pre {
		fmt.Fprintf(w, "%%pre       line %d, %d line(s)\n", s.Line, strings.Count(s.Body, "\n"))
	}
	for _, s := range p.Post {
		fmt.Fprintf(w, "%%post      line %d, %d line(s), nochroot %v\n", s.Line, strings.Count(s.Body, "\n"), s.NoChroot)
	}
	end := p.Finish
	if p.Kexec {
		end = "kexec into the installed kernel"
	}
	fmt.Fprintf(w, "finish     %s\n", end)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
