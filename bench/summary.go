package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// GiB is 2^30 bytes.
const GiB = 1 << 30

// Line is a one-line account of a run for progress output.
func (r *Result) Line() string {
	s := r.Spec
	ok := 0
	var reasons []string
	for _, v := range r.Nodes {
		if v.OK {
			ok++
		} else if len(reasons) < 2 {
			reasons = append(reasons, v.Node+": "+v.Reason)
		}
	}
	l := fmt.Sprintf("%-16s N=%-2d %s: %6.2fs %7.1f MB/s/node %6.2f CPU-s/GiB rss %3.0f MiB, %d/%d verified",
		s.Suite, s.N, s.Image.Name, r.Wall.Seconds(), r.PerNodeMBs(), r.CPUPerGiB(), float64(r.MaxNodeRSSKiB())/1024, ok, s.N)
	if r.Err != "" {
		l += "; FAILED: " + r.Err
	}
	if len(reasons) > 0 {
		l += "; " + strings.Join(reasons, "; ")
	}
	return l
}

// PerNodeMBs is the image's size over the run's time: the rate at which
// every node got the whole image (10^6 bytes per second).
func (r *Result) PerNodeMBs() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Spec.Image.Size) / 1e6 / r.Wall.Seconds()
}

// GiBDelivered is what all the nodes wrote together.
func (r *Result) GiBDelivered() float64 {
	return float64(r.Spec.N) * float64(r.Spec.Image.Size) / GiB
}

// CPUPerGiB is the CPU time of every process (sender and nodes) per GiB
// delivered.
func (r *Result) CPUPerGiB() float64 {
	return (r.SenderCPU.Total() + r.NodesCPU.Total()).Seconds() / r.GiBDelivered()
}

// MaxNodeRSSKiB is the largest peak RSS of the run's node programs.
func (r *Result) MaxNodeRSSKiB() int64 {
	var m int64
	for _, v := range r.Nodes {
		m = max(m, v.MaxRSSKiB)
	}
	return m
}

// Efficiency is the payload rate of the busiest link over what the link
// can carry (Ceiling); 0 on unlimited links. In a ring every link
// carries the image once; in a star the server's port carries it N
// times.
func (r *Result) Efficiency() float64 {
	if r.Spec.Rate == 0 || r.Wall <= 0 {
		return 0
	}
	bytes := float64(r.Spec.Image.Wire)
	if r.Spec.Mode == "star" {
		bytes *= float64(r.Spec.N)
	}
	return bytes / r.Wall.Seconds() / Ceiling(r.Spec.Rate)
}

// Row is the summary of the repetitions of one run: medians, except
// where it says otherwise.
type Row struct {
	Suite, Mode, Image string
	Rate               int64
	N, Reps            int
	Size, Wire         int64
	Wall               time.Duration
	// PerNodeMBs and AggMBs are 10^6 bytes per second per node and for
	// all nodes together.
	PerNodeMBs, AggMBs float64
	// CPUPerGiB is CPU seconds of all processes per GiB delivered;
	// SenderCPUPerGiB and NodeCPUPerGiB split it by role.
	CPUPerGiB, SenderCPUPerGiB, NodeCPUPerGiB float64
	// NodeRSSMiB is the largest node peak RSS over all repetitions;
	// SenderRSSMiB the sender's (or server's).
	NodeRSSMiB, SenderRSSMiB float64
	// Rel is time(N)/time(1) within the suite (0 without an N=1 row).
	Rel float64
	// Efficiency is Result.Efficiency's median (0 unlimited).
	Efficiency float64
	// VsBare is a ring row's PerNodeMBs over the bare relay's at the same
	// rate, N and image in the same benchmark (0 without such a row).
	VsBare float64
	// Verified of Nodes copies, over all repetitions, had the image's
	// SHA-256; Failed runs did not complete.
	Verified, Nodes, Failed int
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Summarize groups the results by suite and N, in the order they first
// ran, and computes each group's row.
func Summarize(results []*Result) []Row {
	type key struct {
		suite string
		n     int
	}
	var order []key
	groups := map[key][]*Result{}
	for _, r := range results {
		k := key{r.Spec.Suite, r.Spec.N}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var rows []Row
	for _, k := range order {
		g := groups[k]
		s := g[0].Spec
		row := Row{Suite: s.Suite, Mode: s.Mode, Image: s.Image.Name, Rate: s.Rate, N: s.N, Reps: len(g), Size: s.Image.Size, Wire: s.Image.Wire}
		var wall, cpu, scpu, ncpu, eff []float64
		for _, r := range g {
			row.Nodes += r.Spec.N
			for _, v := range r.Nodes {
				if v.OK {
					row.Verified++
				}
			}
			if r.Err != "" || r.Wall <= 0 {
				row.Failed++
				continue
			}
			gib := r.GiBDelivered()
			wall = append(wall, r.Wall.Seconds())
			cpu = append(cpu, r.CPUPerGiB())
			scpu = append(scpu, r.SenderCPU.Total().Seconds()/gib)
			ncpu = append(ncpu, r.NodesCPU.Total().Seconds()/gib)
			eff = append(eff, r.Efficiency())
			row.NodeRSSMiB = max(row.NodeRSSMiB, float64(r.MaxNodeRSSKiB())/1024)
			row.SenderRSSMiB = max(row.SenderRSSMiB, float64(r.SenderMaxRSSKiB)/1024)
		}
		row.Wall = time.Duration(median(wall) * float64(time.Second))
		if row.Wall > 0 {
			row.PerNodeMBs = float64(row.Size) / 1e6 / row.Wall.Seconds()
			row.AggMBs = row.PerNodeMBs * float64(row.N)
		}
		row.CPUPerGiB, row.SenderCPUPerGiB, row.NodeCPUPerGiB, row.Efficiency = median(cpu), median(scpu), median(ncpu), median(eff)
		rows = append(rows, row)
	}
	one := map[string]time.Duration{}
	for _, r := range rows {
		if r.N == 1 {
			one[r.Suite] = r.Wall
		}
	}
	type same struct {
		rate  int64
		n     int
		image string
	}
	bare := map[same]float64{}
	for _, r := range rows {
		if r.Mode == "bare" && r.PerNodeMBs > 0 {
			bare[same{r.Rate, r.N, r.Image}] = r.PerNodeMBs
		}
	}
	for i := range rows {
		if t1 := one[rows[i].Suite]; t1 > 0 && rows[i].Wall > 0 {
			rows[i].Rel = rows[i].Wall.Seconds() / t1.Seconds()
		}
		if b := bare[same{rows[i].Rate, rows[i].N, rows[i].Image}]; b > 0 && rows[i].Mode == "ring" {
			rows[i].VsBare = rows[i].PerNodeMBs / b
		}
	}
	return rows
}

// Goal is one of the targets the benchmark checks.
type Goal struct {
	What   string
	Figure string
	Met    bool
	// Measured is false when the runs it needs were not in the plan.
	Measured bool
}

func (g Goal) String() string {
	switch {
	case !g.Measured:
		return "n/a   " + g.What + ": not measured in this plan"
	case g.Met:
		return "MET   " + g.What + ": " + g.Figure
	}
	return "MISSED " + g.What + ": " + g.Figure
}

// Goals checks the rows against herd's targets.
func Goals(rows []Row) []Goal {
	find := func(suite string, n int) *Row {
		for i := range rows {
			if rows[i].Suite == suite && rows[i].N == n && rows[i].Wall > 0 {
				return &rows[i]
			}
		}
		return nil
	}
	// rel is find's row when it has a time(1) to compare with.
	rel := func(suite string, n int) *Row {
		if r := find(suite, n); r != nil && r.Rel > 0 {
			return r
		}
		return nil
	}
	var gs []Goal
	// one checks a goal on row r; without r it is not measured.
	one := func(what string, r *Row, check func(r *Row) (figure string, met bool)) {
		g := Goal{What: what}
		if r != nil {
			g.Figure, g.Met = check(r)
			g.Measured = true
		}
		gs = append(gs, g)
	}
	one("400 Mbit/s ring: time(16)/time(1) <= 1.10", rel("ring-400M", 16), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.3f", r.Rel), r.Rel <= 1.10
	})
	var effs []string
	effOK, effSeen := true, false
	for _, r := range rows {
		if r.Suite == "ring-400M" && r.N <= 8 && r.Wall > 0 {
			effSeen = true
			effs = append(effs, fmt.Sprintf("N=%d %.1f%%", r.N, 100*r.Efficiency))
			effOK = effOK && r.Efficiency >= 0.97
		}
	}
	gs = append(gs, Goal{"400 Mbit/s ring: link efficiency >= 97% at every N <= 8", strings.Join(effs, ", "), effOK, effSeen})
	one("100 Mbit/s ring: time(32)/time(1) <= 1.05", rel("ring-100M", 32), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.3f", r.Rel), r.Rel <= 1.05
	})
	one("400 Mbit/s ring, N=8: <= 2.5 CPU-s per GiB delivered", find("ring-400M", 8), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.2f (sender %.2f, nodes %.2f)", r.CPUPerGiB, r.SenderCPUPerGiB, r.NodeCPUPerGiB), r.CPUPerGiB <= 2.5
	})
	one("unlimited: >= 700 MB/s through one node", find("ring-unlimited", 1), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.0f MB/s", r.PerNodeMBs), r.PerNodeMBs >= 700
	})
	one("unlimited: >= 200 MB/s per node at N=4", find("ring-unlimited", 4), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.0f MB/s", r.PerNodeMBs), r.PerNodeMBs >= 200
	})
	for _, rate := range []string{"400M", "unlimited"} {
		sp, de := find("sparse-"+rate, 1), find("dense-"+rate, 1)
		what := fmt.Sprintf("sparse image (10%% data), %s: <= 15%% of the dense image's time", rate)
		if sp != nil && de != nil {
			f := sp.Wall.Seconds() / de.Wall.Seconds()
			gs = append(gs, Goal{what, fmt.Sprintf("%.1f%% (%.2fs vs %.2fs)", 100*f, sp.Wall.Seconds(), de.Wall.Seconds()), f <= 0.15, true})
		} else {
			gs = append(gs, Goal{What: what})
		}
	}
	// Issue 21: a hop as fast as bare TCP.
	var vs []string
	vsOK, vsSeen := true, false
	for _, n := range []int{1, 4} {
		if r := find("ring-unlimited", n); r != nil && r.VsBare > 0 {
			vsSeen = true
			vs = append(vs, fmt.Sprintf("N=%d %.0f of %.0f MB/s = %.0f%%", n, r.PerNodeMBs, r.PerNodeMBs/r.VsBare, 100*r.VsBare))
			vsOK = vsOK && r.VsBare >= 0.80
		}
	}
	gs = append(gs, Goal{"issue 21, unlimited ring, N=1 and 4: >= 1.5x dolly 0.72's MB/s; no dolly here, stand-in: >= 80% of the bare relay (bare-unlimited) in the same run",
		strings.Join(vs, ", "), vsOK, vsSeen})
	gs = append(gs, Goal{What: "issue 21, loopback, one node, 1 GiB to tmpfs: >= 80% of a bare copy (make bench-go: BenchmarkRing's pct-of-bare, not this lab)"})
	one("issue 21, 400 Mbit/s ring: time(16)/time(1) <= 1.03", rel("ring-400M", 16), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.3f", r.Rel), r.Rel <= 1.03
	})
	one("issue 21, 400 Mbit/s ring, N=8: <= 1.5 CPU-s per GiB delivered", find("ring-400M", 8), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.2f (sender %.2f, nodes %.2f)", r.CPUPerGiB, r.SenderCPUPerGiB, r.NodeCPUPerGiB), r.CPUPerGiB <= 1.5
	})
	one("issue 21, 100 Mbit/s ring: time(64)/time(1) <= 1.05, every copy verified", rel("ring-100M", 64), func(r *Row) (string, bool) {
		return fmt.Sprintf("%.3f, %d/%d verified (image %s)", r.Rel, r.Verified, r.Nodes, r.Image), r.Rel <= 1.05 && r.Verified == r.Nodes && r.Failed == 0
	})
	var worst float64
	var where string
	for _, r := range rows {
		if r.Mode == "ring" && r.NodeRSSMiB > worst {
			worst, where = r.NodeRSSMiB, fmt.Sprintf("%s N=%d", r.Suite, r.N)
		}
	}
	gs = append(gs, Goal{"a node's peak RSS < 128 MiB", fmt.Sprintf("largest %.0f MiB (%s)", worst, where), worst > 0 && worst < 128, worst > 0})
	return gs
}

// Machine describes the machine the benchmark ran on.
func Machine() []string {
	var out []string
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				out = append(out, fmt.Sprintf("CPU: %s, %d logical CPUs", strings.TrimSpace(v), runtime.NumCPU()))
			}
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "flags" {
				if strings.Contains(" "+v+" ", " hypervisor ") {
					out = append(out, "virtual machine (the CPU flags name a hypervisor)")
				}
				break
			}
		}
		f.Close()
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				out = append(out, fmt.Sprintf("memory: %.1f GiB", float64(kb)/(1<<20)))
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out = append(out, "kernel: Linux "+strings.TrimSpace(string(data)))
	}
	out = append(out, "Go: "+runtime.Version())
	if rev, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		out = append(out, "herd: "+strings.TrimSpace(string(rev)))
	}
	out = append(out, "date: "+time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	return out
}
