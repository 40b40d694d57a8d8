package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/herdproject/herd/agent"
	"github.com/herdproject/herd/agent/cmdline"
	"github.com/spf13/pflag"
)

const agentUsage = `Usage: herd agent [OPTIONS]

The boot-stage agent. In herd's initramfs, u-root's init starts it: it
mounts the pseudo-filesystems, loads the modules the hardware asks for,
takes its identity from DHCP, registers with herd serve, receives the images
as a ring node, verifies them, customizes the installed system (hostname,
hosts, machine-id, SSH host keys, network configuration), reports and
reboots (or kexecs with herd.kexec).

Its settings come from the kernel command line: herd.server=, herd.url=,
herd.if=, BOOTIF=, herd.retries=, herd.timeout=, herd.key=, herd.kexec,
herd.debug, or Mandriva's automatic=method:dolly,dolly_timeout:100,
interface:eth0,network:dhcp.

As a plain process (tests, or trying it on a running machine):
  herd agent --root-dir DIR --no-reboot --cmdline 'herd.if=eth1 herd.timeout=30'
runs the same steps without the machine-level ones (mounting, modules,
reboot); DIR is its working directory, where relative outputs land.

Options:
`

func herdAgent(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd agent", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	rootDir := fs.String("root-dir", "", "run as a plain process in `DIR` (no mounts, modules or reboot)")
	noReboot := fs.Bool("no-reboot", false, "end instead of rebooting")
	text := fs.String("cmdline", "", "kernel command line `TEXT` to use instead of /proc/cmdline")
	iface := fs.String("interface", "", "boot `INTERFACE` (overrides herd.if=)")
	asInit := fs.Bool("init", false, "act as the machine's init even when not started by PID 1")
	modules := fs.String("modules-dir", "", "`DIR` with modules.alias (default /lib/modules/$(uname -r))")
	if err := parseFlags(fs, env, agentUsage, args, " (see herd agent --help)"); err != nil {
		return err
	}
	var s cmdline.Settings
	var err error
	if *text != "" {
		s, err = cmdline.Parse(*text)
	} else {
		s, err = cmdline.ParseFile("/proc/cmdline")
	}
	if err != nil {
		return usagef("kernel command line: %v", err)
	}
	for _, u := range s.Unknown {
		fmt.Fprintf(env.Stderr, "herd agent: warning: unknown kernel argument %s\n", u)
	}
	cfg := agent.Config{Settings: s, Interface: *iface, NoReboot: *noReboot, ModulesDir: *modules, Console: env.Stderr}
	if *rootDir != "" {
		if err := os.MkdirAll(*rootDir, 0o755); err != nil {
			return err
		}
		abs, _ := filepath.Abs(*rootDir)
		if err := os.Chdir(abs); err != nil {
			return err
		}
	} else {
		// u-root's init (PID 1) starts the agent as its uinit.
		cfg.AsInit = *asInit || os.Getppid() == 1 || os.Getpid() == 1
		if cfg.AsInit && !isTerminal(env.Stderr) {
			// init gave a pipe it copies to the consoles: write to them
			// directly, so that the last lines can be drained before the
			// reboot.
			ttys, err := agent.OpenTTYs("/dev", s.Consoles)
			if err != nil {
				fmt.Fprintf(env.Stderr, "herd agent: warning: %v; writing to standard error, whose tail a reboot may cut\n", err)
			} else {
				defer ttys.Close()
				cfg.Console = ttys
			}
		}
	}
	return agent.Run(ctx, cfg)
}
