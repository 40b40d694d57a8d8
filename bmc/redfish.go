package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// redfishController is a Redfish session with a BMC that manages one
// computer system.
type redfishController struct {
	t      Target
	c      *gofish.APIClient
	system string // the system's @odata.id
	closed bool

	// offWait bounds the wait for the power to go off between the two
	// halves of a cycle done as ForceOff then On; pollEvery is how often
	// PowerState is read meanwhile.
	offWait, pollEvery time.Duration
}

func dialRedfish(ctx context.Context, t Target, password string, o Options) (*redfishController, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.Host}
	if o.TLSRoots != nil {
		tlsConf.RootCAs = o.TLSRoots
	} else {
		// BMCs ship with self-signed certificates; see Options.TLSRoots.
		tlsConf.InsecureSkipVerify = true
	}
	tr := &http.Transport{
		// Straight to the BMC, never through $HTTPS_PROXY: BMC networks
		// are local, as for IPMI.
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: o.Timeout,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
	}
	conf := gofish.ClientConfig{
		Endpoint: "https://" + t.Addr(),
		Username: t.User,
		Password: password,
		HTTPClient: &http.Client{
			Transport: &retryTransport{next: tr, timeout: o.Timeout, retries: o.Retries},
			// A Redfish service answers where it was asked; a redirect
			// elsewhere would carry the credentials along.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// One TLS connection for the session's few requests: BMCs are
		// slow at handshakes.
		ReuseConnections: true,
	}
	// A Redfish session first, as Ironic's "auto": the password crosses
	// the wire once. Services without a session service get basic auth.
	c, err := gofish.ConnectContext(ctx, conf)
	if err != nil && sessionUnsupported(ctx, err) {
		conf.BasicAuth = true
		c, err = gofish.ConnectContext(ctx, conf)
	}
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("%s: %w", t, explainRedfish(err))
	}
	r := &redfishController{t: t, c: c, offWait: 30 * time.Second, pollEvery: time.Second}
	systems, err := c.WithContext(ctx).Service.Systems()
	if err != nil {
		r.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%s: systems: %w", t, explainRedfish(err))
	}
	switch len(systems) {
	case 1:
		r.system = systems[0].ODataID
		return r, nil
	case 0:
		r.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%s: the Redfish service lists no computer system", t)
	}
	ids := make([]string, len(systems))
	for i, s := range systems {
		ids[i] = s.ODataID
	}
	r.Close(context.WithoutCancel(ctx))
	return nil, fmt.Errorf("%s: the BMC manages %d computer systems (%s): herd drives only BMCs that manage one (choosing among several is not supported yet)", t, len(ids), strings.Join(ids, ", "))
}

// sessionUnsupported tells whether err, from creating a Redfish session,
// says the service has none (no Sessions link, 404, 405...) rather than
// that it refused the user, did not answer or was given up on.
func sessionUnsupported(ctx context.Context, err error) bool {
	var he *schemas.Error
	var ue *url.Error
	switch {
	case ctx.Err() != nil:
		return false
	case errors.As(err, &he):
		return he.HTTPReturnedStatusCode != http.StatusUnauthorized && he.HTTPReturnedStatusCode != http.StatusForbidden && he.HTTPReturnedStatusCode != 0
	case errors.As(err, &ue):
		return false
	}
	return strings.Contains(err.Error(), "no target provided")
}

// redfishError is a Redfish service's error answer, said briefly.
type redfishError struct {
	status int
	msg    string
	err    *schemas.Error
}

func (e *redfishError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func (e *redfishError) Unwrap() error { return e.err }

// explainRedfish shortens gofish's errors (which carry the whole answer)
// and adds what to do where it is clear.
func explainRedfish(err error) error {
	var coll *schemas.CollectionError
	if errors.As(err, &coll) && len(coll.Failures) > 0 {
		// gofish gathers a collection's members at once and says which
		// failed how; the first (by link) tells enough.
		links := slices.Sorted(maps.Keys(coll.Failures))
		return fmt.Errorf("%s: %w", links[0], explainRedfish(coll.Failures[links[0]]))
	}
	var he *schemas.Error
	var ne net.Error
	var ce *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	var he2 x509.HostnameError
	switch {
	case errors.As(err, &he) && he.HTTPReturnedStatusCode != 0:
		re := &redfishError{status: he.HTTPReturnedStatusCode, err: he}
		for _, x := range he.ExtendedInfos {
			if x.Message != "" {
				re.msg = x.Message
				break
			}
		}
		if re.msg == "" && he.Message != "" && len(he.Message) <= 200 && !strings.ContainsAny(he.Message, "{<") {
			re.msg = he.Message
		}
		if re.status == http.StatusUnauthorized || re.status == http.StatusForbidden {
			return fmt.Errorf("refused the user or password: %w (check the inventory's user and the password file)", re)
		}
		return re
	case errors.As(err, &ce), errors.As(err, &ue), errors.As(err, &he2):
		return fmt.Errorf("%w (the BMC's certificate is not one the configured roots vouch for)", err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("no answer: %w (is the BMC's address and port right, and Redfish enabled on it?)", err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (is the BMC's address and port right, and Redfish enabled on it?)", err)
	}
	return err
}

// get reads the system afresh, on ctx.
func (r *redfishController) get(ctx context.Context) (*schemas.ComputerSystem, error) {
	if r.closed {
		return nil, fmt.Errorf("%s: session closed", r.t)
	}
	s, err := schemas.GetComputerSystem(r.c.WithContext(ctx), r.system)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.t, r.system, explainRedfish(err))
	}
	return s, nil
}

func powerIsOn(s *schemas.ComputerSystem) (bool, error) {
	switch s.PowerState {
	case schemas.OffPowerState:
		return false, nil
	case "":
		return false, fmt.Errorf("%s reports no PowerState", s.ODataID)
	}
	// On, PoweringOn, PoweringOff, Paused: the power is applied.
	return true, nil
}

func (r *redfishController) PowerOn(ctx context.Context) (bool, error) {
	s, err := r.get(ctx)
	if err != nil {
		return false, err
	}
	on, err := powerIsOn(s)
	if err != nil {
		return false, fmt.Errorf("%s: %w", r.t, err)
	}
	return on, nil
}

// Power maps herd's actions onto ComputerSystem.Reset: on → On, off →
// ForceOff, reset → ForceRestart, cycle → PowerCycle where the system
// lists it, else ForceOff, a wait for PowerState Off, and On. A node
// already in the state asked for (on, off) is left alone, as BMCs may
// refuse an On to a system that is on; cycling a node that is off powers
// it on.
func (r *redfishController) Power(ctx context.Context, a Action) error {
	switch a {
	case On, Off, Cycle, Reset:
	default:
		return fmt.Errorf("%s: unknown power action %q", r.t, a)
	}
	s, err := r.get(ctx)
	if err != nil {
		return err
	}
	allowed, err := s.GetSupportedResetTypes()
	if err != nil {
		return fmt.Errorf("%s: %s: reset types: %w", r.t, s.ODataID, explainRedfish(err))
	}
	on := s.PowerState != schemas.OffPowerState
	switch a {
	case On:
		if s.PowerState == schemas.OnPowerState {
			return nil
		}
		return r.reset(s, allowed, a, schemas.OnResetType)
	case Off:
		if s.PowerState == schemas.OffPowerState {
			return nil
		}
		return r.reset(s, allowed, a, schemas.ForceOffResetType)
	case Reset:
		return r.reset(s, allowed, a, schemas.ForceRestartResetType)
	}
	if !on {
		return r.reset(s, allowed, a, schemas.OnResetType)
	}
	if slices.Contains(allowed, schemas.PowerCycleResetType) {
		return r.reset(s, allowed, a, schemas.PowerCycleResetType)
	}
	if err := r.reset(s, allowed, a, schemas.ForceOffResetType); err != nil {
		return err
	}
	if err := r.waitOff(ctx); err != nil {
		return err
	}
	return r.reset(s, allowed, a, schemas.OnResetType)
}

// reset posts ComputerSystem.Reset with rt, when the system offers it.
func (r *redfishController) reset(s *schemas.ComputerSystem, allowed []schemas.ResetType, a Action, rt schemas.ResetType) error {
	if len(allowed) > 0 && !slices.Contains(allowed, rt) {
		return fmt.Errorf("%s: power %s: %s offers no ResetType %s (it offers %s)", r.t, a, s.ODataID, rt, join(allowed))
	}
	if _, err := s.Reset(rt); err != nil {
		return fmt.Errorf("%s: power %s: %s ResetType %s: %w", r.t, a, s.ODataID, rt, explainRedfish(err))
	}
	return nil
}

// join lists a Redfish enumeration's values.
func join[T ~string](v []T) string {
	names := make([]string, len(v))
	for i, x := range v {
		names[i] = string(x)
	}
	return strings.Join(names, ", ")
}

// waitOff waits until the system says its power is off, for at most
// r.offWait.
func (r *redfishController) waitOff(ctx context.Context) error {
	deadline := time.Now().Add(r.offWait)
	tick := time.NewTicker(r.pollEvery)
	defer tick.Stop()
	for {
		on, err := r.PowerOn(ctx)
		if err != nil {
			return err
		}
		if !on {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: power cycle: the power is still on %v after ForceOff; not powering on", r.t, r.offWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: power cycle: waiting for the power to go off: %w", r.t, ctx.Err())
		case <-tick.C:
		}
	}
}

// BootDevice sets Boot.BootSourceOverrideTarget (Pxe or Hdd),
// BootSourceOverrideEnabled (Once or Continuous) and, when m is not
// ModeKeep and the system shows a BootSourceOverrideMode, that mode (UEFI
// or Legacy).
func (r *redfishController) BootDevice(ctx context.Context, d Device, m Mode, persist bool) error {
	var target schemas.BootSource
	switch d {
	case PXE:
		target = schemas.PxeBootSource
	case Disk:
		target = schemas.HddBootSource
	default:
		return fmt.Errorf("%s: unknown boot device %q", r.t, d)
	}
	s, err := r.get(ctx)
	if err != nil {
		return err
	}
	if v := s.Boot.AllowableBootSourceOverrideTargetValues; len(v) > 0 && !slices.Contains(v, target) {
		return fmt.Errorf("%s: boot device %s: %s offers no BootSourceOverrideTarget %s (it offers %s)", r.t, d, s.ODataID, target, join(v))
	}
	b := &schemas.Boot{
		BootSourceOverrideTarget:  target,
		BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled,
	}
	if persist {
		b.BootSourceOverrideEnabled = schemas.ContinuousBootSourceOverrideEnabled
	}
	if s.Boot.BootSourceOverrideMode != "" {
		switch m {
		case ModeUEFI:
			b.BootSourceOverrideMode = schemas.UEFIBootSourceOverrideMode
		case ModeLegacy:
			b.BootSourceOverrideMode = schemas.LegacyBootSourceOverrideMode
		}
	}
	if err := s.SetBoot(b); err != nil {
		return fmt.Errorf("%s: boot device %s: %w", r.t, d, explainRedfish(err))
	}
	return nil
}

// Close deletes the Redfish session, if there is one. It is safe to call
// twice.
func (r *redfishController) Close(ctx context.Context) error {
	if r.closed {
		return nil
	}
	r.closed = true
	defer r.c.HTTPClient.CloseIdleConnections()
	sess, err := r.c.GetSession()
	if err != nil || sess.ID == "" {
		return nil // basic auth: no session to end
	}
	if err := schemas.DeleteSession(r.c.WithContext(ctx), sess.ID); err != nil {
		return fmt.Errorf("%s: end session: %w", r.t, explainRedfish(err))
	}
	return nil
}

// retryTransport bounds each HTTP attempt by timeout and sends a request
// that failed in transit again, up to retries times, when doing so twice
// does no harm: every method but POST (a Reset is not sent twice).
type retryTransport struct {
	next    *http.Transport
	timeout time.Duration
	retries int
}

func (rt *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(req.Context(), rt.timeout)
		r := req.Clone(ctx)
		if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			r.Body = body
		}
		resp, err := rt.next.RoundTrip(r)
		if err == nil {
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		}
		cancel()
		var cert *tls.CertificateVerificationError
		if attempt >= rt.retries || req.Method == http.MethodPost || req.Context().Err() != nil || errors.As(err, &cert) ||
			(req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
			return nil, err
		}
	}
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (rt *retryTransport) CloseIdleConnections() { rt.next.CloseIdleConnections() }

// cancelBody ends an attempt's context when its answer has been read.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
