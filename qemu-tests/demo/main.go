// Command demo is make demo: a small cluster of QEMU nodes with blank
// disks installed end to end on this machine, shown as an administrator
// sees it.
//
//	go run ./qemu-tests/demo [-logs DIR] [-nodes N]
//
// It drives the QEMU harness (package qemutests) as a library, the
// scenario of TestCloneWholeDisk: herd builds its boot tree and a golden
// disk image and captures it; herd serve runs on a bridge inside a
// network namespace of the demo's own (nothing reaches the host's
// networks); the nodes PXE-boot herd's agent, register, receive the image
// through the ring, verify and customize it, reboot, and boot their own
// disks into a system that prints its host name, address and machine-id.
// The terminal shows herd serve's own output as it prints it, each node's
// steps as its serial console shows them, with the seconds since its
// power-on, then a timeline and one line per node. It exits 1 when a node
// (or herd serve) failed, naming it and its logs.
//
// It needs root, QEMU and a Debian kernel (make deps), and runs from
// herd's source tree: the harness builds herd from it. It lives here
// rather than under cmd/ because it is no part of what herd ships.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	qemutests "github.com/herdproject/herd/qemu-tests"
)

// config is the demo's command line.
type config struct {
	// LogDir gets every log: demo.log (what the terminal showed, and the
	// harness's own log), the node consoles, herd serve's output, the
	// inventory and node states. It is emptied first when it is an
	// earlier demo's (it holds demo.log) and refused when it holds
	// anything else.
	LogDir string
	// Nodes is how many QEMU nodes; 0 means 3.
	Nodes int
}

func main() {
	var cfg config
	def := os.Getenv("HERD_DEMO_LOGS")
	if def == "" {
		def = "demo-logs"
	}
	flag.StringVar(&cfg.LogDir, "logs", def, "directory for every log (default $HERD_DEMO_LOGS, else demo-logs)")
	flag.IntVar(&cfg.Nodes, "nodes", 3, "number of QEMU nodes (1 to 8)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second interrupt ends the demo at once
	}()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "herd demo FAILED: %v\n", err)
		os.Exit(1)
	}
}

// run runs the demo and writes what an administrator would see to
// stdout (and to demo.log); the error names what failed and its logs.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 || cfg.Nodes > 8 {
		return fmt.Errorf("-nodes %d: want 1 to 8", cfg.Nodes)
	}
	dir, err := prepareLogDir(cfg.LogDir)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return err
	}
	defer f.Close()
	o := &screen{term: stdout, log: f}
	d := &demo{cfg: cfg, logDir: dir, o: o, start: time.Now()}
	o.printf("herd demo: %d QEMU nodes (TCG, SeaBIOS + iPXE) with blank disks get a golden disk image through herd's ring\n", cfg.Nodes)
	o.printf("logs: %s\n", dir)
	err = qemutests.RunProgram("demo", o.transcript(), func(t qemutests.T) { d.scenario(ctx, t) })
	qemutests.RemoveBuild()
	return d.report(err)
}

// prepareLogDir makes dir absolute and empty: it may be missing, empty,
// or an earlier demo's (with its demo.log); anything else is refused
// rather than removed.
func prepareLogDir(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return dir, os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return "", err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "demo.log")); err != nil {
			return "", fmt.Errorf("log directory %s holds files but no demo.log of an earlier demo: name an empty or new directory (-logs, HERD_DEMO_LOGS)", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// screen is the demo's terminal: every write goes whole, under one lock,
// to the terminal and to the transcript (demo.log). The harness's log
// goes to the transcript only.
type screen struct {
	mu   sync.Mutex
	term io.Writer
	log  io.Writer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.term.Write(p)
	s.log.Write(p)
	return len(p), nil
}

func (s *screen) printf(format string, args ...any) {
	fmt.Fprintf(s, format, args...)
}

// indent prints text with every line indented by three spaces.
func (s *screen) indent(text string) {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return
	}
	s.printf("   %s\n", strings.ReplaceAll(text, "\n", "\n   "))
}

// transcript is the writer of the transcript alone.
func (s *screen) transcript() io.Writer { return transcript{s} }

type transcript struct{ s *screen }

func (w transcript) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.log.Write(p)
}
