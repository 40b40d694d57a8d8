// Package httpboot is the management host's HTTP service: per-node iPXE
// scripts and pxelinux configs, the boot tree's files (kernel, initramfs,
// images) with Range support, the JSON API the herd agent registers and
// reports through, a status page for humans and Prometheus metrics.
//
// Routes (every one also answers HEAD where it answers GET):
//
//	GET  /boot/<mac>.ipxe             iPXE script: install or boot the disk
//	GET  /pxelinux.cfg/01-<mac>       pxelinux config (labels local and install)
//	GET  /pxelinux.cfg/default        the boot tree's file, else "boot the disk"
//	GET  /files/<path>                a file of the boot tree (Range, RFC 9110 §14)
//	POST /api/register                an agent registers   → RegisterResponse
//	POST /api/report                  an agent reports     → inventory.Status
//	GET  /api/nodes                   every node           → []inventory.Status
//	GET  /api/nodes/<name>            one node             → inventory.Status
//	GET  /api/dashboard               the dashboard's snapshot (JSON)
//	GET  /api/events                  the same, as server-sent events every second
//	GET  /                            the dashboard (HTML; without JavaScript a table refreshed every 2 s)
//	GET  /ui/<file>                   the dashboard's script and style sheet
//	GET  /metrics                     Prometheus metrics (package metrics)
//
// A MAC is accepted in lower or upper case, with colons or dashes.
//
// The boot state moves through nodestate.Transition: fetching an install
// script or config marks a node booting, registering marks it registered,
// reports move it to installing, done (its next boot is from disk) or
// failed (its next boot installs again).
package httpboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/bootlayout"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/metrics"
)

// Config is the HTTP service's configuration. Zero values are defaults.
type Config struct {
	// Root is the boot tree: kernel, initramfs, images. Files are served
	// from it under /files/, confined by an os.Root (required).
	Root string
	// Inventory lists the nodes (required).
	Inventory *inventory.Inventory
	// Store keeps their boot state (required).
	Store inventory.Store
	// BaseURL is how nodes reach this service, e.g.
	// "http://10.0.0.1:8080" (required; a trailing "/" is dropped).
	BaseURL string
	// Kernel and Initrd are names under Root; "" = bootlayout.Kernel,
	// bootlayout.InitramfsGz.
	Kernel, Initrd string
	// KernelArgs are added to the install boot's kernel command line
	// (one line).
	KernelArgs string
	// Ring is what a registering agent is told about the transfer ring;
	// zero ports are dolly's defaults and "" Server is BaseURL's host.
	Ring contract.Ring
	// Plans are the install plans agents get at registration, by the
	// inventory's plan= name; the key "" is the plan of nodes without
	// one. nil (or a node whose plan is not here) = no plan: the agent
	// writes the session's files as they are.
	Plans map[string]ServedPlan
	// Log receives one record per state change (debug) and per refusal
	// (warning); nil discards.
	Log *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// Metrics serves GET /metrics; nil = the store's node metrics alone
	// (metrics.New(Store, Now)).
	Metrics http.Handler
}

// ServedPlan is an install plan as served: the agent parses Text (kickstart,
// or a ka-deploy description when Name ends in .desc or .ka).
type ServedPlan struct {
	Name string
	Text string
}

// Handler serves the routes of the package comment. Everything a node
// did is in the Store; the Handler keeps only the dashboard's aggregate
// rate history and its last snapshot.
type Handler struct {
	cfg  Config
	log  *slog.Logger
	root *os.Root
	mux  *http.ServeMux
	dash *dashboard
}

// New checks cfg and opens the boot tree.
func New(cfg Config) (*Handler, error) {
	if cfg.Inventory == nil || cfg.Store == nil {
		return nil, errors.New("httpboot: an inventory and a store are required")
	}
	if cfg.Root == "" {
		return nil, errors.New("httpboot: no root directory: give the boot tree")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(cfg.BaseURL, " \t\r\n\"'") {
		return nil, fmt.Errorf("httpboot: base URL %q: want http://HOST:PORT, how the nodes reach this server", cfg.BaseURL)
	}
	if cfg.Kernel == "" {
		cfg.Kernel = bootlayout.Kernel
	}
	if cfg.Initrd == "" {
		cfg.Initrd = bootlayout.InitramfsGz
	}
	for what, v := range map[string]string{"kernel": cfg.Kernel, "initrd": cfg.Initrd} {
		if _, err := cleanPath(v); err != nil || strings.ContainsAny(v, " \t\r\n") {
			return nil, fmt.Errorf("httpboot: %s %q: want a path inside the boot tree without spaces", what, v)
		}
	}
	if strings.ContainsAny(cfg.KernelArgs, "\r\n") {
		return nil, errors.New("httpboot: kernel arguments must be one line")
	}
	if cfg.Ring.Server == "" {
		cfg.Ring.Server = u.Hostname()
	}
	cfg.Ring = cfg.Ring.WithDefaults()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(cfg.Store, cfg.Now).Handler()
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("httpboot: boot tree: %w", err)
	}
	h := &Handler{cfg: cfg, log: cfg.Log, root: root, mux: http.NewServeMux(), dash: newDashboard()}
	h.mux.HandleFunc("GET /boot/{file}", h.serveIPXE)
	h.mux.HandleFunc("GET /pxelinux.cfg/{file}", h.servePxelinux)
	h.mux.HandleFunc("GET /files/{path...}", h.serveFile)
	h.mux.HandleFunc("POST "+contract.PathRegister, h.serveRegister)
	h.mux.HandleFunc("GET "+contract.PathPlan+"{mac}", h.servePlan)
	h.mux.HandleFunc("POST "+contract.PathReport, h.serveReport)
	h.mux.HandleFunc("GET /api/nodes", h.serveNodes)
	h.mux.HandleFunc("GET /api/nodes/{name}", h.serveNode)
	h.mux.Handle("GET /metrics", cfg.Metrics)
	h.mux.HandleFunc("GET /api/dashboard", h.serveDashboard)
	h.mux.HandleFunc("GET /api/events", h.serveEvents)
	h.mux.HandleFunc("GET /{$}", h.serveStatus)
	h.mux.Handle("GET /ui/", uiFiles)
	return h, nil
}

// Close releases the boot tree.
func (h *Handler) Close() error { return h.root.Close() }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, args...)})
}

func writeText(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
