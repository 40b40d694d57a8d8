package goldeninit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Identity is what the root stage reports.
type Identity struct {
	// Hostname from /etc/hostname ("" = none).
	Hostname string
	// MachineID from /etc/machine-id ("" = none).
	MachineID string
	// IP is the address the network got ("" = none).
	IP string
}

// BootedLine is the line the root stage prints:
// "herd-booted host=node1 ip=10.0.0.11 machine-id=0123...".
// Missing values print as "none", so the line always has its fields.
func (id Identity) BootedLine() string {
	or := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	return fmt.Sprintf("%s host=%s ip=%s machine-id=%s", BootedPrefix, or(id.Hostname), or(id.IP), or(id.MachineID))
}

// ReadIdentity reads the host name and machine ID of the system at root:
// the first word of /etc/hostname and of /etc/machine-id. A missing file
// leaves its field empty; only other errors are returned.
func ReadIdentity(root string) (Identity, error) {
	var id Identity
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"/etc/hostname", &id.Hostname},
		{"/etc/machine-id", &id.MachineID},
	} {
		b, err := os.ReadFile(root + f.name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return id, fmt.Errorf("read %s: %w", f.name, err)
		}
		if w := strings.Fields(string(b)); len(w) > 0 {
			*f.dst = w[0]
		}
	}
	return id, nil
}

// rootStage reports the system's identity and powers off (Run does).
func rootStage(ctx context.Context, c *console) error {
	start := time.Now()
	if err := mountPseudo(true); err != nil {
		return err
	}
	c.attach()
	id, err := ReadIdentity("")
	if err != nil {
		return err
	}
	if id.Hostname != "" {
		if err := unix.Sethostname([]byte(id.Hostname)); err != nil {
			c.printf("warning: set the host name to %q: %v", id.Hostname, err)
		}
	}
	ip, err := network(ctx, c, "")
	if err != nil {
		c.printf("network: %v", err)
	}
	id.IP = ip
	c.printf("root: up after %v", time.Since(start).Round(time.Millisecond))
	c.line(id.BootedLine())
	return nil
}
