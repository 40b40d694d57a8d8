package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdproject/herd/kickstart"
	"github.com/herdproject/herd/pxe/httpboot"
	"github.com/herdproject/herd/pxe/inventory"
)

// planPath is where a node's plan= NAME is: NAME itself when absolute,
// else NAME under dir ("" = the inventory file's directory).
func planPath(inv *inventory.Inventory, dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if dir == "" {
		dir = filepath.Dir(inv.File)
	}
	return filepath.Join(dir, name)
}

// readPlan reads and parses one plan file; its errors name the file and
// line, and the node that asked for it.
func readPlan(path, who string) (httpboot.ServedPlan, *kickstart.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return httpboot.ServedPlan{}, nil, fmt.Errorf("%s: %w", who, err)
	}
	p, err := kickstart.ParseNamed(path, bytes.NewReader(b))
	if err != nil {
		return httpboot.ServedPlan{}, nil, fmt.Errorf("%s: %w (check it with herd plan check %s)", who, err, path)
	}
	return httpboot.ServedPlan{Name: filepath.Base(path), Text: string(b)}, p, nil
}

// loadPlans reads every plan the inventory's nodes name (plan=NAME under
// dir), and def (--plan) for the others, and checks each: a missing or
// unusable plan is a usage error before anything is served. It prints a
// line per plan and its warnings.
func loadPlans(env Env, inv *inventory.Inventory, def, dir string) (map[string]httpboot.ServedPlan, error) {
	plans := map[string]httpboot.ServedPlan{}
	users := map[string][]string{}
	add := func(key, path, who string) error {
		if _, ok := plans[key]; ok {
			return nil
		}
		hp, p, err := readPlan(path, who)
		if err != nil {
			return usageError{err}
		}
		plans[key] = hp
		for _, w := range p.Warnings {
			fmt.Fprintf(env.Stderr, "herd: warning: %s\n", w)
		}
		return nil
	}
	for _, n := range inv.Nodes {
		key := n.Plan
		switch {
		case key != "":
			if err := add(key, planPath(inv, dir, key), fmt.Sprintf("node %s (%s:%d) plan=%s", n.Name, inv.File, n.Line, key)); err != nil {
				return nil, err
			}
		case def != "":
			if err := add("", def, "--plan"); err != nil {
				return nil, err
			}
		default:
			continue
		}
		users[key] = append(users[key], n.Name)
	}
	for key, names := range users {
		fmt.Fprintf(env.Stderr, "herd: plan %s for %d node(s): %s\n", plans[key].Name, len(names), strings.Join(names, ","))
	}
	return plans, nil
}
