package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
)

func nodesMain(ctx context.Context, args []string, env Env) int {
	return status(env, "herd nodes", herdNodes(ctx, args, env))
}

const nodesInventory = `subnet 10.0.0.0/24
range 10.0.0.100 10.0.0.199
node 52:54:00:00:00:01 n1 10.0.0.11 plan=compute.ks profile=compute
node 52:54:00:00:00:02 n2 10.0.0.12
node 52:54:00:00:00:03 n3 10.0.0.13
`

// squeeze turns each line's runs of blanks into one space.
func squeeze(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

func TestHerdNodes(t *testing.T) {
	dir := t.TempDir()
	invPath := filepath.Join(dir, "inventory")
	if err := os.WriteFile(invPath, []byte(nodesInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	badInv := filepath.Join(dir, "bad")
	if err := os.WriteFile(badInv, []byte("subnet 10.0.0.0/24\nnode 52:54:00:00:00:01 n1 10.0.1.11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state") // created by herd nodes
	// n1's plan=compute.ks, beside the inventory.
	if err := os.WriteFile(filepath.Join(dir, "compute.ks"), []byte("zerombr\nclearpart --all\npart / --fstype=ext4 --size=4096 --grow\nimage root.tar.zst --to /\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// n1 installed, n2 failed, n3 never heard of.
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts := when.Local().Format(time.RFC3339)
	inv, err := inventory.ParseFile(invPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := nodestate.Open(stateDir, inv)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string][]contract.State{
		"n1": {contract.StateBooting, contract.StateRegistered, contract.StateInstalling, contract.StateDone},
		"n2": {contract.StateBooting, contract.StateRegistered, contract.StateInstalling, contract.StateFailed},
	}
	for name, states := range steps {
		for _, to := range states {
			if err := st.Update(name, func(s *inventory.Status) error {
				reason := ""
				switch to {
				case contract.StateDone:
					s.Bytes, s.Rate = 3<<30, 112.5e6
				case contract.StateFailed:
					reason = "disk /dev/vda missing"
				}
				return nodestate.Transition(s, to, reason, when)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}

	flags := []string{"--inventory", invPath, "--state-dir", stateDir}
	tests := []struct {
		name string
		args []string
		code int
		out  []string // squeezed lines of standard output, when not nil
		has  string   // in standard output (as it is or squeezed)
		err  string   // in standard error
	}{
		{
			name: "list",
			args: flags,
			out: []string{
				"NAME MAC IP STATE BOOT BYTES RATE LAST-REPORT REASON",
				"n1 52:54:00:00:00:01 10.0.0.11 done local 3.00GiB 112.5MB/s " + ts + " -",
				"n2 52:54:00:00:00:02 10.0.0.12 failed install - - " + ts + " disk /dev/vda missing",
				"n3 52:54:00:00:00:03 10.0.0.13 unknown install - - - -",
			},
		},
		{
			name: "show",
			args: append([]string{"show", "n1"}, flags...),
			has:  "inventory " + invPath + ":3: node 52:54:00:00:00:01 n1 10.0.0.11 plan=compute.ks profile=compute\nplan compute.ks, profile compute, next boot local\n",
		},
		{name: "show plan", args: append([]string{"show", "n1"}, flags...), has: "plan file " + filepath.Join(dir, "compute.ks") + ":\nclear      every disk herd may use"},
		{name: "show plan partitions", args: append([]string{"show", "n1"}, flags...), has: "partition  /          ext4   any      4096 MiB and the room left on first disk\nimage      root.tar.zst -> /\n"},
		{name: "show no plan", args: append([]string{"show", "n2"}, flags...), has: "plan (herd serve's --plan, or none), profile -"},
		{name: "show json", args: append([]string{"show", "n2"}, flags...), has: "{\n  \"name\": \"n2\",\n  \"mac\": \"52:54:00:00:00:02\",\n  \"ip\": \"10.0.0.12\",\n  \"state\": \"failed\",\n  \"reason\": \"disk /dev/vda missing\","},
		{name: "show unknown", args: append([]string{"show", "nope"}, flags...), code: ExitUsage, err: `no node "nope" in inventory ` + invPath},
		{name: "show no name", args: append([]string{"show"}, flags...), code: ExitUsage, err: "want herd nodes show NAME"},
		{name: "reinstall unknown", args: append([]string{"reinstall", "n1", "nope"}, flags...), code: ExitUsage, err: `no node "nope"`},
		{name: "reinstall all and a name", args: append([]string{"reinstall", "all", "n1"}, flags...), code: ExitUsage, err: `"all" cannot be combined`},
		{name: "reinstall nothing", args: append([]string{"reinstall"}, flags...), code: ExitUsage, err: "NAME... or herd nodes reinstall all"},
		{name: "list unchanged", args: flags, has: "n1 52:54:00:00:00:01 10.0.0.11 done local"},
		{
			name: "reinstall all",
			args: append([]string{"reinstall", "all"}, flags...),
			out: []string{
				"n1: was done, boot local; now unknown, boot install",
				"n2: was failed, boot install; now unknown, boot install",
				"n3: already set to install",
				"2 of 3 node(s) switched to install boot; reset them (or wait for their next reboot) to reinstall",
			},
		},
		{
			name: "list after reinstall",
			args: flags,
			out: []string{
				"NAME MAC IP STATE BOOT BYTES RATE LAST-REPORT REASON",
				"n1 52:54:00:00:00:01 10.0.0.11 unknown install 3.00GiB 112.5MB/s " + ts + " -",
				"n2 52:54:00:00:00:02 10.0.0.12 unknown install - - " + ts + " -",
				"n3 52:54:00:00:00:03 10.0.0.13 unknown install - - - -",
			},
		},
		{name: "reinstall one again", args: append([]string{"reinstall", "n2"}, flags...), out: []string{"n2: already set to install", "0 of 1 node(s) switched to install boot; reset them (or wait for their next reboot) to reinstall"}},
		{name: "bad inventory", args: []string{"--inventory", badInv, "--state-dir", stateDir}, code: ExitUsage, err: badInv + ":2: node n1: 10.0.1.11 is outside subnet 10.0.0.0/24"},
		{name: "missing inventory", args: []string{"--inventory", filepath.Join(dir, "missing"), "--state-dir", stateDir}, code: ExitUsage, err: "--inventory FILE"},
		{name: "unknown command", args: append([]string{"frob"}, flags...), code: ExitUsage, err: `unknown nodes command "frob"`},
		{name: "list extra", args: append([]string{"list", "n1"}, flags...), code: ExitUsage, err: `unexpected argument "n1"`},
		{name: "bad flag", args: []string{"--nope"}, code: ExitUsage, err: "unknown flag: --nope"},
		{name: "help", args: []string{"--help"}, err: "herd nodes [OPTIONS] reinstall NAME...|all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(nodesMain, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, errOut)
			}
			if tt.out != nil {
				if diff := cmp.Diff(tt.out, squeeze(out)); diff != "" {
					t.Errorf("stdout (-want +got):\n%s", diff)
				}
			}
			if !strings.Contains(out, tt.has) && !strings.Contains(strings.Join(squeeze(out), "\n"), tt.has) {
				t.Errorf("stdout %q lacks %q", out, tt.has)
			}
			if !strings.Contains(errOut, tt.err) {
				t.Errorf("stderr %q lacks %q", errOut, tt.err)
			}
		})
	}
}
