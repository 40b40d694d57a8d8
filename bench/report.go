package bench

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// WriteRuns writes every run, one CSV line each, to path.
func WriteRuns(path string, results []*Result) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"suite", "mode", "image", "rate_mbit", "n", "rep", "image_bytes", "wire_bytes", "wall_s",
		"mb_s_per_node", "cpu_s_per_gib", "sender_cpu_s", "nodes_cpu_s", "sender_rss_mib", "max_node_rss_mib",
		"efficiency", "verified", "error"})
	for _, r := range results {
		s := r.Spec
		ok := 0
		var errs []string
		for _, v := range r.Nodes {
			if v.OK {
				ok++
			} else {
				errs = append(errs, v.Node+": "+v.Reason)
			}
		}
		if r.Err != "" {
			errs = append([]string{r.Err}, errs...)
		}
		_ = w.Write([]string{s.Suite, s.Mode, s.Image.Name, strconv.FormatInt(s.Rate/Mbit, 10), strconv.Itoa(s.N), strconv.Itoa(s.Rep),
			strconv.FormatInt(s.Image.Size, 10), strconv.FormatInt(s.Image.Wire, 10), f3(r.Wall.Seconds()),
			f1(r.PerNodeMBs()), f3(r.CPUPerGiB()), f3(r.SenderCPU.Total().Seconds()), f3(r.NodesCPU.Total().Seconds()),
			f1(float64(r.SenderMaxRSSKiB) / 1024), f1(float64(r.MaxNodeRSSKiB()) / 1024), f3(r.Efficiency()),
			fmt.Sprintf("%d/%d", ok, s.N), strings.Join(errs, "; ")})
	}
	w.Flush()
	return writeOut(path, b.Bytes())
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f3(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func writeOut(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// WriteReport writes results.csv (the summary rows), time-vs-n.svg and
// README.md (machine, goals, tables) to dir.
func WriteReport(dir string, rows []Row, machine []string) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"suite", "mode", "image", "rate_mbit", "n", "reps", "image_bytes", "wire_bytes", "wall_s", "time_n_over_time_1",
		"mb_s_per_node", "mb_s_aggregate", "cpu_s_per_gib", "sender_cpu_s_per_gib", "node_cpu_s_per_gib",
		"max_node_rss_mib", "sender_rss_mib", "link_efficiency", "verified", "vs_bare"})
	for _, r := range rows {
		_ = w.Write([]string{r.Suite, r.Mode, r.Image, strconv.FormatInt(r.Rate/Mbit, 10), strconv.Itoa(r.N), strconv.Itoa(r.Reps),
			strconv.FormatInt(r.Size, 10), strconv.FormatInt(r.Wire, 10), f3(r.Wall.Seconds()), f3(r.Rel),
			f1(r.PerNodeMBs), f1(r.AggMBs), f3(r.CPUPerGiB), f3(r.SenderCPUPerGiB), f3(r.NodeCPUPerGiB),
			f1(r.NodeRSSMiB), f1(r.SenderRSSMiB), f3(r.Efficiency), fmt.Sprintf("%d/%d", r.Verified, r.Nodes), f3(r.VsBare)})
	}
	w.Flush()
	if err := writeOut(filepath.Join(dir, "results.csv"), b.Bytes()); err != nil {
		return err
	}
	if err := writeOut(filepath.Join(dir, "time-vs-n.svg"), Plot(rows)); err != nil {
		return err
	}
	return writeOut(filepath.Join(dir, "README.md"), Markdown(rows, machine))
}

// Markdown is the report: machine, goals, one table per suite.
func Markdown(rows []Row, machine []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# herd benchmark: ring vs star\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (cmd/herd-bench, package bench). Each node is a network namespace with its own private tmpfs; ")
	fmt.Fprintf(&b, "every port of the lab's bridge is shaped in both directions (tbf) to the rate shown, or not at all (\"unlimited\": CPU-bound). ")
	fmt.Fprintf(&b, "Figures are medians over the repetitions; every copy was hashed on its node after the run. ")
	fmt.Fprintf(&b, "What was tried to get here, and what did not help: [levers.md](levers.md).\n\n")
	fmt.Fprintf(&b, "## Machine\n\n")
	for _, m := range machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	fmt.Fprintf(&b, "\n## Goals\n\n| goal | figure | |\n|---|---|---|\n")
	for _, g := range Goals(rows) {
		verdict := "not measured"
		switch {
		case g.Measured && g.Met:
			verdict = "met"
		case g.Measured:
			verdict = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.What, g.Figure, verdict)
	}
	fmt.Fprintf(&b, "\n![time vs N](time-vs-n.svg)\n\n## Runs\n\n")
	fmt.Fprintf(&b, "Columns: wall time; time(N)/time(1); MB/s per node (image size / wall time: every node has the whole image); ")
	fmt.Fprintf(&b, "vs bare: the ring's MB/s over the bare relay's (bench/bare: read, pwrite, forward; no framing, hashing or verification) at the same rate, N and image in this run; ")
	fmt.Fprintf(&b, "aggregate MB/s; CPU seconds per GiB delivered, all processes (sender + nodes, from per-role cgroups); ")
	fmt.Fprintf(&b, "largest peak RSS of a node; link efficiency (payload rate on the busiest link over the link's TCP payload ceiling, ")
	fmt.Fprintf(&b, "%.2f MB/s at 400 Mbit/s, %.2f MB/s at 100 Mbit/s); copies verified.\n", Ceiling(400*Mbit)/1e6, Ceiling(100*Mbit)/1e6)
	suite := ""
	for _, r := range rows {
		if r.Suite != suite {
			suite = r.Suite
			fmt.Fprintf(&b, "\n### %s: %s, %s, image %s (%s on the wire)\n\n", r.Suite, r.Mode, RateName(r.Rate), r.Image, MiB(r.Wire))
			fmt.Fprintf(&b, "| N | reps | wall s | t(N)/t(1) | MB/s/node | vs bare | aggregate MB/s | CPU-s/GiB (sender + nodes) | node RSS MiB | link eff. | verified |\n")
			fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		eff := "–"
		if r.Rate > 0 {
			eff = fmt.Sprintf("%.1f%%", 100*r.Efficiency)
		}
		rel := "–"
		if r.Rel > 0 {
			rel = fmt.Sprintf("%.3f", r.Rel)
		}
		vs := "–"
		if r.VsBare > 0 {
			vs = fmt.Sprintf("%.0f%%", 100*r.VsBare)
		}
		fmt.Fprintf(&b, "| %d | %d | %.2f | %s | %.1f | %s | %.1f | %.2f (%.2f + %.2f) | %.0f | %s | %d/%d |\n",
			r.N, r.Reps, r.Wall.Seconds(), rel, r.PerNodeMBs, vs, r.AggMBs, r.CPUPerGiB, r.SenderCPUPerGiB, r.NodeCPUPerGiB, r.NodeRSSMiB, eff, r.Verified, r.Nodes)
	}
	return b.Bytes()
}

// Plot draws wall time against N, one panel per rate, a line for the
// ring, the bare relay and the star, as SVG.
func Plot(rows []Row) []byte {
	const pw, ph, ml, mr, mt, mb = 300.0, 230.0, 55.0, 15.0, 40.0, 45.0
	rates := []int64{}
	seen := map[int64]bool{}
	for _, r := range rows {
		if plotted(r) && !seen[r.Rate] {
			seen[r.Rate] = true
			rates = append(rates, r.Rate)
		}
	}
	width := float64(len(rates))*(pw+ml+mr) + 10
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", math.Max(width, 200), ph+mt+mb+20)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	colors := map[string]string{"ring": "#1f77b4", "star": "#d62728", "bare": "#7f7f7f"}
	for i, rate := range rates {
		x0 := float64(i)*(pw+ml+mr) + ml
		var lines = map[string][][2]float64{}
		maxN, maxT := 1.0, 0.0
		img := ""
		for _, r := range rows {
			if r.Rate != rate || r.Wall <= 0 || !plotted(r) {
				continue
			}
			img = r.Image
			lines[r.Mode] = append(lines[r.Mode], [2]float64{float64(r.N), r.Wall.Seconds()})
			maxN, maxT = math.Max(maxN, float64(r.N)), math.Max(maxT, r.Wall.Seconds())
		}
		maxT = niceCeil(maxT)
		px := func(n float64) float64 { return x0 + (n-0)/maxN*pw }
		py := func(t float64) float64 { return mt + ph - t/maxT*ph }
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="bold">%s</text>`+"\n", x0, mt-22, html.EscapeString(fmt.Sprintf("%s links, %s", RateName(rate), img)))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", x0, mt, pw, ph)
		for k := 0; k <= 4; k++ {
			t := maxT * float64(k) / 4
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x0, py(t), x0+pw, py(t))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, py(t)+4, strconv.FormatFloat(t, 'g', 4, 64))
		}
		for _, n := range []float64{1, 4, 8, 12, 16, 24, 32, 48, 64} {
			if n > maxN {
				break
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n", px(n), mt+ph+15, n)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">nodes (N)</text>`+"\n", x0+pw/2, mt+ph+32)
		fmt.Fprintf(&b, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">wall time, s</text>`+"\n", x0-40, mt+ph/2)
		ly := mt + 14.0
		for _, mode := range []string{"ring", "bare", "star"} {
			pts := lines[mode]
			if len(pts) == 0 {
				continue
			}
			var path []string
			for _, p := range pts {
				path = append(path, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), colors[mode])
			for _, p := range pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", px(p[0]), py(p[1]), colors[mode])
			}
			label := map[string]string{"ring": "herd ring", "bare": "bare relay (floor)", "star": "star (herd HTTP, N curl)"}[mode]
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
				x0+8, ly-4, x0+24, ly-4, colors[mode], x0+28, ly, label)
			ly += 14
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// plotted tells whether r is drawn: the ring, bare and star suites of
// each rate ("ring-400M", "bare-400M", "star-400M").
func plotted(r Row) bool {
	return r.Suite == r.Mode+"-"+RateName(r.Rate) && (r.Mode == "ring" || r.Mode == "bare" || r.Mode == "star")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
