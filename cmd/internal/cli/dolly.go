package cli

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/dollyconf"
	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/sender"
	"github.com/herdproject/herd/ring/wire"
	"github.com/spf13/pflag"
)

const dollyUsage = `Usage: dolly [-h] [-V] [-v] [-s|-S NAME] [-q] [-R|-4|-6 ARG] [-Y ARG] [-n] [-d] [-c SIZE] [-t SECONDS]
             [-u SIZE] [-b SIZE] [-a TIMEOUT] [-r RETRIES] [-o LOGFILE] [-P PASSWORD]
             [-f CONFIG | -I INFILE [-O OUTFILE|-] -H HOST[,HOST...] | -D DIR[,DIR] [-X PATTERN,...] -O TARGET]

dolly (herd's implementation) clones files, partitions and disks to many
machines at once through a virtual TCP ring: every client stores the stream
and forwards it to the next client at the same time.

Server (sender), with a configuration file or -I/-O/-H:
  dolly -v -s -f dolly.cfg
  dolly -v -r 40 -S SERVER -H node1,node2,node3 -I /dev/vdd -O /dev/vdd
  dolly -H 10.0.1.45-80 -I image.img -O /data/image.img
Client (receiver), one session then exit:
  dolly -v
  dolly -v --listen 127.0.0.2     several clients on one machine
Stop waiting clients:
  dolly -K node1,node2 [-P PASSWORD]

Exit status: 0 every client verified its data; 1 some client failed;
2 bad usage, configuration or input (nothing was sent).

dolly 0.72's options (getopt "a:c:f:r:vqo:S:shdnR46:VI:O:Y:H:D:P:X:K:")
all parse as there, argument or not: -S takes the server's name, and -6
and -Y take an argument that they ignore, as dolly 0.72 does. Where herd
differs on purpose:
  - a client that cannot be reached is reported failed (and taken back if
    it answers during the session), not left out of the ring silently;
  - a client that stops is bypassed, not waited for; every client hashes
    what it wrote (the tree digest, or SHA-256 with --digest sha256) and is
    done only once the server verified it;
  - a server killed and started again with the same command resumes the
    session (--state, --fresh);
  - -a 0 waits forever (dolly 0.72 refuses it); -O with a relative path is
    relative to the client's working directory (dolly 0.72 puts a / in
    front: the same for clients started by systemd, whose directory is /);
  - -c SIZE, -t, -u, -b are ETH dolly's (dolly 0.72's getopt lists -c but
    refuses it);
  - words that are not options are refused (dolly 0.72 skips them), bad
    usage exits 2 (dolly 0.72: 1), -h exits 0 (dolly 0.72: 1);
  - -K exits 1 when a running client refused to stop (wrong -P), where
    dolly 0.72 exits 0; a client with nothing running is no failure;
  - the summary table and Time/MBytes/s lines go to standard output;
    dolly 0.72's messages ("I am a dolly client, waiting for a server...",
    "Transfert to all client nodes done.", "All data Transmitted.",
    "Dolly version ...") go to standard error, as there.

Options:
`

// DollyVersion is the dolly release whose command line, configuration
// files and -o log herd's dolly follows; dolly -V prints it as dolly
// does ("Dolly version 0.72.0 ...").
const DollyVersion = "0.72.0"

// Dolly is the dolly command line (ETH dolly, openSUSE dolly 0.7x).
func Dolly(ctx context.Context, args []string, env Env) int {
	return status(env, "dolly", dolly(ctx, args, env))
}

// dollyFlags are dolly's options (dollyFlagSet).
type dollyFlags struct {
	help       *bool
	server     *bool
	serverName *string
	verbose    *bool
	config     *string
	input      *string
	output     *string
	hosts      *string
	timeout    *int
	retries    *int
	logFile    *string
	noSync     *bool
	quiet      *bool
	uncomp     *string
	dummy      *int
	sockBuf    *string
	block      *string
	activate   *bool
	password   *string
	kill       *string
	dirs       *string
	exclude    *string
	version    *bool
	listen     *string
	fanout     *int
	requireAll *bool
	state      *string
	fresh      *bool
	digest     *string
	ports      portFlags
}

// dollyFlagSet declares dolly's options: dolly 0.72's getopt string
// "a:c:f:r:vqo:S:shdnR46:VI:O:Y:H:D:P:X:K:" with the same arity, and
// herd's own, which dolly -h lists.
func dollyFlagSet(env Env) (*pflag.FlagSet, *dollyFlags) {
	fs := pflag.NewFlagSet("dolly", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	v := &dollyFlags{
		server:     fs.BoolP("server", "s", false, "this is the server (sender); warn when the configuration names another"),
		serverName: fs.StringP("server-name", "S", "", "this is the server, called `NAME` (the configuration's server line, the name the clients are told), without the host name check"),
		verbose:    fs.BoolP("verbose", "v", false, "verbose: set-up messages, and on clients their own progress"),
		config:     fs.StringP("config", "f", "", "configuration `FILE` (dolly, openSUSE dolly or dolly+ format)"),
		input:      fs.StringP("input", "I", "", "input `FILE` or device on the server"),
		output:     fs.StringP("output", "O", "", "output `FILE`, device or - (standard output) on the clients; default: same as -I"),
		hosts:      fs.StringP("hosts", "H", "", "comma-separated clients in ring order; ranges like 10.0.1.45-80"),
		timeout:    fs.IntP("timeout", "a", 0, "give up when no data moved for `SECONDS` (0: wait forever)"),
		retries:    fs.IntP("retries", "r", 5, "try to reach each client `N` times, a second apart (once at least)"),
		logFile:    fs.StringP("log", "o", "", "append statistics to `LOGFILE` (dolly's format)"),
		noSync:     fs.BoolP("no-sync", "n", false, "clients do not fsync before exit"),
		quiet:      fs.BoolP("quiet", "q", false, "no progress display"),
		uncomp:     fs.StringP("uncompressed-size", "c", "", "uncompressed `SIZE` of a compressed input, for the statistics"),
		dummy:      fs.IntP("dummy", "t", 0, "dummy mode: send generated data for about `SECONDS`; clients write nothing"),
		sockBuf:    fs.StringP("buffer-size", "u", "", "TCP socket buffer `SIZE` (k, M suffixes)"),
		block:      fs.StringP("block-size", "b", "", "transfer block `SIZE`: the largest read and frame (default 512K, 256K beyond 16 nodes)"),
		activate:   fs.BoolP("systemd", "d", false, "start the clients through their systemd socket on the report port (9996)"),
		password:   fs.StringP("password", "P", "", "ring `PASSWORD` (openSUSE dolly 0.72): server and clients authenticate each other and every block; clients take data only from holders of it"),
		kill:       fs.StringP("kill", "K", "", "stop the waiting clients `HOST[,HOST...]` (with -P when they have a password)"),
		dirs:       fs.StringP("dirs", "D", "", "copy these `DIR[,DIR]` trees to -O TARGET on the clients"),
		exclude:    fs.StringP("exclude", "X", "", "with -D, leave out `PATTERN[,PATTERN]`"),
		version:    fs.BoolP("version", "V", false, "print the version and exit"),
		help:       fs.BoolP("help", "h", false, "print this help and exit"),
		listen:     fs.String("listen", "", "client: listen on this `ADDRESS` only (and find yourself in the host list by it)"),
		fanout:     fs.Int("fanout", 0, "server: build a tree with `K` children per node (1: a chain)"),
		requireAll: fs.Bool("require-all", false, "server: abort before writing when any client fails set-up"),
		state:      fs.String("state", "", "server: keep what a restarted server needs to resume the session in `FILE` (default: one per command under "+stateDirHelp+"; none: keep nothing)"),
		fresh:      fs.Bool("fresh", false, "server: start a new session even when the state file holds an unfinished one of other input data"),
		digest:     fs.String("digest", string(digest.Default), "server: `ALG` the clients and the server verify every file with: tree (BLAKE3 over 1 MiB leaves, holes free) or sha256"),
	}
	// Options whose presence is all that counts (fs.Changed).
	fs.BoolP("resolve", "R", false, "resolve host names (to IPv4 addresses unless -6; the default)")
	fs.BoolP("ipv4", "4", false, "resolve host names to IPv4 addresses")
	fs.StringP("ipv6", "6", "", "resolve host names to IPv6 addresses; as in dolly 0.72, whose getopt string gives -6 an argument (`ARG`), the next word is taken and ignored")
	fs.StringP("hyphen-normal", "Y", "", "treat '-' in host names as any other character when a client finds itself; as in dolly 0.72, the next word (`ARG`) is taken and ignored")
	v.ports = addPortFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, dollyUsage)
		fs.PrintDefaults()
	}
	return fs, v
}

func dolly(ctx context.Context, args []string, env Env) error {
	fs, v := dollyFlagSet(env)
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	if *v.help {
		fs.Usage()
		return pflag.ErrHelp
	}
	if *v.version {
		// dolly 0.72's words, on its stream: scripts read them.
		fmt.Fprintf(env.Stderr, "Dolly version %s (herd %s)\n", DollyVersion, Version)
		return nil
	}
	if fs.NArg() > 0 {
		return strayArgs(fs.Args())
	}
	var key wire.Key
	if fs.Changed("password") {
		var err error
		if key, err = checkKey(*v.password); err != nil {
			return usagef("-P: %v", err)
		}
	}
	if err := checkTimeout(*v.timeout); err != nil {
		return err
	}
	if *v.kill != "" {
		cfg := sender.Config{Key: key}
		if err := v.ports.apply(&cfg.DataPort, &cfg.ControlPort, &cfg.ReportPort); err != nil {
			return err
		}
		return runKill(ctx, env, "dolly", cfg, *v.kill)
	}
	// As in dolly 0.72: -s, -S, -I, -O, -H and -D make the server; -f
	// alone is a client reading the same file as the server.
	isServer := *v.server || fs.Changed("server-name") || *v.input != "" || fs.Changed("output") || *v.hosts != "" || *v.dummy > 0 || *v.dirs != ""
	if !isServer {
		cfg := relay.Config{ListenAddr: *v.listen, Once: true, Verbose: *v.verbose, NoSync: *v.noSync, Timeout: time.Duration(*v.timeout) * time.Second, Key: key}
		if err := v.ports.apply(&cfg.DataPort, &cfg.ControlPort, &cfg.ReportPort); err != nil {
			return err
		}
		if *v.config != "" {
			allow, err := clientConfig(env, *v.config, *v.listen)
			if err != nil {
				return err
			}
			cfg.Allow = allow
		}
		return runRecv(ctx, env, "dolly", cfg)
	}

	o := &sendOpts{prog: "dolly", verbose: *v.verbose, quiet: *v.quiet, logFile: *v.logFile, state: *v.state}
	o.cfg.Fresh = *v.fresh
	if *v.server {
		o.serverFlag = "-s"
	}
	c := &o.cfg
	var err error
	if *v.block != "" {
		if c.ChunkSize, err = parseSize(*v.block, "-b"); err != nil {
			return err
		}
	}
	if *v.sockBuf != "" {
		if c.SockBuf, err = parseSize(*v.sockBuf, "-u"); err != nil {
			return err
		}
	}
	if *v.uncomp != "" {
		n, err := parseSize(*v.uncomp, "-c")
		if err != nil {
			return err
		}
		o.uncompSize = int64(n)
	}
	switch {
	case *v.config != "":
		if *v.input != "" || *v.hosts != "" || *v.dirs != "" {
			return usagef("-f cannot be combined with -I, -H or -D")
		}
		if err := loadConfig(env, "dolly", *v.config, &c.Plan); err != nil {
			return err
		}
		if *v.output != "" {
			for i := range c.Plan.Files {
				c.Plan.Files[i].Output = *v.output
			}
		}
	default:
		if *v.hosts == "" {
			return errNoClients
		}
		if err := commandLinePlan(&c.Plan, *v.input, *v.output, *v.hosts, *v.dirs, *v.exclude, *v.dummy > 0); err != nil {
			return err
		}
	}
	if *v.fanout > 0 {
		c.Plan.Fanout = *v.fanout
	}
	c.Timeout = time.Duration(*v.timeout) * time.Second
	c.Retries = max(*v.retries, 1) // dolly 0.72 tries once at least
	c.NoSync = *v.noSync
	c.Dummy = time.Duration(*v.dummy) * time.Second
	c.Activate = *v.activate
	c.RequireAll = *v.requireAll
	c.Key = key
	if c.Digest, err = parseDigest(*v.digest); err != nil {
		return err
	}
	c.Network = "ip4"
	if fs.Changed("ipv6") && !fs.Changed("ipv4") {
		c.Network = "ip6"
	}
	if fs.Changed("hyphen-normal") {
		c.Plan.HyphenNormal = true
	}
	if fs.Changed("server-name") {
		if *v.serverName == "" {
			return usagef("-S: '' is not a valid server name")
		}
		c.Name = *v.serverName
	} else {
		c.Name = dollyHostname(env)
	}
	if err := v.ports.apply(&c.DataPort, &c.ControlPort, &c.ReportPort); err != nil {
		return err
	}
	return runSend(ctx, env, o)
}

// parseDigest reads --digest.
func parseDigest(s string) (digest.Alg, error) {
	if s == "" {
		return "", usagef("--digest: empty: want %s", digest.Names())
	}
	alg, err := digest.Parse(s)
	if err != nil {
		return "", usagef("--digest: %v", err)
	}
	return alg, nil
}

// dollyHostname is the server's own name as dolly 0.72 finds it without
// -S: $HOSTNAME, else the host name. It is the name the clients are told
// and the -o log's "Server : 'NAME'".
func dollyHostname(env Env) string {
	if env.Getenv != nil {
		if hn := env.Getenv("HOSTNAME"); hn != "" {
			return hn
		}
	}
	hn, _ := os.Hostname()
	return hn
}

// checkTimeout refuses a negative -a. dolly 0.72 refuses 0 too; herd
// takes it as "wait forever", its default.
func checkTimeout(seconds int) error {
	if seconds < 0 {
		return usagef("-a %d: want the seconds without data before giving up, 0 to wait forever", seconds)
	}
	return nil
}

// strayArgs refuses words that are not options. dolly 0.72's getopt
// skips them silently, so "dolly -v P password" (the example of its own
// -h) runs a client without the password its user meant; herd says so.
func strayArgs(args []string) error {
	if args[0] == "P" && len(args) > 1 {
		return usagef("unexpected arguments %q: did you mean -P %s? (dolly 0.72 ignores words that are not options; herd refuses them)", strings.Join(args, " "), args[1])
	}
	return usagef("unexpected argument %q: dolly takes only options (dolly 0.72 ignores other words; herd refuses them; see dolly -h)", args[0])
}

// clientConfig reads the configuration file a client was started with
// (dolly -f on every node, the server's file): the client finds itself
// among its clients, as dolly does, and writes only the file's outputs
// (returned as an allow-list, nil when an output is standard output). The
// infile is the server's: it is not opened, nor looked for.
func clientConfig(env Env, path, listen string) ([]string, error) {
	c, err := dollyconf.ParseFile(path)
	if err != nil {
		return nil, usageError{err}
	}
	for _, w := range c.Warnings {
		fmt.Fprintf(env.Stderr, "dolly: warning: %s\n", w)
	}
	hosts := make([]hostlist.Resolved, len(c.Plan.Hosts))
	for i, h := range c.Plan.Hosts {
		hosts[i].Name = h
		if a, err := netip.ParseAddr(h); err == nil {
			hosts[i].Addr = a.Unmap()
		}
	}
	var preferred []netip.Addr
	if a, err := netip.ParseAddr(listen); err == nil {
		preferred = append(preferred, a)
	}
	ifaces, _ := hostlist.InterfaceAddrs()
	hn, _ := os.Hostname()
	if _, _, err := hostlist.FindSelf(hosts, preferred, ifaces, env.Getenv, hn, c.Plan.HyphenNormal); err != nil {
		return nil, usagef("%s: %v: this machine is not among the file's clients (%s); start it with the file that lists it, or without -f", path, err, strings.Join(c.Plan.Hosts, ","))
	}
	var allow []string
	for _, f := range c.Plan.Files {
		if f.Output == "-" {
			return nil, nil
		}
		out, err := filepath.Abs(f.Output)
		if err != nil {
			return nil, usagef("%s: outfile %s: %v", path, f.Output, err)
		}
		if real, err := filepath.EvalSymlinks(out); err == nil {
			out = real
		}
		allow = append(allow, out)
		if f.SplitOut > 0 {
			allow = append(allow, out+"_*")
		}
	}
	return allow, nil
}

// errNoClients is the sender's refusal to run without a host list.
var errNoClients = usagef("no clients: give -H HOST[,HOST...] or -f CONFIG")

// commandLinePlan builds a one-file plan from -I/-O/-H (or -D/-X).
func commandLinePlan(p *plan.Session, input, output, hosts, dirs, exclude string, dummy bool) error {
	if hosts != "" { // "": the caller sets them (herd serve: per session)
		list, err := hostlist.Expand(hosts)
		if err != nil {
			return usagef("-H: %w", err)
		}
		p.Hosts = list
	}
	f := plan.File{Input: input, Output: output}
	switch {
	case dirs != "":
		if input != "" {
			return usagef("-D and -I cannot be combined: -D copies directories, -I a file or device")
		}
		if output == "" {
			return usagef("-D needs -O TARGET, the directory the trees go under on the clients")
		}
		f.Dirs, f.Exclude, f.Mode = splitList(dirs), splitList(exclude), plan.Cooked
	case dummy:
		if input == "" {
			f.Input = "dummy"
		}
		if f.Output == "" {
			f.Output = "dummy"
		}
	case input == "":
		return usagef("no input: give -I FILE (or -f CONFIG, or -D DIR)")
	}
	if f.Output == "" {
		f.Output = f.Input
	}
	if exclude != "" && dirs == "" {
		return usagef("-X only applies to -D")
	}
	p.Files = []plan.File{f}
	return nil
}

// portFlags are the port options every spelling shares.
type portFlags struct{ data, control, report *int }

func addPortFlags(fs *pflag.FlagSet) portFlags {
	return portFlags{
		data:    fs.Int("data-port", relay.DefaultDataPort, "data `PORT`"),
		control: fs.Int("control-port", relay.DefaultControlPort, "control `PORT`"),
		report:  fs.Int("report-port", relay.DefaultReportPort, "report (ping, systemd socket) `PORT`"),
	}
}

// apply sets the three ports, refusing one outside 1..65535 or two alike.
func (p portFlags) apply(data, control, report *int) error {
	if err := checkPorts(*p.data, *p.control, *p.report, "--data-port", "--control-port", "--report-port"); err != nil {
		return err
	}
	*data, *control, *report = *p.data, *p.control, *p.report
	return nil
}

// checkPorts refuses a port outside 1..65535, and the same port for two
// jobs; names are the ports' flags, in the same order.
func checkPorts(data, control, report int, names ...string) error {
	ports := []int{data, control, report}
	for i, n := range ports {
		if n < 1 || n > 65535 {
			return usagef("%s %d: want a TCP port between 1 and 65535", names[i], n)
		}
		for j := range i {
			if ports[j] == n {
				return usagef("%s and %s are both %d: the ring needs three different ports", names[j], names[i], n)
			}
		}
	}
	return nil
}

// parseSize reads 4096, 64k, 1M, 2G (powers of 1024).
func parseSize(s, flag string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, usagef("%s %q: want a positive size like 4096, 64k or 1M", flag, s)
	}
	return n * mult, nil
}

// systemdListener returns the socket systemd passed (LISTEN_FDS), if any.
func systemdListener(getenv func(string) string) (net.Listener, error) {
	if getenv == nil || getenv("LISTEN_FDS") != "1" || getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	f := os.NewFile(3, "systemd-socket")
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("socket from systemd (LISTEN_FDS): %w", err)
	}
	f.Close()
	return l, nil
}

var _ = sender.Send
