// Package bmc drives nodes' baseboard management controllers: power
// status, on, off, cycle, reset, and the device of the next boot (network
// or disk). A node's BMC is named by a URL in the inventory:
//
//	bmc=ipmi://USER@HOST[:PORT]      IPMI 2.0 over LAN (RMCP+), port 623
//	bmc=redfish://USER@HOST[:PORT]   Redfish over HTTPS, port 443
//
// The password never appears in the URL (nor on a command line): the
// caller gets it from a file or the environment and passes it to Dial.
//
// IPMI goes through github.com/bougou/go-ipmi (RMCP+ sessions, cipher
// suites, retries): a well-kept implementation of the protocol rather
// than one written here.
//
// Redfish goes through github.com/stmcginnis/gofish, the well-kept Go
// client of the field (its schemas follow DMTF's, and it handles
// sessions, ETags, ActionInfo and vendors' quirks such as PATCHes that
// must go to a settings resource). herd opens a Redfish session (basic
// auth where the service has no session service), drives the one
// computer system of the service's Systems collection (a BMC that manages
// several is refused, naming them), powers it through
// ComputerSystem.Reset with the reset types the system offers, and sets
// the next boot through Boot.BootSourceOverride*. See Options.TLSRoots
// for the BMC's certificate.
package bmc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Target is a parsed BMC URL.
type Target struct {
	// Scheme is "ipmi" or "redfish".
	Scheme string
	User   string
	Host   string
	Port   int
}

// Default ports.
const (
	IPMIPort    = 623
	RedfishPort = 443
)

// ErrPasswordInURL refuses a BMC URL that carries a password.
var ErrPasswordInURL = errors.New("the password does not go in the BMC URL: give it in a file (--bmc-password-file) or $HERD_BMC_PASSWORD")

// Parse reads a BMC URL: ipmi://USER@HOST[:PORT] or
// redfish://USER@HOST[:PORT]. The user is required; a password, a path or
// a query is refused.
func Parse(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("BMC %q: %w", s, err)
	}
	t := Target{Scheme: u.Scheme}
	switch u.Scheme {
	case "ipmi":
		t.Port = IPMIPort
	case "redfish":
		t.Port = RedfishPort
	default:
		return Target{}, fmt.Errorf("BMC %q: want ipmi://USER@HOST or redfish://USER@HOST", s)
	}
	if u.User == nil || u.User.Username() == "" {
		return Target{}, fmt.Errorf("BMC %q: no user: write %s://USER@%s", s, u.Scheme, u.Host)
	}
	if _, ok := u.User.Password(); ok {
		return Target{}, fmt.Errorf("BMC %s://%s@%s: %w", u.Scheme, u.User.Username(), u.Host, ErrPasswordInURL)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Target{}, fmt.Errorf("BMC %q: want only %s://USER@HOST[:PORT]", s, u.Scheme)
	}
	t.User, t.Host = u.User.Username(), u.Hostname()
	if t.Host == "" {
		return Target{}, fmt.Errorf("BMC %q: no host", s)
	}
	if strings.Contains(t.Host, ":") {
		// An IPv6 address, which goes in brackets ("::3" would be host
		// ":" port 3).
		if a, err := netip.ParseAddr(t.Host); err != nil || !strings.HasPrefix(u.Host, "[") || !a.Is6() {
			return Target{}, fmt.Errorf("BMC %q: host %q: write an IPv6 address in brackets, %s://USER@[ADDRESS]:PORT", s, u.Host, u.Scheme)
		}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("BMC %q: port %q: want 1-65535", s, p)
		}
		t.Port = n
	}
	return t, nil
}

// String is the URL (without a password: there is none).
func (t Target) String() string {
	host := t.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := t.Scheme + "://" + t.User + "@" + host
	if (t.Scheme == "ipmi" && t.Port != IPMIPort) || (t.Scheme == "redfish" && t.Port != RedfishPort) {
		s += ":" + strconv.Itoa(t.Port)
	}
	return s
}

// Addr is host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Action is a power action.
type Action string

// Power actions.
const (
	On    Action = "on"
	Off   Action = "off"   // hard power off
	Cycle Action = "cycle" // off, then on
	Reset Action = "reset" // hard reset
)

// Device is a boot device for the next boot.
type Device string

// Boot devices.
const (
	PXE  Device = "pxe"
	Disk Device = "disk"
)

// Mode is the firmware mode a boot device is set for.
type Mode string

// Boot modes.
const (
	// ModeKeep leaves the firmware's mode alone where the protocol can
	// (Redfish: no BootSourceOverrideMode is sent); IPMI has no such
	// choice and sends its "PC compatible" (legacy) flag, as ipmitool
	// does without efiboot.
	ModeKeep   Mode = ""
	ModeUEFI   Mode = "uefi"
	ModeLegacy Mode = "legacy"
)

// Controller is one BMC session.
type Controller interface {
	// PowerOn reports whether the node's power is on.
	PowerOn(ctx context.Context) (bool, error)
	// Power carries out a power action.
	Power(ctx context.Context, a Action) error
	// BootDevice sets the device of the next boot (persist: of every
	// boot), for the firmware mode m.
	BootDevice(ctx context.Context, d Device, m Mode, persist bool) error
	// Close ends the session.
	Close(ctx context.Context) error
}

// Options bound a BMC session.
type Options struct {
	// Timeout bounds each request (default 5s); Retries is how many
	// times a request is sent again before the BMC counts as not
	// answering (default 2). Over Redfish they bound each HTTPS attempt,
	// and a POST (a session, a reset) is never sent twice.
	Timeout time.Duration
	Retries int
	// CipherSuite is the RMCP+ cipher suite (3: HMAC-SHA1 and AES-128,
	// 17: HMAC-SHA256 and AES-128); 0 tries 17, then 3, as ipmitool
	// prefers (asking the BMC which it has costs every retry's timeout
	// on BMCs that do not answer that question).
	CipherSuite int
	// TLSRoots, when set, are the certificate authorities a Redfish
	// BMC's certificate must chain to (and name its host). Nil accepts
	// any certificate: BMCs ship with self-signed ones, and an admin
	// drives them over a management network as ipmitool does, with no
	// certificate at all. Ironic and Metal3 verify by default and let
	// the admin turn it off per node; herd verifies when given the
	// authorities (--bmc-ca-file).
	TLSRoots *x509.CertPool
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 2
	}
	return o
}

// Dial opens a session with the BMC at t.
func Dial(ctx context.Context, t Target, password string, o Options) (Controller, error) {
	o = o.withDefaults()
	switch t.Scheme {
	case "ipmi":
		return dialIPMI(ctx, t, password, o)
	case "redfish":
		return dialRedfish(ctx, t, password, o)
	}
	return nil, fmt.Errorf("%s: unknown BMC scheme %q", t, t.Scheme)
}
