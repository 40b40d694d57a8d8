package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// CommandTimeout bounds every ip and tc command the lab runs.
const CommandTimeout = 30 * time.Second

// subnetPrefix is the lab's address plan: host k (0 the sender) is
// 10.252.0.(10+k)/24 on its eth0. The addresses exist only inside the
// lab's namespaces, which have no route out.
const subnetPrefix = "10.252.0."

// Lab is a switched network of hosts built from network namespaces: a
// "switch" namespace holding a bridge, and one namespace per host, each
// joined to the bridge by a veth pair (eth0 in the host, pK in the
// switch). IPv6 is off everywhere and no namespace has a route out, so
// traffic stays between the lab's hosts. Close removes all of it.
type Lab struct {
	// Prefix names the namespaces: Prefix-sw, Prefix-h0, Prefix-h1, ...
	Prefix string
	hosts  int
	rate   int64 // bits per second on every port; 0 unlimited
}

// Available reports why the lab cannot be built here (not root, no ip or
// tc), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark lab needs root (network namespaces, tc, tmpfs mounts)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install iproute2", tool)
		}
	}
	return nil
}

// NewLab builds a lab of hosts namespaces (host 0 is the sender) named
// after prefix. On error it removes what it built.
func NewLab(ctx context.Context, prefix string, hosts int) (lab *Lab, err error) {
	if hosts < 2 || hosts > 200 {
		return nil, fmt.Errorf("lab of %d hosts: want 2..200", hosts)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, hosts: hosts}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	sw := l.switchNS()
	if err := l.addNS(ctx, sw); err != nil {
		return nil, err
	}
	if err := ipIn(ctx, sw, "link", "add", "br0", "type", "bridge", "forward_delay", "0"); err != nil {
		return nil, err
	}
	if err := ipIn(ctx, sw, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for k := 0; k < hosts; k++ {
		h := l.Host(k)
		if err := l.addNS(ctx, h); err != nil {
			return nil, err
		}
		port := fmt.Sprintf("p%d", k)
		// Made in the switch, then one end moved into the host.
		if err := ipIn(ctx, sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h); err != nil {
			return nil, err
		}
		for _, args := range [][]string{
			{"-n", sw, "link", "set", port, "master", "br0"},
			{"-n", sw, "link", "set", port, "up"},
			{"-n", h, "addr", "add", l.Addr(k) + "/24", "dev", "eth0"},
			{"-n", h, "link", "set", "eth0", "up"},
		} {
			if err := run(ctx, "ip", args...); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// addNS creates namespace name with loopback up and IPv6 off.
func (l *Lab) addNS(ctx context.Context, name string) error {
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	if err := ipIn(ctx, name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	for _, key := range []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"} {
		if err := run(ctx, "ip", "netns", "exec", name, "sysctl", "-q", "-w", key); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) switchNS() string { return l.Prefix + "-sw" }

// Host is the namespace of host k (0: the sender).
func (l *Lab) Host(k int) string { return fmt.Sprintf("%s-h%d", l.Prefix, k) }

// Addr is host k's address.
func (l *Lab) Addr(k int) string { return fmt.Sprintf("%s%d", subnetPrefix, 10+k) }

// Hosts is the number of hosts, the sender included.
func (l *Lab) Hosts() int { return l.hosts }

// Rate is the current port rate in bits per second, 0 when unlimited.
func (l *Lab) Rate() int64 { return l.rate }

// SetRate shapes both directions of every port to bps bits per second
// with a token bucket (tbf), emulating a full-duplex switched port: the
// host's eth0 (what it sends) and the switch's port (what it receives).
// 0 removes the shaping. The bucket holds 256 KiB, more than one
// TSO/GSO super-packet, so the kernel never splits packets to shape them.
func (l *Lab) SetRate(ctx context.Context, bps int64) error {
	for k := 0; k < l.hosts; k++ {
		for _, dev := range []struct{ ns, name string }{{l.Host(k), "eth0"}, {l.switchNS(), fmt.Sprintf("p%d", k)}} {
			if bps == 0 {
				if l.rate != 0 {
					if err := run(ctx, "tc", "-n", dev.ns, "qdisc", "del", "dev", dev.name, "root"); err != nil {
						return err
					}
				}
				continue
			}
			if err := run(ctx, "tc", "-n", dev.ns, "qdisc", "replace", "dev", dev.name, "root",
				"tbf", "rate", fmt.Sprintf("%dbit", bps), "burst", "256kb", "latency", "100ms"); err != nil {
				return err
			}
		}
	}
	l.rate = bps
	return nil
}

// SetGRO turns generic receive offload on or off on both ends of every
// port, as a NIC does it: small packets are merged before the stack sees
// them (veth needs ethtool and a kernel of 5.13 or later for this).
func (l *Lab) SetGRO(ctx context.Context, on bool) error {
	state := "off"
	if on {
		state = "on"
	}
	for k := 0; k < l.hosts; k++ {
		for _, dev := range []struct{ ns, name string }{{l.Host(k), "eth0"}, {l.switchNS(), fmt.Sprintf("p%d", k)}} {
			if err := run(ctx, "ip", "netns", "exec", dev.ns, "ethtool", "-K", dev.name, "gro", state); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close deletes every namespace of the lab (and so its veths and
// qdiscs). Processes must have ended before: a namespace with a process
// inside lives on unnamed.
func (l *Lab) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*CommandTimeout)
	defer cancel()
	for k := l.hosts - 1; k >= 0; k-- {
		_ = run(ctx, "ip", "netns", "del", l.Host(k))
	}
	_ = run(ctx, "ip", "netns", "del", l.switchNS())
}

// Command returns a command that runs name inside host k's namespace.
// "ip netns exec" gives it a mount namespace of its own as well, so what
// it mounts stays its own.
func (l *Lab) Command(ctx context.Context, k int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Host(k), name}, args...)...)
}

func ipIn(ctx context.Context, ns string, args ...string) error {
	return run(ctx, "ip", append([]string{"-n", ns}, args...)...)
}

// run runs a set-up command bounded by CommandTimeout.
func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
