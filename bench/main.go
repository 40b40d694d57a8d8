package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Main is herd-bench's command line; it returns the exit status: 0 every
// run ran and every node verified, 1 a run failed or a node did not
// verify, 2 bad usage or a lab that could not be built.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "a smoke test of a few minutes: small images, N = 1 and 4")
	reps := fs.Int("reps", 3, "repetitions of each ring run and unlimited star run (medians are reported)")
	starReps := fs.Int("star-reps", 1, "repetitions of each star run on shaped links (link-bound, so repeatable)")
	only := fs.String("only", "", "run only the suites matching `REGEXP` (ring-400M, star-100M, sparse-unlimited, ...)")
	out := fs.String("out", "docs/bench", "write results.csv, runs.csv, README.md and time-vs-n.svg to `DIR`")
	herd := fs.String("herd", "", "herd `BINARY` (default: herd next to herd-bench)")
	list := fs.Bool("list", false, "list the suites and exit")
	keep := fs.Bool("keep", false, "keep the work directory (logs) afterwards")
	sendArgs := fs.String("send-args", "", "extra herd send `OPTIONS` for every ring run (a lever: \"-b 256K --chunks 16\")")
	gro := fs.Bool("gro", false, "turn on generic receive offload on every port (ethtool)")
	nList := fs.String("n", "", "run these `N,N,...` instead of each suite's")
	sizeArg := fs.String("size", "", "give every image of the plan this `SIZE` (128M, 1G; a sparse one keeps its share of data): N=64 at 100 Mbit/s wants --size 128M")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herd-bench [OPTIONS]\n\nMeasure herd's ring against a star of HTTP clients on a lab network of\nnamespaces (root), and write the figures to --out.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herd-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *reps < 1 || *starReps < 1 {
		fmt.Fprintln(stderr, "herd-bench: --reps and --star-reps must be at least 1")
		return 2
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(stderr, "herd-bench: --only: %v\n", err)
			return 2
		}
	}
	var size int64
	if *sizeArg != "" {
		var err error
		if size, err = ParseSize(*sizeArg); err != nil {
			fmt.Fprintf(stderr, "herd-bench: --size: %v\n", err)
			return 2
		}
	}
	plan := DefaultScenario(*quick, *reps, *starReps).Filter(re).Resize(size)
	if *nList != "" {
		var ns []int
		for _, f := range strings.Split(*nList, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 100 {
				fmt.Fprintf(stderr, "herd-bench: -n: %q is not a node count from 1 to 100\n", f)
				return 2
			}
			ns = append(ns, n)
		}
		for i := range plan.Suites {
			plan.Suites[i].Ns = ns
		}
	}
	if *list || len(plan.Suites) == 0 {
		for _, s := range DefaultScenario(*quick, *reps, *starReps).Suites {
			fmt.Fprintf(stdout, "%-18s %s %-9s image %-7s N=%v reps %d\n", s.Name, s.Mode, RateName(s.Rate), s.Image, s.Ns, s.Reps)
		}
		if len(plan.Suites) == 0 {
			fmt.Fprintf(stderr, "herd-bench: --only %q matches no suite\n", *only)
			return 2
		}
		return 0
	}
	b := &bencher{stdout: stdout, stderr: stderr, plan: plan, out: *out, keep: *keep, sendArgs: strings.Fields(*sendArgs), args: args, gro: *gro}
	if err := b.setup(ctx, *herd); err != nil {
		fmt.Fprintf(stderr, "herd-bench: %v\n", err)
		b.teardown()
		return 2
	}
	code := b.run(ctx)
	b.teardown()
	return code
}

// ParseSize reads a size in bytes with an optional K, M or G suffix
// (powers of 1024), at least 1 MiB and a multiple of 4 KiB.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	if k := len(num); k > 0 {
		switch num[k-1] {
		case 'K':
			mult, num = 1<<10, num[:k-1]
		case 'M':
			mult, num = 1<<20, num[:k-1]
		case 'G':
			mult, num = 1<<30, num[:k-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (64<<30)/mult {
		return 0, fmt.Errorf("%q is not a size such as 128M or 1G", s)
	}
	if n*mult < 1<<20 || n*mult%4096 != 0 {
		return 0, fmt.Errorf("%q: want at least 1M, a multiple of 4K", s)
	}
	return n * mult, nil
}

type bencher struct {
	stdout, stderr io.Writer
	plan           Scenario
	out            string
	keep           bool
	sendArgs       []string
	args           []string // the command line, for the report
	gro            bool

	work    string
	mounted bool
	lab     *Lab
	cg      *Cgroup
	runner  *Runner
	images  map[string]*Image
	seeds   map[string]uint64 // each image's seed, whenever it is made
}

// setup checks the tools, makes the work tmpfs, the lab and the cgroups.
// Images are made when a run first needs them (image).
func (b *bencher) setup(ctx context.Context, herd string) error {
	if err := Available(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if herd == "" {
		herd = filepath.Join(filepath.Dir(self), "herd")
	}
	if _, err := os.Stat(herd); err != nil {
		return fmt.Errorf("herd binary: %w (build it with 'make build', or give --herd)", err)
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	b.work, err = os.MkdirTemp("", "herd-bench-")
	if err != nil {
		return err
	}
	// Images and the star's web root share one tmpfs: the sender reads
	// from memory, as from a warm page cache, and hard links work.
	if err := unix.Mount("tmpfs", b.work, "tmpfs", 0, "mode=0755,size=16g"); err != nil {
		return fmt.Errorf("mount the work tmpfs on %s: %w", b.work, err)
	}
	b.mounted = true
	mnt := filepath.Join(b.work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	b.images, b.seeds = map[string]*Image{}, map[string]uint64{}
	keys := make([]string, 0, len(b.plan.Images))
	for k := range b.plan.Images {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		b.seeds[k] = uint64(i + 1)
	}
	prefix := fmt.Sprintf("hb%d", os.Getpid())
	if b.lab, err = NewLab(ctx, prefix, b.plan.MaxN()+1); err != nil {
		return err
	}
	if b.gro {
		if err := b.lab.SetGRO(ctx, true); err != nil {
			return err
		}
	}
	if b.cg, err = NewCgroupRoot("herd-bench-" + fmt.Sprint(os.Getpid())); err != nil {
		return err
	}
	b.runner = &Runner{Lab: b.lab, Herd: herd, Self: self, Work: b.work, Mnt: mnt, CG: b.cg}
	return nil
}

// teardown removes the lab, the cgroups and the work directory.
func (b *bencher) teardown() {
	if b.lab != nil {
		b.lab.Close()
	}
	if b.cg != nil {
		if err := b.cg.Remove(); err != nil {
			fmt.Fprintf(b.stderr, "herd-bench: %v\n", err)
		}
	}
	if b.work == "" {
		return
	}
	if b.keep {
		if b.mounted {
			fmt.Fprintf(b.stderr, "herd-bench: work directory kept: %s (a tmpfs: umount it when done)\n", b.work)
		}
		return
	}
	if b.mounted {
		if err := unix.Unmount(b.work, 0); err != nil {
			fmt.Fprintf(b.stderr, "herd-bench: unmount %s: %v\n", b.work, err)
			return
		}
	}
	_ = os.RemoveAll(b.work)
}

// run carries out every run of the plan, writing runs.csv as it goes,
// then the summary.
func (b *bencher) run(ctx context.Context) int {
	var results []*Result
	failed := 0
	var specs []Spec
	var keys []string        // specs[i]'s image
	last := map[string]int{} // the last spec that needs each image
	for _, group := range b.plan.Paired() {
		reps := 0
		for _, s := range group {
			reps = max(reps, s.Reps)
		}
		for rep := 1; rep <= reps; rep++ {
			for _, s := range group {
				for _, n := range s.Ns {
					if rep > s.Reps {
						continue
					}
					last[s.Image] = len(specs)
					specs = append(specs, Spec{Suite: s.Name, Mode: s.Mode, N: n, Rate: s.Rate, Rep: rep, SendArgs: b.sendArgs})
					keys = append(keys, s.Image)
				}
			}
		}
	}
	start := time.Now()
	code := 0
	var err error
	for i, s := range specs {
		if ctx.Err() != nil {
			fmt.Fprintf(b.stderr, "herd-bench: interrupted after %d of %d runs; the report covers those\n", len(results), len(specs))
			code = 1
			break
		}
		if s.Image, err = b.image(keys[i]); err != nil {
			fmt.Fprintf(b.stderr, "herd-bench: %v\n", err)
			code = 1
			break
		}
		r, err := b.runner.Run(ctx, s)
		if last[keys[i]] == i {
			b.dropImage(keys[i])
		}
		if err != nil {
			fmt.Fprintf(b.stderr, "herd-bench: %v: %v\n", s, err)
			code = 1
			break
		}
		results = append(results, r)
		fmt.Fprintf(b.stderr, "[%d/%d %s] %s\n", i+1, len(specs), time.Since(start).Round(time.Second), r.Line())
		if !r.Verified() {
			failed++
		}
		if err := WriteRuns(filepath.Join(b.out, "runs.csv"), results); err != nil {
			fmt.Fprintf(b.stderr, "herd-bench: %v\n", err)
			return 1
		}
	}
	if len(results) == 0 {
		return 1
	}
	rows := Summarize(results)
	machine := append(Machine(), "command: herd-bench "+strings.Join(b.args, " "))
	if err := WriteReport(b.out, rows, machine); err != nil {
		fmt.Fprintf(b.stderr, "herd-bench: %v\n", err)
		return 1
	}
	for _, g := range Goals(rows) {
		fmt.Fprintln(b.stdout, g)
	}
	fmt.Fprintf(b.stdout, "%d runs in %s; results in %s\n", len(results), time.Since(start).Round(time.Second), b.out)
	if failed > 0 {
		fmt.Fprintf(b.stdout, "%d run(s) had a node that did not verify\n", failed)
		return 1
	}
	return code
}

// image returns the plan's image k, made on first use. A full run would
// otherwise keep every image (10 GiB) in the work tmpfs from the start,
// and the memory they take slowed the runs that did not need them: 400
// Mbit/s, N=16 took 7.2, 7.0 and 7.0 s beside 10 GiB of tmpfs, against
// 5.9–6.0 s without.
func (b *bencher) image(k string) (*Image, error) {
	if im, ok := b.images[k]; ok {
		return im, nil
	}
	spec, ok := b.plan.Images[k]
	if !ok {
		return nil, fmt.Errorf("no image %q in the plan", k)
	}
	t := time.Now()
	im, err := spec.Make(b.work, b.seeds[k])
	if err != nil {
		return nil, err
	}
	b.images[k] = im
	fmt.Fprintf(b.stderr, "image %s: %s, %s of data, %s on the wire (%.1fs)\n", k, im.Name, MiB(im.Data), MiB(im.Wire), time.Since(t).Seconds())
	return im, nil
}

// dropImage removes image k and the star's link to it once no later run
// needs it.
func (b *bencher) dropImage(k string) {
	im, ok := b.images[k]
	if !ok {
		return
	}
	_ = os.Remove(filepath.Join(b.work, "www", filepath.Base(im.Path)))
	_ = os.Remove(im.Path)
}
