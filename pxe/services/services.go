// Package services runs the management host's boot services together: DHCP
// (or proxyDHCP), TFTP, HTTP and the IPv6 router-advertisement answer, on
// one boot interface, until the context ends. It is what `herd pxe` runs
// and what `herd serve` runs beside the ring session.
package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/bootlayout"
	"github.com/herdproject/herd/pxe/dhcp"
	"github.com/herdproject/herd/pxe/httpboot"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/herdproject/herd/pxe/ra"
	"github.com/herdproject/herd/pxe/tftp"
	"golang.org/x/sync/errgroup"
)

// Config is the boot services' configuration. Zero values are defaults.
type Config struct {
	// Interface is the boot network's interface (required).
	Interface string
	// ServerIP is this host's address on it; invalid = the interface's
	// IPv4 address inside the inventory's subnet.
	ServerIP netip.Addr
	// Inventory and Store: the nodes and their boot state.
	Inventory *inventory.Inventory
	Store     inventory.Store
	// BootDir is the boot tree served by TFTP and under /files/ by HTTP.
	BootDir string
	// HTTPPort (0 = 8080) and TFTPPort (0 = 69).
	HTTPPort, TFTPPort int
	// Proxy runs proxyDHCP: boot information only, never an address.
	Proxy bool
	// NoDHCP leaves DHCP to someone else entirely (TFTP and HTTP only).
	NoDHCP bool
	// NoRA skips the IPv6 router-advertisement answer.
	NoRA bool
	// UsePxelinux hands BIOS clients pxelinux.0 instead of iPXE.
	UsePxelinux bool
	// UEFIFile is the boot file for UEFI PXE firmware, under BootDir; ""
	// means bootlayout.UEFISNP.
	UEFIFile string
	// KernelArgs are added to the install boot's kernel command line.
	KernelArgs string
	// Plans are the install plans served to the agents (see
	// httpboot.Config.Plans).
	Plans map[string]httpboot.ServedPlan
	// Ring is what registering agents are told about the transfer ring:
	// the ports the sender uses (0 = dolly's defaults) and where it runs
	// ("" = ServerIP). herd serve passes its --data-port, --control-port
	// and --report-port here, so agents listen where the sender dials.
	Ring contract.Ring
	// Metrics serves GET /metrics (see httpboot.Config.Metrics).
	Metrics http.Handler
	// Log receives the services' records; nil discards them.
	Log *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Interface == "" {
		return errors.New("no boot interface: give --interface")
	}
	if c.Inventory == nil || c.Store == nil {
		return errors.New("services: inventory and store are required")
	}
	if c.HTTPPort == 0 {
		c.HTTPPort = 8080
	}
	if c.TFTPPort == 0 {
		c.TFTPPort = 69
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if !c.ServerIP.IsValid() {
		ip, err := InterfaceAddr(c.Interface, c.Inventory.Subnet)
		if err != nil {
			return err
		}
		c.ServerIP = ip
	}
	return nil
}

// InterfaceAddr returns the interface's IPv4 address inside subnet (any
// IPv4 address when subnet is invalid).
func InterfaceAddr(name string, subnet netip.Prefix) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("boot interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is4() {
			continue
		}
		if !subnet.IsValid() || subnet.Contains(p.Addr()) {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address in %s: give it one (ip addr add ...) or fix the inventory's subnet", name, subnet)
}

// BaseURL is how nodes reach the HTTP service.
func (c *Config) BaseURL() string {
	return "http://" + net.JoinHostPort(c.ServerIP.String(), strconv.Itoa(c.HTTPPort))
}

// Run serves until ctx ends; the first service that fails stops the
// others and its error is returned.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	if err := bootlayout.Prepare(cfg.BootDir, func(m string) { cfg.Log.Warn(m) }); err != nil {
		return err
	}
	h, err := httpboot.New(httpboot.Config{
		Root: cfg.BootDir, Inventory: cfg.Inventory, Store: cfg.Store,
		BaseURL: cfg.BaseURL(), KernelArgs: cfg.KernelArgs, Log: cfg.Log, Plans: cfg.Plans, Ring: cfg.Ring, Metrics: cfg.Metrics,
		Initrd: bootlayout.Initramfs(cfg.BootDir),
	})
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	httpAddr := net.JoinHostPort(cfg.ServerIP.String(), strconv.Itoa(cfg.HTTPPort))
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("http on %s: %w (is another web server there? choose --http-port)", httpAddr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	seen := newSightings(cfg.Inventory, cfg.Store)
	ts, err := tftp.New(tftp.Config{
		Addr: net.JoinHostPort(cfg.ServerIP.String(), strconv.Itoa(cfg.TFTPPort)), Root: cfg.BootDir, Log: cfg.Log,
		Generate: h.PxelinuxFile, // pxelinux.cfg/01-<mac> from the node's boot state
		Observe:  seen.tftp,
	})
	if err != nil {
		ln.Close()
		return err
	}
	var ds *dhcp.Server
	if !cfg.NoDHCP {
		ds, err = dhcp.New(dhcp.Config{
			Interface: cfg.Interface, ServerIP: cfg.ServerIP, Inventory: cfg.Inventory,
			Proxy: cfg.Proxy, HTTPBase: cfg.BaseURL(), Log: cfg.Log,
			BootFiles: dhcp.BootFiles{UsePxelinux: cfg.UsePxelinux, UEFI: cfg.UEFIFile},
			Observe:   seen.dhcp,
		})
		if err != nil {
			ln.Close()
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { seen.run(ctx); return nil })
	g.Go(func() error { h.RecordRates(ctx); return nil })
	g.Go(func() error {
		cfg.Log.Debug(fmt.Sprintf("http: serving %s (boot scripts, files, API, status page)", cfg.BaseURL()))
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	g.Go(func() error { return ts.Serve(ctx) })
	if ds != nil {
		g.Go(func() error { return ds.Serve(ctx) })
	}
	if !cfg.NoRA {
		g.Go(func() error { return ra.Serve(ctx, cfg.Interface, cfg.Log) })
	}
	return g.Wait()
}

// sightings records in the store when DHCP and TFTP see an inventory
// node (Status.Seen, SeenBy, and the step that means: nodestate.Sighted).
// The servers' hooks run on their read loops: they only queue; one
// goroutine writes, and drops sightings when it falls behind rather than
// slow the servers down.
type sightings struct {
	inv   *inventory.Inventory
	store inventory.Store
	queue chan sighting
}

type sighting struct {
	name, by string
	firmware bool // PXE firmware or boot loader (nodestate.Sighted)
	at       time.Time
}

func newSightings(inv *inventory.Inventory, st inventory.Store) *sightings {
	return &sightings{inv: inv, store: st, queue: make(chan sighting, 256)}
}

func (s *sightings) add(name, by string, firmware bool) {
	select {
	case s.queue <- sighting{name, by, firmware, time.Now()}:
	default:
	}
}

// dhcp is dhcp.Config.Observe: a DISCOVER or REQUEST from mac.
func (s *sightings) dhcp(mac net.HardwareAddr, kind dhcp.ClientKind) {
	if n, ok := s.inv.ByMAC(mac); ok {
		s.add(n.Name, "dhcp "+kind.String(), kind != dhcp.NotPXE)
	}
}

// tftp is tftp.Config.Observe: a read request for file from remote.
func (s *sightings) tftp(remote net.Addr, file string) {
	ua, ok := remote.(*net.UDPAddr)
	if !ok {
		return
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return
	}
	if n, ok := s.inv.ByIP(ip.Unmap().String()); ok {
		s.add(n.Name, "tftp "+file, true)
	}
}

// run writes the sightings until ctx ends.
func (s *sightings) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-s.queue:
			_ = s.store.Update(v.name, func(st *inventory.Status) error {
				nodestate.Sighted(st, v.by, v.firmware, v.at)
				return nil
			})
		}
	}
}
