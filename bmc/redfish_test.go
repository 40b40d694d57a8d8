package bmc

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	rfUser     = "admin"
	rfPassword = "s3cret-redfish"
)

// mockRedfish serves one of DMTF's recorded mockups (testdata/redfish)
// over TLS, as a BMC would: sessions or basic auth, PowerState that
// follows the resets posted, and a record of the resets and PATCHes.
type mockRedfish struct {
	t   *testing.T
	dir string
	srv *httptest.Server

	// edit, when set, changes a recorded resource before it is served
	// (the test that sets it says how the system differs from DMTF's).
	edit func(uri string, doc map[string]any)
	// noSessions answers session creation with 405, as a service
	// without a session service; offReads is how many reads of the
	// system still say On after a ForceOff (-1: for ever).
	noSessions bool
	offReads   int

	mu        sync.Mutex
	power     string
	resets    []string
	patches   []string
	sessions  map[string]bool
	nsessions int
	basic     int // requests authenticated by basic auth
	pendOff   int // reads left before a ForceOff shows
}

func newMockRedfish(t *testing.T, mockup string) *mockRedfish {
	m := &mockRedfish{t: t, dir: filepath.Join("testdata", "redfish", mockup), power: "On", sessions: map[string]bool{}}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(m.serve))
	m.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused certificates, closed connections
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	return m
}

// target is where the mock answers, as a BMC URL would name it.
func (m *mockRedfish) target() Target {
	host, port, err := net.SplitHostPort(m.srv.Listener.Addr().String())
	if err != nil {
		m.t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Target{Scheme: "redfish", User: rfUser, Host: host, Port: p}
}

func (m *mockRedfish) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"error":{"code":"Base.1.8.GeneralError","message":"See ExtendedInfo","@Message.ExtendedInfo":[{"MessageId":"Base.1.8.GeneralError","Message":%q}]}}`, msg)
}

func (m *mockRedfish) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	uri := strings.TrimSuffix(r.URL.Path, "/")
	const sessions = "/redfish/v1/SessionService/Sessions"
	switch {
	case uri == "/redfish/v1" && r.Method == http.MethodGet:
		m.serveFile(w, uri)
		return
	case uri == sessions && r.Method == http.MethodPost:
		if m.noSessions {
			m.fail(w, http.StatusMethodNotAllowed, "no session service")
			return
		}
		var cred struct{ UserName, Password string }
		if err := json.NewDecoder(r.Body).Decode(&cred); err != nil {
			m.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		if cred.UserName != rfUser || cred.Password != rfPassword {
			m.fail(w, http.StatusUnauthorized, "The authentication credentials included with this request are missing or invalid.")
			return
		}
		m.nsessions++
		id := strconv.Itoa(m.nsessions)
		tok := "token-" + id
		m.sessions[tok] = true
		w.Header().Set("X-Auth-Token", tok)
		w.Header().Set("Location", sessions+"/"+id)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"@odata.id":%q,"Id":%q,"UserName":%q}`, sessions+"/"+id, id, rfUser)
		return
	}
	tok := r.Header.Get("X-Auth-Token")
	switch {
	case tok != "" && m.sessions[tok]:
	case tok == "" && r.Header.Get("Authorization") == "Basic "+base64.StdEncoding.EncodeToString([]byte(rfUser+":"+rfPassword)):
		m.basic++
	default:
		m.fail(w, http.StatusUnauthorized, "The authentication credentials included with this request are missing or invalid.")
		return
	}
	switch {
	case r.Method == http.MethodDelete && strings.HasPrefix(uri, sessions+"/"):
		if !m.sessions[tok] || "token-"+path.Base(uri) != tok {
			m.fail(w, http.StatusNotFound, "no such session")
			return
		}
		delete(m.sessions, tok)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet:
		m.serveFile(w, uri)
	case r.Method == http.MethodPost && strings.HasSuffix(uri, "/Actions/ComputerSystem.Reset"):
		var body struct{ ResetType string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			m.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		m.resets = append(m.resets, body.ResetType)
		switch body.ResetType {
		case "On", "ForceOn", "ForceRestart", "PowerCycle":
			m.power = "On"
		case "ForceOff":
			m.power, m.pendOff = "Off", m.offReads
		default:
			m.fail(w, http.StatusBadRequest, "unexpected ResetType "+body.ResetType)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPatch && strings.HasPrefix(uri, "/redfish/v1/Systems/"):
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			m.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		b, _ := json.Marshal(body)
		m.patches = append(m.patches, string(b))
		w.WriteHeader(http.StatusNoContent)
	default:
		m.fail(w, http.StatusMethodNotAllowed, r.Method+" "+uri)
	}
}

// serveFile answers uri from the mockup, with the system's PowerState as
// the resets left it.
func (m *mockRedfish) serveFile(w http.ResponseWriter, uri string) {
	rel := strings.TrimPrefix(strings.TrimPrefix(uri, "/redfish/v1"), "/")
	b, err := os.ReadFile(filepath.Join(m.dir, filepath.FromSlash(rel), "index.json"))
	if err != nil {
		m.fail(w, http.StatusNotFound, "no resource "+uri)
		return
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		m.t.Errorf("%s: %v", uri, err)
		m.fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	if _, ok := doc["PowerState"]; ok {
		doc["PowerState"] = m.power
		if m.power == "Off" && m.pendOff != 0 {
			doc["PowerState"] = "On"
			if m.pendOff > 0 {
				m.pendOff--
			}
		}
	}
	if m.edit != nil {
		m.edit(uri, doc)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
}

func (m *mockRedfish) record() (resets, patches []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.resets), slices.Clone(m.patches)
}

func (m *mockRedfish) dial(t *testing.T, o Options) *redfishController {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	c, err := Dial(context.Background(), m.target(), rfPassword, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	r := c.(*redfishController)
	r.pollEvery = 5 * time.Millisecond
	return r
}

// resetTypes replaces a system's ResetType@Redfish.AllowableValues.
func resetTypes(types ...string) func(string, map[string]any) {
	return func(uri string, doc map[string]any) {
		acts, _ := doc["Actions"].(map[string]any)
		reset, _ := acts["#ComputerSystem.Reset"].(map[string]any)
		if reset != nil {
			reset["ResetType@Redfish.AllowableValues"] = types
		}
	}
}

// noResetTypes removes a system's ResetType@Redfish.AllowableValues.
func noResetTypes(uri string, doc map[string]any) {
	acts, _ := doc["Actions"].(map[string]any)
	if reset, ok := acts["#ComputerSystem.Reset"].(map[string]any); ok {
		delete(reset, "ResetType@Redfish.AllowableValues")
	}
}

func TestRedfishPower(t *testing.T) {
	// public-rackmount1 offers On, ForceOff, ForceRestart... but no
	// PowerCycle, inline; public-telemetry the same through an ActionInfo.
	withCycle := resetTypes("On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle")
	tests := []struct {
		name     string
		mockup   string
		edit     func(string, map[string]any)
		offReads int
		power    string // PowerState before
		action   Action
		want     []string // ResetTypes posted
		on       bool     // PowerOn after
	}{
		{name: "on", mockup: "public-rackmount1", power: "Off", action: On, want: []string{"On"}, on: true},
		{name: "on when on", mockup: "public-rackmount1", power: "On", action: On, want: nil, on: true},
		{name: "off", mockup: "public-rackmount1", power: "On", action: Off, want: []string{"ForceOff"}, on: false},
		{name: "off when off", mockup: "public-rackmount1", power: "Off", action: Off, want: nil, on: false},
		{name: "reset", mockup: "public-rackmount1", power: "On", action: Reset, want: []string{"ForceRestart"}, on: true},
		{name: "cycle without PowerCycle", mockup: "public-rackmount1", power: "On", action: Cycle, want: []string{"ForceOff", "On"}, on: true},
		{name: "cycle waits for off", mockup: "public-rackmount1", offReads: 3, power: "On", action: Cycle, want: []string{"ForceOff", "On"}, on: true},
		{name: "cycle when off", mockup: "public-rackmount1", power: "Off", action: Cycle, want: []string{"On"}, on: true},
		// Modified: rackmount1's system with PowerCycle added.
		{name: "cycle with PowerCycle", mockup: "public-rackmount1", edit: withCycle, power: "On", action: Cycle, want: []string{"PowerCycle"}, on: true},
		// Modified: rackmount1's system that lists no reset types.
		{name: "cycle, no list", mockup: "public-rackmount1", edit: noResetTypes, power: "On", action: Cycle, want: []string{"ForceOff", "On"}, on: true},
		{name: "reset, no list", mockup: "public-rackmount1", edit: noResetTypes, power: "On", action: Reset, want: []string{"ForceRestart"}, on: true},
		{name: "ActionInfo reset", mockup: "public-telemetry", power: "On", action: Reset, want: []string{"ForceRestart"}, on: true},
		{name: "ActionInfo cycle", mockup: "public-telemetry", power: "On", action: Cycle, want: []string{"ForceOff", "On"}, on: true},
		{name: "ActionInfo off", mockup: "public-telemetry", power: "On", action: Off, want: []string{"ForceOff"}, on: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMockRedfish(t, tt.mockup)
			m.edit, m.power, m.offReads = tt.edit, tt.power, tt.offReads
			r := m.dial(t, Options{})
			on, err := r.PowerOn(context.Background())
			if err != nil || on != (tt.power == "On") {
				t.Fatalf("PowerOn before = %v, %v; want %v", on, err, tt.power == "On")
			}
			if err := r.Power(context.Background(), tt.action); err != nil {
				t.Fatalf("Power(%s): %v", tt.action, err)
			}
			resets, _ := m.record()
			if diff := cmp.Diff(tt.want, resets); diff != "" {
				t.Errorf("ResetTypes posted (-want +got):\n%s", diff)
			}
			on, err = r.PowerOn(context.Background())
			if err != nil || on != tt.on {
				t.Errorf("PowerOn after = %v, %v; want %v", on, err, tt.on)
			}
		})
	}
}

func TestRedfishPowerRefused(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(string, map[string]any)
		action Action
		want   string
	}{
		// Modified: rackmount1's system without ForceRestart.
		{name: "no ForceRestart", edit: resetTypes("On", "ForceOff", "GracefulRestart"), action: Reset,
			want: "power reset: /redfish/v1/Systems/437XR1138R2 offers no ResetType ForceRestart (it offers On, ForceOff, GracefulRestart)"},
		// Modified: a system with the pre-standard names of
		// public-compose-action.
		{name: "no On", edit: resetTypes("PowerOn", "PowerOffNonGraceful", "PowerCycle"), action: On,
			want: "offers no ResetType On (it offers PowerOn, PowerOffNonGraceful, PowerCycle)"},
		{name: "unknown action", action: "hibernate", want: `unknown power action "hibernate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMockRedfish(t, "public-rackmount1")
			m.edit, m.power = tt.edit, "Off"
			r := m.dial(t, Options{})
			err := r.Power(context.Background(), tt.action)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), m.target().String()+": ") {
				t.Fatalf("Power(%s) = %v; want an error naming the BMC, with %q", tt.action, err, tt.want)
			}
			if resets, _ := m.record(); len(resets) != 0 {
				t.Errorf("posted %v", resets)
			}
		})
	}
}

func TestRedfishCycleBounded(t *testing.T) {
	m := newMockRedfish(t, "public-rackmount1")
	m.offReads = -1 // ForceOff never shows
	r := m.dial(t, Options{})
	r.offWait = 50 * time.Millisecond
	err := r.Power(context.Background(), Cycle)
	if err == nil || !strings.Contains(err.Error(), "still on") {
		t.Fatalf("Power(cycle) = %v; want the power still on", err)
	}
	if resets, _ := m.record(); !slices.Equal(resets, []string{"ForceOff"}) {
		t.Errorf("posted %v; want only ForceOff", resets)
	}

	r.offWait = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = r.Power(ctx, Cycle)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Power(cycle) with a deadline = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v after the context ended", d)
	}
}

func TestRedfishBootDevice(t *testing.T) {
	noMode := func(uri string, doc map[string]any) {
		if boot, ok := doc["Boot"].(map[string]any); ok {
			delete(boot, "BootSourceOverrideMode")
		}
	}
	tests := []struct {
		dev     Device
		mode    Mode
		persist bool
		edit    func(string, map[string]any)
		want    string
	}{
		{dev: PXE, mode: ModeLegacy, want: `{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Pxe"}}`},
		{dev: PXE, mode: ModeUEFI, want: `{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Pxe"}}`},
		{dev: PXE, mode: ModeLegacy, persist: true, want: `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Pxe"}}`},
		{dev: PXE, mode: ModeUEFI, persist: true, want: `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Pxe"}}`},
		{dev: Disk, mode: ModeLegacy, want: `{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Hdd"}}`},
		{dev: Disk, mode: ModeUEFI, want: `{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Hdd"}}`},
		{dev: Disk, mode: ModeLegacy, persist: true, want: `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Hdd"}}`},
		{dev: Disk, mode: ModeUEFI, persist: true, want: `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Hdd"}}`},
		// The firmware's mode unknown (a node never registered): the
		// system keeps its own, UEFI-only servers included.
		{dev: PXE, mode: ModeKeep, want: `{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Pxe"}}`},
		{dev: Disk, mode: ModeKeep, persist: true, want: `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideTarget":"Hdd"}}`},
		// Modified: rackmount1's system without BootSourceOverrideMode.
		{dev: PXE, mode: ModeUEFI, edit: noMode, want: `{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Pxe"}}`},
		{dev: Disk, mode: ModeLegacy, persist: true, edit: noMode, want: `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideTarget":"Hdd"}}`},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s mode=%q persist=%v system-mode=%v", tt.dev, tt.mode, tt.persist, tt.edit == nil)
		t.Run(name, func(t *testing.T) {
			m := newMockRedfish(t, "public-rackmount1")
			m.edit = tt.edit
			r := m.dial(t, Options{})
			if err := r.BootDevice(context.Background(), tt.dev, tt.mode, tt.persist); err != nil {
				t.Fatalf("BootDevice: %v", err)
			}
			resets, patches := m.record()
			if diff := cmp.Diff([]string{tt.want}, patches); diff != "" || len(resets) != 0 {
				t.Errorf("PATCH bodies (-want +got):\n%s\nresets: %v", diff, resets)
			}
		})
	}
}

func TestRedfishBootDeviceRefused(t *testing.T) {
	m := newMockRedfish(t, "public-rackmount1")
	// Modified: rackmount1's system that cannot boot from the network.
	m.edit = func(uri string, doc map[string]any) {
		if boot, ok := doc["Boot"].(map[string]any); ok {
			boot["BootSourceOverrideTarget@Redfish.AllowableValues"] = []string{"None", "Hdd", "Cd"}
		}
	}
	r := m.dial(t, Options{})
	err := r.BootDevice(context.Background(), PXE, ModeUEFI, false)
	if err == nil || !strings.Contains(err.Error(), "offers no BootSourceOverrideTarget Pxe (it offers None, Hdd, Cd)") {
		t.Fatalf("BootDevice(pxe) = %v", err)
	}
	if _, patches := m.record(); len(patches) != 0 {
		t.Errorf("PATCHed %v", patches)
	}
}

func TestRedfishSession(t *testing.T) {
	m := newMockRedfish(t, "public-rackmount1")
	c, err := Dial(context.Background(), m.target(), rfPassword, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PowerOn(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	open, basic := len(m.sessions), m.basic
	m.mu.Unlock()
	if open != 1 || basic != 0 {
		t.Errorf("%d sessions open, %d basic-auth requests; want a session", open, basic)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	m.mu.Lock()
	open = len(m.sessions)
	m.mu.Unlock()
	if open != 0 {
		t.Errorf("%d sessions left open after Close", open)
	}
	if _, err := c.PowerOn(context.Background()); err == nil {
		t.Error("PowerOn after Close succeeded")
	}
}

func TestRedfishBasicAuth(t *testing.T) {
	m := newMockRedfish(t, "public-rackmount1")
	m.noSessions, m.power = true, "Off"
	r := m.dial(t, Options{})
	if err := r.Power(context.Background(), On); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	basic := m.basic
	m.mu.Unlock()
	if basic == 0 {
		t.Error("no request went with basic auth")
	}
	if resets, _ := m.record(); !slices.Equal(resets, []string{"On"}) {
		t.Errorf("posted %v", resets)
	}
}

func TestRedfishDialErrors(t *testing.T) {
	t.Run("wrong password", func(t *testing.T) {
		m := newMockRedfish(t, "public-rackmount1")
		_, err := Dial(context.Background(), m.target(), "wrong-password", Options{})
		if err == nil {
			t.Fatal("Dial succeeded")
		}
		for _, want := range []string{m.target().String() + ": ", "HTTP 401", "refused the user or password", "missing or invalid"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	t.Run("wrong password, basic auth", func(t *testing.T) {
		m := newMockRedfish(t, "public-rackmount1")
		m.noSessions = true
		_, err := Dial(context.Background(), m.target(), "wrong-password", Options{})
		if err == nil || !strings.Contains(err.Error(), "refused the user or password") {
			t.Fatalf("Dial = %v; want refused", err)
		}
	})
	t.Run("several systems", func(t *testing.T) {
		m := newMockRedfish(t, "public-bladed")
		_, err := Dial(context.Background(), m.target(), rfPassword, Options{})
		if err == nil {
			t.Fatal("Dial succeeded")
		}
		for _, want := range []string{m.target().String() + ": ", "4 computer systems", "/redfish/v1/Systems/529QB9450R6", "/redfish/v1/Systems/529QB9453R6"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		m.mu.Lock()
		open := len(m.sessions)
		m.mu.Unlock()
		if open != 0 {
			t.Errorf("%d sessions left open", open)
		}
	})
	t.Run("unanswered", func(t *testing.T) {
		// A BMC that accepts connections and never says a word.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		}()
		tg := Target{Scheme: "redfish", User: rfUser, Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
		start := time.Now()
		_, err = Dial(context.Background(), tg, rfPassword, Options{Timeout: 200 * time.Millisecond, Retries: 1})
		d := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "no answer") || !strings.HasPrefix(err.Error(), tg.String()+": ") {
			t.Errorf("Dial = %v; want no answer from %s", err, tg)
		}
		if d < 400*time.Millisecond || d > 3*time.Second {
			t.Errorf("gave up after %v; want two 200ms attempts", d)
		}
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		if n != 2 {
			t.Errorf("%d connections; want 2 (one retry)", n)
		}
	})
	t.Run("refused connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		tg := Target{Scheme: "redfish", User: rfUser, Host: "127.0.0.1", Port: port}
		if _, err := Dial(context.Background(), tg, rfPassword, Options{Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("Dial = %v; want connection refused", err)
		}
	})
}

func TestRedfishTLSRoots(t *testing.T) {
	m := newMockRedfish(t, "public-rackmount1")
	roots := x509.NewCertPool()
	roots.AddCert(m.srv.Certificate())
	r := m.dial(t, Options{TLSRoots: roots})
	if _, err := r.PowerOn(context.Background()); err != nil {
		t.Fatalf("with the server's root: %v", err)
	}
	_, err := Dial(context.Background(), m.target(), rfPassword, Options{TLSRoots: x509.NewCertPool()})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Dial with other roots = %v; want a certificate error", err)
	}
}
