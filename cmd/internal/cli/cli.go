// Package cli maps the command lines of herd, dolly, dollyS and dollyC onto
// the ring's sender and relay. Every entry point has the signature of
// Main: it parses args, runs, and returns the process exit status.
//
// Exit status: 0 when every node verified every file (or the node's session
// succeeded), 1 when the session ran and some node failed, 2 for bad usage,
// a bad configuration file or a bad input (nothing was sent).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/internal/procs"
	"github.com/herdproject/herd/ring/dollyconf"
	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/report"
	"github.com/herdproject/herd/ring/sender"
	"github.com/herdproject/herd/ring/wire"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// Env is what a command sees of its process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Main is the signature of every entry point.
type Main func(ctx context.Context, args []string, env Env) int

// Exec runs m as the process's main function, on the process's own
// arguments and standard streams, and exits with its status. SIGINT and
// SIGTERM cancel its context; the process runs on one P while one is
// enough (package procs).
func Exec(m Main) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProcs := procs.Govern(ctx)
	code := m(ctx, os.Args[1:], Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stopProcs()
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// usageError is bad input found before anything was sent.
type usageError struct{ error }

// groupHelp handles a command group's (herd build, image, plan) help and
// missing command: it prints usage and returns pflag.ErrHelp for --help,
// or the usage error "want ..." when args is empty. It returns nil when
// args[0] names a command.
func groupHelp(env Env, args []string, usage, want string) error {
	if len(args) > 0 && args[0] != "--help" && args[0] != "-h" && args[0] != "help" {
		return nil
	}
	fmt.Fprint(env.Stderr, usage)
	if len(args) == 0 {
		return usagef("%s", want)
	}
	return pflag.ErrHelp
}

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// status maps an error to an exit status.
func status(env Env, prog string, err error) int {
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
	var ue usageError
	var se *sender.SetupError
	var pe *dollyconf.ParseError
	switch {
	case errors.As(err, &ue), errors.As(err, &se), errors.As(err, &pe):
		return ExitUsage
	}
	return ExitFailed
}

// sendOpts is what every sender spelling fills in.
type sendOpts struct {
	prog       string
	cfg        sender.Config
	verbose    bool
	quiet      bool
	logFile    string
	uncompSize int64
	serverFlag string // "-s" checks the configuration's server name
	// rename maps the sender's host names to the names the summary shows
	// (herd serve: addresses to inventory names).
	rename map[string]string
	// state is --state: the state file, "" for the default, "none".
	state string
	// log is the session's logger; nil: plain lines prefixed by prog.
	log *slog.Logger
}

// serverName is this host's name as the -o log gives it: the sender's
// name (dolly -S NAME), else the host name.
func (o *sendOpts) serverName() string {
	if o.cfg.Name != "" {
		return o.cfg.Name
	}
	hn, _ := os.Hostname()
	return hn
}

// stateDirHelp names the default state directory in help texts.
const stateDirHelp = "/var/lib/herd/send (root) or ~/.local/state/herd/send"

// stateFile is the session's state file: --state, or one per command in
// the state directory (root's under /var/lib/herd, a user's under
// $XDG_STATE_HOME or ~/.local/state); "" keeps none.
func (o *sendOpts) stateFile() string {
	switch o.state {
	case "none":
		return ""
	case "":
	default:
		return o.state
	}
	dir := "/var/lib/herd/send"
	if os.Geteuid() != 0 {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return ""
			}
			base = filepath.Join(home, ".local", "state")
		}
		dir = filepath.Join(base, "herd", "send")
	}
	return sender.DefaultStateFile(dir, o.cfg)
}

// runSend runs a session, draws progress, prints the summary and writes
// the -o log.
func runSend(ctx context.Context, env Env, o *sendOpts) error {
	_, err := runSendReport(ctx, env, o)
	return err
}

// runSendReport is runSend that also returns the session's report.
func runSendReport(ctx context.Context, env Env, o *sendOpts) (*sender.Report, error) {
	log := o.log
	if log == nil {
		log = logging.New(env.Stderr, o.prog, logging.Level(o.verbose), logging.Plain)
	}
	if o.serverFlag == "-s" && o.cfg.Plan.Server != "" {
		if hn := o.serverName(); hn != "" && !sameHost(hn, o.cfg.Plan.Server) {
			log.Warn(fmt.Sprintf("the configuration names server %q but this is %q (use -S to silence)", o.cfg.Plan.Server, hn))
		}
	}
	o.cfg.Log = log
	var prog *report.Progress
	if !o.quiet {
		prog = report.NewProgress(env.Stderr, isTerminal(env.Stderr), 5*time.Second)
		if also := o.cfg.Watch; also != nil {
			o.cfg.Watch = func(r *sender.Report) { prog.Update(r); also(r) }
		} else {
			o.cfg.Watch = prog.Update
		}
	}
	if o.cfg.StateFile == "" {
		o.cfg.StateFile = o.stateFile()
	}
	rep, err := sender.Send(ctx, o.cfg)
	if rep != nil {
		for i, n := range rep.Nodes {
			if name, ok := o.rename[n.Name]; ok {
				rep.Nodes[i].Name = name
			}
		}
	}
	if rep != nil && !rep.Done && len(rep.Nodes) > 0 {
		// Set-up failed: still say, node by node, why.
		report.Summary(env.Stdout, rep)
	}
	if rep != nil && rep.Done {
		if o.uncompSize > 0 {
			rep.Total = o.uncompSize
		}
		report.Summary(env.Stdout, rep)
		if o.prog == "dolly" && err == nil && len(rep.Failed()) == 0 {
			fmt.Fprintln(env.Stderr, dollyServerDone)
		}
		if rep.Restarts > 0 {
			log.Info(fmt.Sprintf("session %s was resumed after %d restart(s) of the sender", rep.Session, rep.Restarts), "session", rep.Session, "restarts", rep.Restarts)
		}
		if o.logFile != "" {
			if lerr := appendLog(o.logFile, rep, o.serverName(), max(o.cfg.Plan.Fanout, 1), o.verbose); lerr != nil {
				log.Error(lerr.Error())
				if err == nil {
					err = lerr
				}
			}
		}
		if o.prog == "dolly" && err == nil && len(rep.Failed()) == 0 {
			fmt.Fprintln(env.Stderr, dollyAllSent)
		}
	}
	return rep, err
}

// dolly 0.72's messages on standard error that scripts wait for: the
// client's when it is ready for a server, the server's when every client
// has its data (herd: verified it), and the last line of a server and of
// a client that succeeded.
const (
	dollyClientWaiting = "I am a dolly client, waiting for a server..."
	dollyServerDone    = "Transfert to all client nodes done."
	dollyAllSent       = "All data Transmitted."
)

func appendLog(path string, rep *sender.Report, server string, childs int, verbose bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("log file (-o): %w", err)
	}
	if err := report.Log(f, rep, server, childs, verbose); err != nil {
		f.Close()
		return fmt.Errorf("write log file %s: %w", path, err)
	}
	return f.Close()
}

func sameHost(a, b string) bool {
	short := func(s string) string { return strings.ToLower(strings.SplitN(s, ".", 2)[0]) }
	return short(a) == short(b)
}

// loadConfig reads a dolly/dolly+ configuration file into the plan,
// printing its warnings.
func loadConfig(env Env, prog, path string, p *plan.Session) error {
	c, err := dollyconf.ParseFile(path)
	if err != nil {
		var pe *dollyconf.ParseError
		if errors.As(err, &pe) {
			return err
		}
		// A configuration file that cannot be opened or read is bad
		// usage too (exit status 2): nothing was sent.
		return usageError{err}
	}
	for _, w := range c.Warnings {
		fmt.Fprintf(env.Stderr, "%s: warning: %s\n", prog, w)
	}
	*p = c.Plan
	return nil
}

// runRecv runs a node.
func runRecv(ctx context.Context, env Env, prog string, cfg relay.Config) error {
	if cfg.Log == nil {
		cfg.Log = logging.New(env.Stderr, "", slog.LevelInfo, logging.Plain)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = env.Stdout
	}
	if l, err := systemdListener(env.Getenv); err != nil {
		return err
	} else if l != nil {
		cfg.ReportListener = l
	}
	var totals clientTotals
	if prog == "dolly" {
		cfg.Finished = totals.watch(cfg.Finished)
	}
	n, err := relay.Listen(cfg)
	if err != nil {
		return err
	}
	if prog == "dolly" {
		// Listening: a script that waits for dolly's line may start the
		// server now.
		fmt.Fprintln(env.Stderr, dollyClientWaiting)
	}
	err = n.Serve(ctx)
	if err == nil && prog == "dolly" {
		if t, ok := totals.get(); ok {
			fmt.Fprint(env.Stderr, t)
			fmt.Fprintln(env.Stderr, dollyAllSent)
		}
	}
	if !errors.Is(err, relay.ErrKilled) {
		return err
	}
	return nil // told to stop (-K): the node logged by whom
}

// clientTotals keeps a dolly client's last session for dolly 0.72's
// closing line, "Total Transferred MB: 5, MB/s: 148.849".
type clientTotals struct {
	mu   sync.Mutex
	line string
}

// watch records v's totals, then calls next (if any).
func (c *clientTotals) watch(next func([]wire.SetupFile, wire.Verdict)) func([]wire.SetupFile, wire.Verdict) {
	return func(files []wire.SetupFile, v wire.Verdict) {
		var bytes int64
		for _, f := range v.Files {
			bytes += f.Bytes
		}
		rate := 0.0
		if v.Seconds > 0 {
			rate = float64(bytes) / 1e6 / v.Seconds
		}
		c.mu.Lock()
		c.line = ""
		if v.Error == "" {
			c.line = fmt.Sprintf("\nTotal Transferred MB: %.0f, MB/s: %.3f \n\n", float64(bytes)/1e6, rate)
		}
		c.mu.Unlock()
		if next != nil {
			next(files, v)
		}
	}
}

func (c *clientTotals) get() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.line, c.line != ""
}

// runKill tells the waiting nodes of list to stop (dolly -K).
func runKill(ctx context.Context, env Env, prog string, cfg sender.Config, list string) error {
	hosts, err := hostlist.Expand(list)
	if err != nil {
		return usagef("-K: %v", err)
	}
	res, err := sender.Kill(ctx, cfg, hosts)
	if err != nil {
		return usagef("-K: %v", err)
	}
	failed, stopped := 0, 0
	for _, r := range res {
		switch {
		case r.NotRunning:
			fmt.Fprintf(env.Stdout, "%s: not running (nothing listens there; nothing to stop)\n", r.Name)
		case r.Err != nil:
			failed++
			fmt.Fprintf(env.Stdout, "%s: not stopped: %v\n", r.Name, r.Err)
		default:
			stopped++
			fmt.Fprintf(env.Stdout, "%s: stopped\n", r.Name)
		}
	}
	if prog == "dolly" {
		fmt.Fprintf(env.Stderr, "Done. Killed %d out of %d clients.\n", stopped, len(res))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d node(s) not stopped", failed, len(res))
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// parseFlags sets a command's --help text (usage, then the flags), parses
// args and refuses stray arguments; hint follows the refusal, e.g.
// " (see herd send --help)".
func parseFlags(fs *pflag.FlagSet, env Env, usage string, args []string, hint string) error {
	return parseArgs(fs, env, usage, args, 0, "", hint)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
