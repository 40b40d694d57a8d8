package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/herdproject/herd/ring/relay"
	"github.com/spf13/pflag"
)

// dollyPlusPorts are dolly+'s port options: --dataport, --cntlport,
// --report, and -P BASE meaning report=BASE, control=BASE+1, data=BASE+2.
type dollyPlusPorts struct{ data, cntl, report, base *int }

func addDollyPlusPorts(fs *pflag.FlagSet) dollyPlusPorts {
	return dollyPlusPorts{
		data:   fs.Int("dataport", relay.DefaultDataPort, "`PORT` for the data transfer"),
		cntl:   fs.Int("cntlport", relay.DefaultControlPort, "`PORT` for control"),
		report: fs.Int("report", relay.DefaultReportPort, "`PORT` for the report (ping) mode"),
		base:   fs.IntP("portbase", "P", 0, "port `BASE`: report=BASE, control=BASE+1, data=BASE+2"),
	}
}

func (p dollyPlusPorts) apply(fs *pflag.FlagSet, data, control, report *int) error {
	*data, *control, *report = *p.data, *p.cntl, *p.report
	if fs.Changed("portbase") {
		if *p.base <= 0 || *p.base > 65533 {
			return usagef("-P %d: the port base must be between 1 and 65533", *p.base)
		}
		if fs.Changed("dataport") || fs.Changed("cntlport") || fs.Changed("report") {
			return usagef("-P sets all three ports: do not combine it with --dataport, --cntlport or --report")
		}
		*report, *control, *data = *p.base, *p.base+1, *p.base+2
	}
	return checkPorts(*data, *control, *report, "--dataport", "--cntlport", "--report")
}

// DollyS is dolly+'s server: dollyS -v -f CONFIG.
func DollyS(ctx context.Context, args []string, env Env) int {
	return status(env, "dollyS", dollyS(ctx, args, env))
}

func dollyS(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("dollyS", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	verbose := fs.BoolP("verbose", "v", false, "verbose")
	config := fs.StringP("config", "f", "", "configuration `FILE` (dolly+ iofiles, or dolly's format)")
	timeout := fs.IntP("timeout", "a", 0, "give up when no data moved for `SECONDS`")
	quiet := fs.BoolP("quiet", "q", false, "no progress display")
	ports := addDollyPlusPorts(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, "Usage: dollyS [-v] -f CONFIG [--dataport P] [--cntlport P] [--report P] [-P BASE]\n\ndolly+'s server: sends the configuration's iofiles through the ring.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	if *config == "" {
		return usagef("no configuration file: dollyS -v -f CONFIG")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	o := &sendOpts{prog: "dollyS", verbose: *verbose, quiet: *quiet}
	if err := ports.apply(fs, &o.cfg.DataPort, &o.cfg.ControlPort, &o.cfg.ReportPort); err != nil {
		return err
	}
	if err := loadConfig(env, "dollyS", *config, &o.cfg.Plan); err != nil {
		return err
	}
	o.cfg.Timeout = time.Duration(*timeout) * time.Second
	return runSend(ctx, env, o)
}

// DollyC is dolly+'s client: dollyC -v.
func DollyC(ctx context.Context, args []string, env Env) int {
	return status(env, "dollyC", dollyC(ctx, args, env))
}

func dollyC(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("dollyC", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	verbose := fs.BoolP("verbose", "v", false, "verbose: print progress")
	listen := fs.String("listen", "", "listen on this `ADDRESS` only")
	timeout := fs.IntP("timeout", "a", 0, "give up when no data moved for `SECONDS`")
	ports := addDollyPlusPorts(fs)
	if err := parseFlags(fs, env, "Usage: dollyC [-v] [--listen ADDR] [--dataport P] [--cntlport P] [--report P] [-P BASE]\n\ndolly+'s client: receives one session, writes and forwards it.\n\n", args, ""); err != nil {
		return err
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	cfg := relay.Config{ListenAddr: *listen, Once: true, Verbose: *verbose, Timeout: time.Duration(*timeout) * time.Second}
	if err := ports.apply(fs, &cfg.DataPort, &cfg.ControlPort, &cfg.ReportPort); err != nil {
		return err
	}
	return runRecv(ctx, env, "dollyC", cfg)
}
