package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// ipmiController is an RMCP+ session (IPMI 2.0 over LAN).
type ipmiController struct {
	t Target
	c *client.Client
}

func dialIPMI(ctx context.Context, t Target, password string, o Options) (*ipmiController, error) {
	c, err := client.NewClient(t.Host, t.Port, t.User, password)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	c.WithInterface(client.InterfaceLanplus).WithTimeout(o.Timeout).WithRetry(o.Retries)
	if o.CipherSuite > 0 {
		c.WithCipherSuiteID(types.CipherSuiteID(o.CipherSuite))
	} else {
		// 17 (SHA-256), then 3 (SHA-1), as ipmitool prefers: a BMC that
		// lacks one refuses it at once, where asking which it has (Get
		// Channel Cipher Suites) costs every retry's timeout on BMCs that
		// do not answer that (15s against OpenIPMI's ipmi_sim).
		c.WithCipherSuiteID(types.CipherSuiteID17, types.CipherSuiteID3)
	}
	// A bound of its own on the whole handshake, as go-ipmi retries per
	// request.
	cctx, cancel := context.WithTimeout(ctx, time.Duration(o.Retries+1)*o.Timeout*4)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		return nil, fmt.Errorf("%s: %w", t, explain(err))
	}
	return &ipmiController{t: t, c: c}, nil
}

// explain adds what to do to go-ipmi's errors where it is clear. They are
// told by their text where go-ipmi v0.9.1 wraps no typed error (its
// timeout, "no datagram matched before deadline", is unexported, and a
// refused password comes inside a formatted list of per-suite errors).
func explain(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, client.ErrRAKPAuthentication), strings.Contains(err.Error(), client.ErrRAKPAuthentication.Error()):
		return fmt.Errorf("refused the user or password: %w (check the inventory's user and the password file)", err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout(), strings.Contains(err.Error(), "before deadline"):
		return fmt.Errorf("no answer: %w (is the BMC's address and port right, and IPMI over LAN enabled on it?)", err)
	}
	return err
}

func (i *ipmiController) PowerOn(ctx context.Context) (bool, error) {
	st, err := i.c.GetChassisStatus(ctx)
	if err != nil {
		return false, fmt.Errorf("%s: chassis status: %w", i.t, explain(err))
	}
	return st.PowerIsOn, nil
}

func (i *ipmiController) Power(ctx context.Context, a Action) error {
	var ctl chassis.ChassisControl
	switch a {
	case On:
		ctl = chassis.ChassisControlPowerUp
	case Off:
		ctl = chassis.ChassisControlPowerDown
	case Cycle:
		ctl = chassis.ChassisControlPowerCycle
	case Reset:
		ctl = chassis.ChassisControlHardReset
	default:
		return fmt.Errorf("%s: unknown power action %q", i.t, a)
	}
	if _, err := i.c.ChassisControl(ctx, ctl); err != nil {
		return fmt.Errorf("%s: power %s: %w", i.t, a, explain(err))
	}
	return nil
}

func (i *ipmiController) BootDevice(ctx context.Context, d Device, m Mode, persist bool) error {
	var sel types.BootDeviceSelector
	switch d {
	case PXE:
		sel = types.BootDeviceSelectorForcePXE
	case Disk:
		sel = types.BootDeviceSelectorForceHardDrive
	default:
		return fmt.Errorf("%s: unknown boot device %q", i.t, d)
	}
	bt := types.BIOSBootTypeLegacy
	if m == ModeUEFI {
		bt = types.BIOSBootTypeEFI
	}
	if err := i.c.SetBootDevice(ctx, sel, bt, persist); err != nil {
		return fmt.Errorf("%s: boot device %s: %w", i.t, d, explain(err))
	}
	return nil
}

func (i *ipmiController) Close(ctx context.Context) error { return i.c.Close(ctx) }
