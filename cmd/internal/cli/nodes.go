package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/spf13/pflag"
)

const nodesUsage = `Usage: herd nodes [OPTIONS] [list]
       herd nodes [OPTIONS] show NAME
       herd nodes [OPTIONS] reinstall NAME...|all

Show the inventory's nodes and their boot state, or send nodes back to the
installer.

  list       (the default) one line per node in inventory (ring) order:
             NAME MAC IP STATE BOOT BYTES RATE LAST-REPORT REASON.
             BOOT is what the node's next network boot gets: "install"
             (the herd installer) or "local" (its own disk, once installed).
  show       one node's state as JSON, then its inventory line.
  reinstall  switch the named nodes (or all) back to install boot; their
             next reset installs them again. Safe while herd serve or
             herd pxe runs: they share the state directory (--state-dir).

A node's state moves unknown -> booting -> registered -> installing ->
done | failed; done switches its boot to local.

Options:
`

func herdNodes(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd nodes", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	invPath := fs.String("inventory", nodestate.DefaultInventory, "inventory `FILE`: network and nodes (MAC, name, IP)")
	stateDir := fs.String("state-dir", nodestate.DefaultStateDir, "`DIR` keeping every node's boot state")
	planDir := fs.String("plan-dir", "", "`DIR` holding the plans the inventory names (default: the inventory's directory)")
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, nodesUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	cmd, rest := "list", fs.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	switch cmd {
	case "list", "ls":
		if len(rest) > 0 {
			return usagef("nodes list: unexpected argument %q (see herd nodes --help)", rest[0])
		}
	case "show":
		if len(rest) != 1 {
			return usagef("want herd nodes show NAME")
		}
	case "reinstall":
		if len(rest) == 0 {
			return usagef("want herd nodes reinstall NAME... or herd nodes reinstall all")
		}
	default:
		return usagef("unknown nodes command %q: want list, show or reinstall (see herd nodes --help)", cmd)
	}

	inv, err := inventory.ParseFile(*invPath)
	if err != nil {
		var pe *inventory.ParseError
		if errors.As(err, &pe) {
			return usageError{err}
		}
		return usagef("inventory: %v (give its path with --inventory FILE)", err)
	}
	st, err := nodestate.Open(*stateDir, inv)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w (run as root, or give another --state-dir DIR)", err)
		}
		return err
	}
	switch cmd {
	case "show":
		err = nodesShow(env.Stdout, inv, st, rest[0], *planDir)
	case "reinstall":
		err = nodesReinstall(env.Stdout, inv, st, rest)
	default:
		err = nodesList(env.Stdout, st)
	}
	if errors.Is(err, nodestate.ErrUnknownNode) {
		return usageError{err}
	}
	return err
}

func nodesList(w io.Writer, st *nodestate.Store) error {
	list, err := st.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tIP\tSTATE\tBOOT\tBYTES\tRATE\tLAST-REPORT\tREASON")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.Name, s.MAC, s.IP, s.State, nodesBoot(s), nodesBytes(s.Bytes), nodesRate(s.Rate),
			nodesTime(s.LastReport), nodesDash(s.Reason))
	}
	return tw.Flush()
}

func nodesShow(w io.Writer, inv *inventory.Inventory, st *nodestate.Store, name, planDir string) error {
	s, err := st.Get(name)
	if err != nil {
		return err
	}
	n, _ := inv.ByName(name) // Get found it
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	plan := n.Plan
	if plan == "" {
		plan = "(herd serve's --plan, or none)"
	}
	if _, err = fmt.Fprintf(w, "%s\ninventory %s:%d: %s\nplan %s, profile %s, next boot %s\n",
		b, inv.File, n.Line, n, plan, nodesDash(n.Profile), nodesBoot(s)); err != nil {
		return err
	}
	if n.Plan == "" {
		return nil
	}
	// What the plan will do, as herd plan check prints it.
	path := planPath(inv, planDir, n.Plan)
	_, p, err := readPlan(path, "plan="+n.Plan)
	if err != nil {
		_, err = fmt.Fprintf(w, "plan %s: %v\n", path, err)
		return err
	}
	fmt.Fprintf(w, "plan file %s:\n", path)
	printPlan(w, p)
	return nil
}

func nodesReinstall(w io.Writer, inv *inventory.Inventory, st *nodestate.Store, names []string) error {
	targets := names
	if len(names) == 1 && names[0] == "all" {
		targets = nil
		for _, n := range inv.Nodes {
			targets = append(targets, n.Name)
		}
		if len(targets) == 0 {
			_, err := fmt.Fprintf(w, "inventory %s lists no node: nothing to do\n", inv.File)
			return err
		}
	}
	// What they were, for the report (Reinstall checks the names too,
	// before it changes anything).
	before := map[string]inventory.Status{}
	for _, name := range targets {
		if name == "all" {
			return usagef(`"all" cannot be combined with node names`)
		}
		s, err := st.Get(name)
		if err != nil {
			return err
		}
		before[name] = s
	}
	if err := st.Reinstall(names...); err != nil {
		return err
	}
	changed := 0
	seen := map[string]bool{}
	for _, name := range targets {
		if seen[name] {
			continue
		}
		seen[name] = true
		s := before[name]
		if s.State == contract.StateUnknown && !s.LocalBoot {
			fmt.Fprintf(w, "%s: already set to install\n", name)
			continue
		}
		changed++
		fmt.Fprintf(w, "%s: was %s, boot %s; now unknown, boot install\n", name, s.State, nodesBoot(s))
	}
	_, err := fmt.Fprintf(w, "%d of %d node(s) switched to install boot; reset them (or wait for their next reboot) to reinstall\n", changed, len(seen))
	return err
}

func nodesBoot(s inventory.Status) string {
	if s.LocalBoot {
		return "local"
	}
	return "install"
}

func nodesBytes(n int64) string {
	switch {
	case n <= 0:
		return "-"
	case n >= 1<<30:
		return fmt.Sprintf("%.2fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// nodesRate is in dolly's MB/s (10^6 bytes).
func nodesRate(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMB/s", r/1e6)
}

func nodesTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func nodesDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
