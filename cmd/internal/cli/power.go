package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdproject/herd/bmc"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/spf13/pflag"
)

const powerUsage = `Usage: herd power status|on|off|cycle|reset NODE...|all [OPTIONS]
       herd power bootdev pxe|disk NODE...|all [--persistent] [--efi|--legacy] [OPTIONS]

Drives the nodes' BMCs, named in the inventory (bmc=ipmi://USER@HOST for
IPMI over LAN, bmc=redfish://USER@HOST for Redfish over HTTPS):
power status, on, off (hard), cycle, reset (hard), and the device of the
next boot. Every node's BMC is driven at the same time; each answers on
its own line, and a BMC that refuses or does not answer fails only its
node. A node without bmc= is left to you: named, and failed when named
on the command line.

The password is read from --bmc-password-file, else $HERD_BMC_PASSWORD;
never from the command line, where every user of the host can read it.

Exit status: 0 every node done; 1 some node failed; 2 bad usage.

Options:
`

// powerPasswordEnv is the environment variable holding the BMC password.
const powerPasswordEnv = "HERD_BMC_PASSWORD"

func herdPower(ctx context.Context, args []string, env Env) error {
	if err := refusePasswordArgs(args, true); err != nil {
		return err
	}
	fs := pflag.NewFlagSet("herd power", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	invPath := fs.String("inventory", nodestate.DefaultInventory, "inventory `FILE`: the nodes and their bmc=")
	pwFile := fs.String("bmc-password-file", "", "`FILE` holding the BMCs' password (its first line)")
	timeout := fs.Duration("timeout", 5*time.Second, "each BMC request's `DURATION` before it is sent again")
	retries := fs.Int("retries", 2, "times a request is sent again before the BMC counts as not answering")
	suite := fs.Int("cipher-suite", 0, "RMCP+ cipher suite `ID` (3 or 17); 0 tries 17, then 3")
	persistent := fs.Bool("persistent", false, "bootdev: for every boot, not only the next")
	efi := fs.Bool("efi", false, "bootdev: for UEFI firmware")
	legacy := fs.Bool("legacy", false, "bootdev: for legacy BIOS firmware (without --efi or --legacy, Redfish BMCs keep the firmware's mode; IPMI has no such choice and says legacy, as ipmitool does)")
	caFile := fs.String("bmc-ca-file", "", "Redfish: verify the BMCs' certificates against the authorities in this PEM `FILE` (without it, any certificate is taken, as BMCs ship self-signed ones)")
	parallel := fs.Int("parallel", 64, "BMCs driven at once")
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, powerUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("want herd power status|on|off|cycle|reset|bootdev ... (see herd power --help)")
	}
	verb, rest := rest[0], rest[1:]
	var dev bmc.Device
	switch verb {
	case "status", "on", "off", "cycle", "reset":
	case "bootdev":
		if len(rest) == 0 || (rest[0] != "pxe" && rest[0] != "disk") {
			return usagef("want herd power bootdev pxe|disk NODE...|all")
		}
		dev, rest = bmc.Device(rest[0]), rest[1:]
	default:
		return usagef("unknown power action %q: want status, on, off, cycle, reset or bootdev", verb)
	}
	if len(rest) == 0 {
		return usagef("no node: name them, or all")
	}
	if *parallel < 1 {
		return usagef("--parallel %d: want at least 1", *parallel)
	}
	inv, err := inventory.ParseFile(*invPath)
	if err != nil {
		return usageError{err}
	}
	nodes, err := powerNodes(inv, rest)
	if err != nil {
		return err
	}
	password, err := bmcPassword(env, *pwFile)
	if err != nil {
		return err
	}
	if *efi && *legacy {
		return usagef("--efi and --legacy: give one")
	}
	mode := bmc.ModeKeep
	if *efi {
		mode = bmc.ModeUEFI
	} else if *legacy {
		mode = bmc.ModeLegacy
	}
	opts := bmc.Options{Timeout: *timeout, Retries: *retries, CipherSuite: *suite}
	if opts.TLSRoots, err = bmcRoots(*caFile); err != nil {
		return err
	}
	all := len(rest) == 1 && rest[0] == "all"
	results := make([]string, len(nodes))
	failed := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, *parallel)
	for i, n := range nodes {
		if n.BMC == "" {
			results[i] = n.Name + ": no bmc= in the inventory: its power is yours"
			if !all {
				failed++
			}
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			msg, err := powerOne(ctx, n, password, opts, verb, dev, mode, *persistent)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				results[i] = n.Name + ": failed: " + err.Error()
				return
			}
			results[i] = n.Name + ": " + msg
		})
	}
	wg.Wait()
	for _, r := range results {
		fmt.Fprintln(env.Stdout, r)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d node(s) failed", failed, len(nodes))
	}
	return nil
}

// refusePasswordArgs refuses a BMC password given on the command line
// (--password, --bmc-password, and with short -P): ps shows it.
func refusePasswordArgs(args []string, short bool) error {
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if name == "--password" || name == "--bmc-password" || short && strings.HasPrefix(name, "-P") {
			return usagef("%s: a password on the command line is visible to every user of this host (ps, /proc): put it in a file readable only by you and give --bmc-password-file FILE, or set $%s", name, powerPasswordEnv)
		}
	}
	return nil
}

// powerNodes are the inventory nodes named (in inventory order for all).
func powerNodes(inv *inventory.Inventory, names []string) ([]inventory.Node, error) {
	if len(names) == 1 && names[0] == "all" {
		if len(inv.Nodes) == 0 {
			return nil, usagef("inventory %s lists no node", inv.File)
		}
		return inv.Nodes, nil
	}
	var out []inventory.Node
	for _, name := range names {
		n, ok := inv.ByName(name)
		if !ok {
			return nil, usagef("no node %q in inventory %s", name, inv.File)
		}
		if !slices.ContainsFunc(out, func(o inventory.Node) bool { return o.Name == n.Name }) {
			out = append(out, n)
		}
	}
	return out, nil
}

// bmcPassword reads the password from file (its first line), else the
// environment.
func bmcPassword(env Env, file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("--bmc-password-file: %v", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimSuffix(pw, "\r")
		if pw == "" {
			return "", usagef("--bmc-password-file %s: the first line is empty", file)
		}
		return pw, nil
	}
	if env.Getenv != nil {
		if pw := env.Getenv(powerPasswordEnv); pw != "" {
			return pw, nil
		}
	}
	return "", usagef("no BMC password: give --bmc-password-file FILE or set $%s", powerPasswordEnv)
}

// powerOne does verb on node n's BMC and says what it found or did.
func powerOne(ctx context.Context, n inventory.Node, password string, o bmc.Options, verb string, dev bmc.Device, mode bmc.Mode, persistent bool) (string, error) {
	var msg string
	err := withBMC(ctx, n, password, o, func(c bmc.Controller) (err error) {
		msg, err = powerVerb(ctx, c, verb, dev, mode, persistent)
		return err
	})
	return msg, err
}

// powerVerb does verb on a BMC session.
func powerVerb(ctx context.Context, c bmc.Controller, verb string, dev bmc.Device, mode bmc.Mode, persistent bool) (string, error) {
	switch verb {
	case "status":
		on, err := c.PowerOn(ctx)
		if err != nil {
			return "", err
		}
		if on {
			return "on", nil
		}
		return "off", nil
	case "bootdev":
		if err := c.BootDevice(ctx, dev, mode, persistent); err != nil {
			return "", err
		}
		when := "next boot"
		if persistent {
			when = "every boot"
		}
		return fmt.Sprintf("boots from %s (%s)", dev, when), nil
	}
	if err := c.Power(ctx, bmc.Action(verb)); err != nil {
		return "", err
	}
	return "power " + verb, nil
}

// bmcPower is campaign.Power over the inventory's BMCs (herd serve
// --power).
type bmcPower struct {
	password string
	opts     bmc.Options
	store    inventory.Store
}

func (p *bmcPower) Has(n inventory.Node) bool { return n.BMC != "" }

// withBMC runs fn on a session with n's BMC.
func withBMC(ctx context.Context, n inventory.Node, password string, o bmc.Options, fn func(bmc.Controller) error) error {
	t, err := bmc.Parse(n.BMC)
	if err != nil {
		return err
	}
	c, err := bmc.Dial(ctx, t, password, o)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return fn(c)
}

// session runs fn on a session with n's BMC.
func (p *bmcPower) session(ctx context.Context, n inventory.Node, fn func(bmc.Controller) error) error {
	return withBMC(ctx, n, p.password, p.opts, fn)
}

// mode is n's firmware mode as its agent last registered it, ModeKeep
// when it never did: the BMC then keeps the firmware's own (Redfish), so
// that a UEFI-only server is not switched to legacy boot.
func (p *bmcPower) mode(n inventory.Node) bmc.Mode {
	if p.store == nil {
		return bmc.ModeKeep
	}
	s, err := p.store.Get(n.Name)
	if err != nil {
		return bmc.ModeKeep
	}
	switch s.Firmware {
	case contract.FirmwareUEFI:
		return bmc.ModeUEFI
	case contract.FirmwareBIOS:
		return bmc.ModeLegacy
	}
	return bmc.ModeKeep
}

// Install sets the next boot to the network and powers n on, or cycles
// it when it is on.
func (p *bmcPower) Install(ctx context.Context, n inventory.Node) error {
	return p.session(ctx, n, func(c bmc.Controller) error {
		if err := c.BootDevice(ctx, bmc.PXE, p.mode(n), false); err != nil {
			return err
		}
		on, err := c.PowerOn(ctx)
		if err != nil {
			return err
		}
		if on {
			return c.Power(ctx, bmc.Cycle)
		}
		return c.Power(ctx, bmc.On)
	})
}

// Cycle sets the next boot to the network again and power-cycles n.
func (p *bmcPower) Cycle(ctx context.Context, n inventory.Node) error {
	return p.session(ctx, n, func(c bmc.Controller) error {
		if err := c.BootDevice(ctx, bmc.PXE, p.mode(n), false); err != nil {
			return err
		}
		return c.Power(ctx, bmc.Cycle)
	})
}

// Disk makes n boot from its disk from now on, in the firmware mode its
// agent registered with.
func (p *bmcPower) Disk(ctx context.Context, n inventory.Node) error {
	return p.session(ctx, n, func(c bmc.Controller) error { return c.BootDevice(ctx, bmc.Disk, p.mode(n), true) })
}

// bmcRoots reads the certificate authorities of --bmc-ca-file; nil
// without one.
func bmcRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("--bmc-ca-file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usagef("--bmc-ca-file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
