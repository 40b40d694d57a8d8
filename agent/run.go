package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/wire"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Version is the agent's version, sent at registration.
var Version = "0.1.0"

type agent struct {
	cfg  Config
	con  *console
	id   Identity
	ring contract.Ring

	files       []wire.SetupFile
	verdict     *wire.Verdict
	kexecLoaded bool
	// mounts are the stage2 mount points, unmounted at the end of a
	// plain-process run.
	mounts []string
	// plan is the node's install plan; nil = none (the session's files
	// are written as they are).
	plan *planState
}

// ErrNoServer is the agent's "Can't reach a valid herd server": every try
// timed out.
var ErrNoServer = errors.New("can't reach a valid herd server")

func (a *agent) run(ctx context.Context) error {
	if a.cfg.AsInit {
		if err := a.con.step("mount pseudo-filesystems", mountPseudo); err != nil {
			return a.fail(ctx, err)
		}
		if err := a.con.step("load modules for the present hardware", func() error { return a.loadModules(ctx) }); err != nil {
			a.con.printf("warning: %v", err)
		}
	}
	if err := a.con.step("network (DHCP)", func() error { return a.network(ctx) }); err != nil {
		return a.fail(ctx, err)
	}
	if err := a.waitSession("fetch the install plan", "", func() error { return a.fetchPlan(ctx) }); err != nil {
		return a.fail(ctx, err)
	}
	if a.plan != nil {
		for i, s := range a.plan.plan.Pre {
			what := fmt.Sprintf("%%pre (line %d)", s.Line)
			err := a.con.step(fmt.Sprintf("%s, %d of %d", what, i+1, len(a.plan.plan.Pre)), func() error {
				_, err := a.runScript(ctx, what, s, "", "")
				return err
			})
			if err != nil {
				return a.fail(ctx, err)
			}
		}
		if len(a.plan.plan.Parts) > 0 {
			if err := a.con.step("prepare the disks (plan "+a.plan.name+")", func() error { return a.prepareDisks(ctx) }); err != nil {
				return a.fail(ctx, err)
			}
		}
	}
	err := a.waitSession("register and wait for the session", "", func() error {
		if err := a.register(ctx); err != nil {
			return err
		}
		return a.receive(ctx, nil)
	})
	if err != nil {
		return a.fail(ctx, err)
	}
	if slices.ContainsFunc(a.files, isStage2) {
		if err := a.con.step("mount the stage2", func() error { return a.mountStage2(ctx) }); err != nil {
			return a.fail(ctx, err)
		}
		if !slices.ContainsFunc(a.files, func(f wire.SetupFile) bool { return !isStage2(f) }) {
			// A session of stage2 files only: the install session follows.
			err := a.waitSession("wait for the install session", "no install session after the stage2: ", func() error {
				a.verdict = nil
				// Listening: tell herd serve the stage2 is in place.
				return a.receive(ctx, func() {
					if err := a.report(ctx, contract.StateInstalling, "", "stage2 mounted; waiting for the install session"); err != nil {
						a.con.printf("warning: report: %v", err)
					}
				})
			})
			if err != nil {
				return a.fail(ctx, err)
			}
		}
	}
	msg := "installed and verified"
	if a.plan != nil && len(a.plan.fs) > 0 {
		if err := a.installPlan(ctx); err != nil {
			return a.fail(ctx, err)
		}
		msg = "installed by plan " + a.plan.name + " and verified"
		if a.plan.postOutput != "" {
			msg += "; %post output:\n" + a.plan.postOutput
		}
	} else {
		if err := a.con.step("customize the installed system", a.customize); err != nil {
			return a.fail(ctx, err)
		}
		if a.uefiBoot() {
			if err := a.con.step("UEFI boot entry for the installed disk", func() error { return a.uefiDiskBoot(ctx) }); err != nil {
				return a.fail(ctx, err)
			}
		}
	}
	_ = a.con.step("report done", func() error { return a.report(ctx, contract.StateDone, "", msg) })
	return a.finish(ctx, nil)
}

// waitSession runs fn as the step name, again while no herd server answers
// (registration failed, or no sender came within herd.timeout), at most
// herd.retries times as dolly's clients did; then it prints "Can't reach a
// valid herd server" and returns ErrNoServer, its message prefixed by what.
func (a *agent) waitSession(name, what string, fn func() error) error {
	s := a.cfg.Settings
	tries := max(s.Retries, 1)
	var err error
	for try := 1; try <= tries; try++ {
		err = a.con.step(fmt.Sprintf("%s (try %d of %d, %v)", name, try, tries, s.Timeout), fn)
		if !errors.Is(err, relay.ErrNoSender) && !errors.Is(err, errRegister) {
			return err
		}
	}
	a.con.printf("Can't reach a valid herd server (%d tries of %v)", tries, s.Timeout)
	return fmt.Errorf("%w: %s%v", ErrNoServer, what, err)
}

// fail reports the failure (when the server is known) and ends the run.
func (a *agent) fail(ctx context.Context, err error) error {
	if a.plan != nil && len(a.plan.mounted) > 0 {
		if uerr := a.plan.unmountTarget(); uerr != nil {
			a.con.printf("warning: %v", uerr)
		}
	}
	if a.id.Server != "" && a.id.MAC != nil {
		_ = a.report(ctx, contract.StateFailed, err.Error(), "")
	}
	return a.finish(ctx, err)
}

// finish reboots (or kexecs) when the agent is init; otherwise returns.
func (a *agent) finish(ctx context.Context, err error) error {
	if !a.cfg.AsInit {
		for i := len(a.mounts) - 1; i >= 0; i-- {
			if uerr := unix.Unmount(a.mounts[i], 0); uerr != nil {
				a.con.printf("warning: unmount the stage2 at %s: %v", a.mounts[i], uerr)
			}
		}
	}
	if !a.cfg.AsInit || a.cfg.NoReboot {
		return err
	}
	if err != nil && a.cfg.Settings.Debug {
		a.con.printf("herd.debug: the failure was: %v", err)
		a.con.printf("herd.debug: rescue shell (gosh); 'reboot' or power off when done")
		// The agent owns the console session: replace it with the shell,
		// or the console hangs up when the agent exits.
		return rescueShell()
	}
	if err == nil && (a.cfg.Settings.Kexec || a.plan != nil && a.plan.plan.Kexec) {
		kerr := a.con.step("kexec into the installed kernel", func() error { drainConsole(a.cfg.Console); return a.kexec() })
		if kerr == nil {
			return nil
		}
	}
	if err == nil && a.plan != nil && a.plan.plan.Finish != "reboot" {
		// The plan's poweroff or halt.
		cmd := map[string]int{"poweroff": unix.LINUX_REBOOT_CMD_POWER_OFF, "halt": unix.LINUX_REBOOT_CMD_HALT}[a.plan.plan.Finish]
		if cmd != 0 {
			_ = a.con.step(a.plan.plan.Finish, func() error { drainConsole(a.cfg.Console); unix.Sync(); return unix.Reboot(cmd) })
		}
	}
	_ = a.con.step("reboot", func() error { drainConsole(a.cfg.Console); return reboot() })
	return err
}

// network picks the boot interface, brings it up, runs DHCP and applies
// the lease.
func (a *agent) network(ctx context.Context) error {
	ifi, err := a.bootInterface(ctx)
	if err != nil {
		return err
	}
	link, err := netlink.LinkByName(ifi.Name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifi.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", ifi.Name, err)
	}
	a.con.printf("boot interface %s (%s)", ifi.Name, ifi.HardwareAddr)
	c, err := nclient4.New(ifi.Name, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(5))
	if err != nil {
		return fmt.Errorf("DHCP client on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	lease, err := c.Request(dctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("herd-agent")))
	if err != nil {
		return fmt.Errorf("DHCP on %s: %w (is herd serve or a DHCP server answering on this network?)", ifi.Name, err)
	}
	ack := lease.ACK
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	ones, _ := ack.SubnetMask().Size()
	if ones == 0 {
		ones = 24
	}
	a.id = Identity{Interface: ifi.Name, MAC: ifi.HardwareAddr, Addr: netip.PrefixFrom(ip, ones), Hostname: ack.HostName(), Domain: ack.DomainName()}
	if r := ack.Router(); len(r) > 0 {
		a.id.Gateway, _ = netip.AddrFromSlice(r[0].To4())
	}
	for _, d := range ack.DNS() {
		if x, ok := netip.AddrFromSlice(d.To4()); ok {
			a.id.DNS = append(a.id.DNS, x)
		}
	}
	a.id.NextServer, _ = netip.AddrFromSlice(ack.ServerIPAddr.To4())
	addr, err := netlink.ParseAddr(a.id.Addr.String())
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", a.id.Addr, ifi.Name, err)
	}
	if a.id.Gateway.IsValid() {
		gw := net.IP(a.id.Gateway.AsSlice())
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			a.con.printf("warning: default route via %s: %v", a.id.Gateway, err)
		}
	}
	a.id.Server = a.serverURL()
	a.con.printf("address %s, hostname %q, domain %q, next-server %s, herd server %s", a.id.Addr, a.id.Hostname, a.id.Domain, a.id.NextServer, a.id.Server)
	if a.id.Server == "" {
		return errors.New("no herd server: give herd.server= or herd.url= on the kernel command line, or have DHCP send next-server")
	}
	return nil
}

// serverURL is the management host's base URL: herd.url=, herd.server=,
// then DHCP's next-server on port 8080.
func (a *agent) serverURL() string {
	s := a.cfg.Settings
	for _, u := range []string{s.URL, s.Server} {
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			if _, _, err := net.SplitHostPort(u); err != nil {
				u = net.JoinHostPort(u, "8080")
			}
			u = "http://" + u
		}
		return strings.TrimRight(u, "/")
	}
	if a.id.NextServer.IsValid() && !a.id.NextServer.IsUnspecified() {
		return "http://" + net.JoinHostPort(a.id.NextServer.String(), "8080")
	}
	return ""
}

// bootInterface is herd.if=, else the one whose MAC is BOOTIF= (or
// herd.mac=), else the first non-loopback interface with a carrier; it
// waits up to 30 s for one to appear.
func (a *agent) bootInterface(ctx context.Context) (*net.Interface, error) {
	s := a.cfg.Settings
	name := a.cfg.Interface
	if name == "" {
		name = s.Interface
	}
	want := s.BootIF
	if want == nil {
		want = s.MAC
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, err
		}
		// A link only reports a carrier once it is up: bring every
		// Ethernet interface up before looking.
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagUp == 0 {
				if l, err := netlink.LinkByName(ifi.Name); err == nil {
					_ = netlink.LinkSetUp(l)
				}
			}
		}
		for i := range ifs {
			ifi := &ifs[i]
			switch {
			case name != "":
				if ifi.Name == name {
					return ifi, nil
				}
			case want != nil:
				if bytes.Equal(ifi.HardwareAddr, want) {
					return ifi, nil
				}
			case ifi.Flags&net.FlagLoopback == 0 && len(ifi.HardwareAddr) == 6 && hasCarrier(ifi.Name):
				return ifi, nil
			}
		}
		if time.Now().After(deadline) {
			what := "an interface with a link"
			switch {
			case name != "":
				what = "interface " + name
			case want != nil:
				what = "an interface with MAC " + want.String()
			}
			return nil, fmt.Errorf("no %s after 30s%s", what, a.pciHint())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var errRegister = errors.New("registration failed")

// register tells the management host this node is up and learns its name
// and the ring's ports.
func (a *agent) register(ctx context.Context) error {
	req := contract.RegisterRequest{MAC: a.id.MAC.String(), IP: a.id.Addr.Addr().String(), AgentVersion: Version}
	if a.cfg.AsInit {
		req.Firmware = contract.FirmwareBIOS
		if a.uefiBoot() {
			req.Firmware = contract.FirmwareUEFI
		}
	}
	var resp contract.RegisterResponse
	if err := a.post(ctx, contract.PathRegister, req, &resp); err != nil {
		return fmt.Errorf("%w: %v", errRegister, err)
	}
	a.id.Name, a.ring = resp.Name, resp.Ring
	if resp.Name != "" && a.id.Hostname == "" {
		a.id.Hostname = resp.Name
	}
	a.con.printf("registered as %s (plan %q)", resp.Name, resp.Plan)
	a.con.printf("ring: sender %s, ports data %d, control %d, report %d; window %s, %s chunks", resp.Ring.Server,
		resp.Ring.DataPort, resp.Ring.ControlPort, resp.Ring.ReportPort, orDefault(resp.Ring.Window, "default", mib), orDefault(resp.Ring.Chunks, "default", strconv.Itoa))
	return nil
}

func (a *agent) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, a.id.Server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(res.Body).Decode(&e)
		return fmt.Errorf("%s %s: %s: %s", http.MethodPost, a.id.Server+path, res.Status, e.Error)
	}
	if out != nil {
		return json.NewDecoder(res.Body).Decode(out)
	}
	return nil
}

// receive is one ring session as a node, listening on the lease address.
// listening, when set, runs once the node listens for the sender.
func (a *agent) receive(ctx context.Context, listening func()) error {
	cfg := relay.Config{
		ListenAddr: a.id.Addr.Addr().String(),
		DataPort:   a.ring.DataPort, ControlPort: a.ring.ControlPort, ReportPort: a.ring.ReportPort,
		Window: capWindow(a.ring.Window, a.con), PoolChunks: a.ring.Chunks,
		Once: true, WaitTimeout: a.cfg.Settings.Timeout, Verbose: true, Log: logging.New(a.cfg.Console, "", slog.LevelInfo, logging.Plain),
		Finished: func(files []wire.SetupFile, v wire.Verdict) { a.files, a.verdict = files, &v },
		Prepare: func(f *wire.SetupFile) error {
			if f.Mount != "" || ramIndex(f.Output) >= 0 || a.plan == nil {
				return a.prepare(f)
			}
			return a.prepareImage(f)
		},
		Key:   wire.Key(a.cfg.Settings.Key),
		Allow: a.cfg.Settings.Allow,
	}
	n, err := relay.Listen(cfg)
	if err != nil {
		return err
	}
	if listening != nil {
		listening()
	}
	if err := n.Serve(ctx); err != nil {
		return err
	}
	if a.verdict == nil {
		return errors.New("the session ended without a verdict")
	}
	return nil
}

// report tells the management host how the install ended. A done node
// is rebooting next, and has written all of its files (Total); the
// server keeps a failed node's step, where it failed.
func (a *agent) report(ctx context.Context, st contract.State, reason, msg string) error {
	var bytes int64
	if a.verdict != nil {
		for _, f := range a.verdict.Files {
			bytes += f.Bytes
		}
	}
	req := contract.ReportRequest{MAC: a.id.MAC.String(), State: st, Bytes: bytes, Reason: reason, Message: msg}
	if st == contract.StateDone {
		req.Step, req.Total = contract.StepRebooting, bytes
	}
	return a.post(ctx, contract.PathReport, req, nil)
}

// orDefault is f(n), or dflt for 0.
func orDefault(n int, dflt string, f func(int) string) string {
	if n == 0 {
		return dflt
	}
	return f(n)
}

// mib formats bytes in MiB.
func mib(n int) string { return fmt.Sprintf("%d MiB", n>>20) }

// capWindow keeps the bypass window herd serve asks for within an eighth
// of this node's RAM: the agent runs from RAM, and may hold a stage2 there.
func capWindow(w int, con *console) int {
	var si unix.Sysinfo_t
	if w <= 0 || unix.Sysinfo(&si) != nil {
		return w
	}
	limit := int(uint64(si.Totalram) * uint64(si.Unit) / 8)
	if limit > 0 && w > limit {
		con.printf("ring: window %s capped to %s, an eighth of this node's RAM", mib(w), mib(limit))
		return limit
	}
	return w
}
