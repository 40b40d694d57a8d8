package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWrapArgsRoundTrip(t *testing.T) {
	for _, w := range []Wrap{
		{Argv: []string{"herd", "recv"}},
		{Tmpfs: "/m", TmpfsSize: "320m", Ready: "127.0.0.1:9996", Hash: "/m/out.img", Hold: true, Argv: []string{"herd", "recv", "--", "-x"}},
		{Gate: true, Argv: []string{"curl", "-o", "/m/out.img", "http://10.252.0.10:8080/files/a b"}},
	} {
		got, err := ParseWrap(w.Args())
		if err != nil {
			t.Fatalf("ParseWrap(%q): %v", w.Args(), err)
		}
		if !reflect.DeepEqual(*got, w) {
			t.Errorf("round trip of %+v gave %+v", w, *got)
		}
	}
	if _, err := ParseWrap([]string{"--hash", "x"}); err == nil || !strings.Contains(err.Error(), "no program") {
		t.Errorf("ParseWrap without a program: %v, want 'no program'", err)
	}
	if _, err := ParseWrap([]string{"--bogus", "--", "x"}); err == nil {
		t.Error("ParseWrap accepted an unknown flag")
	}
}

func FuzzParseWrap(f *testing.F) {
	f.Add("--tmpfs\x00/m\x00--gate\x00--\x00herd\x00recv")
	f.Add("--ready\x00:1\x00x")
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWrap(strings.Split(s, "\x00"))
		if err != nil {
			return
		}
		if len(w.Argv) == 0 {
			t.Fatal("parsed without a program")
		}
		again, err := ParseWrap(w.Args())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", w.Args(), err)
		}
		if !reflect.DeepEqual(again, w) {
			t.Fatalf("round trip %+v -> %+v", w, again)
		}
	})
}

// fileSHA hashes a file as a node's wrapper does.
func fileSHA(t *testing.T, path string) (string, int64) {
	t.Helper()
	sum, n, err := hashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum, n
}

func TestImages(t *testing.T) {
	dir := t.TempDir()
	r, err := MakeRandom(dir, 3<<20+5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sum, n := fileSHA(t, r.Path); sum != r.SHA256 || n != r.Size || r.Wire != r.Size {
		t.Errorf("random image: file %s %d bytes, image says %s %d", sum, n, r.SHA256, r.Size)
	}
	r2, err := MakeRandom(t.TempDir(), 3<<20+5, 2)
	if err != nil {
		t.Fatal(err)
	}
	if r2.SHA256 == r.SHA256 {
		t.Error("two seeds gave the same random image")
	}

	s, err := MakeSparse(dir, 64<<20, 0.10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if sum, n := fileSHA(t, s.Path); sum != s.SHA256 || n != s.Size {
		t.Errorf("sparse image: file %s %d bytes, image says %s %d", sum, n, s.SHA256, s.Size)
	}
	if f := float64(s.Data) / float64(s.Size); f < 0.09 || f > 0.11 {
		t.Errorf("sparse image: %.3f of it is data, want 0.10", f)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.Path, &st); err != nil {
		t.Fatal(err)
	}
	// t.TempDir may be on a file system without holes; then say so.
	if alloc := st.Blocks * 512; alloc > 2*s.Data {
		t.Logf("sparse image takes %d bytes on this file system (no holes here?)", alloc)
	}

	z, err := MakeZstd(dir, 8<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	if ratio := float64(z.Size) / float64(z.Wire); ratio < 2 || ratio > 6 {
		t.Errorf("zstd image compresses %.2f:1, want a system image's 2..6", ratio)
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd not installed: cannot cross-check the compressed image")
	}
	out, err := exec.Command("zstd", "-dc", z.Path).Output()
	if err != nil {
		t.Fatalf("zstd -dc: %v", err)
	}
	h := sha256.Sum256(out)
	if got := hex.EncodeToString(h[:]); got != z.SHA256 || int64(len(out)) != z.Size {
		t.Errorf("zstd image decompresses to %s (%d bytes), image says %s (%d)", got, len(out), z.SHA256, z.Size)
	}
}

func TestCeiling(t *testing.T) {
	// 1448 of every 1514 bytes the shaper counts are payload.
	if got, want := Ceiling(400*Mbit), 50e6*1448/1514; math.Abs(got-want) > 1 {
		t.Errorf("Ceiling(400M) = %.0f, want %.0f", got, want)
	}
}

// result makes a Result for the summary tests.
func result(suite, mode string, n int, rate int64, wall time.Duration, cpu time.Duration, ok int) *Result {
	im := &Image{Kind: "random", Name: "random-256M", Size: 256 << 20, Wire: 256 << 20}
	r := &Result{Spec: Spec{Suite: suite, Mode: mode, N: n, Rate: rate, Image: im}, Wall: wall, NodesCPU: CPU{User: cpu}}
	for i := 0; i < n; i++ {
		r.Nodes = append(r.Nodes, Verdict{Node: "n", OK: i < ok, MaxRSSKiB: 40 << 10})
	}
	return r
}

func TestSummarize(t *testing.T) {
	rs := []*Result{
		result("ring-400M", "ring", 1, 400*Mbit, 6*time.Second, time.Second, 1),
		result("ring-400M", "ring", 1, 400*Mbit, 5*time.Second, 2*time.Second, 1),
		result("ring-400M", "ring", 1, 400*Mbit, 9*time.Second, 3*time.Second, 1),
		result("ring-400M", "ring", 16, 400*Mbit, 6*time.Second, 16*time.Second, 15),
		result("star-400M", "star", 4, 400*Mbit, 24*time.Second, time.Second, 4),
	}
	rows := Summarize(rs)
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	one := rows[0]
	if one.Reps != 3 || one.Wall != 6*time.Second || one.Verified != 3 || one.Nodes != 3 {
		t.Errorf("N=1 row: reps %d, median %v, verified %d/%d; want 3, 6s, 3/3", one.Reps, one.Wall, one.Verified, one.Nodes)
	}
	if math.Abs(one.CPUPerGiB-8) > 1e-9 { // median 2 s over 0.25 GiB
		t.Errorf("N=1 CPU/GiB %.3f, want 8", one.CPUPerGiB)
	}
	if r := rows[1]; r.Rel != 1 || r.Verified != 15 || math.Abs(r.AggMBs-16*r.PerNodeMBs) > 1e-6 {
		t.Errorf("N=16 row: rel %.3f verified %d, agg %.1f per node %.1f", r.Rel, r.Verified, r.AggMBs, r.PerNodeMBs)
	}
	// The star's link carries the image 4 times in 24 s.
	want := 4 * float64(256<<20) / 24 / Ceiling(400*Mbit)
	if r := rows[2]; math.Abs(r.Efficiency-want) > 1e-9 || r.Rel != 0 {
		t.Errorf("star row: efficiency %.4f want %.4f, rel %.3f want 0 (no N=1)", r.Efficiency, want, r.Rel)
	}
	var met, missed int
	for _, g := range Goals(rows) {
		switch {
		case !g.Measured:
		case g.Met:
			met++
		default:
			missed++
		}
		if strings.Contains(g.What, "time(16)/time(1)") && (!g.Measured || !g.Met || g.Figure != "1.000") {
			t.Errorf("goal %v: want met with 1.000", g)
		}
	}
	if met == 0 || missed == 0 {
		t.Errorf("goals: %d met, %d missed; want some of each", met, missed)
	}
	md := string(Markdown(rows, []string{"CPU: test"}))
	for _, want := range []string{"### ring-400M", "| 16 | 1 | 6.00 | 1.000 |", "15/16", "CPU: test", "time-vs-n.svg"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	svg := string(Plot(rows))
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 2 || !strings.Contains(svg, "400M links") {
		t.Errorf("plot: want an SVG with a ring and a star line for 400M:\n%s", svg)
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	rs := []*Result{result("ring-unlimited", "ring", 1, 0, time.Second, time.Second, 1)}
	if err := WriteRuns(filepath.Join(dir, "runs.csv"), rs); err != nil {
		t.Fatal(err)
	}
	if err := WriteReport(dir, Summarize(rs), nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"runs.csv", "results.csv", "README.md", "time-vs-n.svg"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		if len(data) < 50 {
			t.Errorf("%s: only %d bytes", name, len(data))
		}
	}
}

func TestPlanFilter(t *testing.T) {
	p := DefaultScenario(false, 3, 1)
	if p.MaxN() != 32 {
		t.Errorf("full plan MaxN %d, want 32", p.MaxN())
	}
	f := p.Filter(regexp.MustCompile(`^sparse-`))
	if len(f.Suites) != 2 || len(f.Images) != 1 || f.Images["sparse"].Fraction != 0.10 {
		t.Errorf("filter sparse-: %+v", f)
	}
	for _, s := range p.Suites {
		if (s.Mode == "star" && s.Rate > 0 || s.Name == "dense-400M") && s.Reps != 1 {
			t.Errorf("%s: %d reps, want star-reps", s.Name, s.Reps)
		}
	}
}

func TestVsBare(t *testing.T) {
	rs := []*Result{
		result("ring-unlimited", "ring", 1, 0, 2*time.Second, time.Second, 1),
		result("bare-unlimited", "bare", 1, 0, time.Second, time.Second, 1),
		result("ring-unlimited", "ring", 4, 0, 5*time.Second, time.Second, 4),
		result("bare-unlimited", "bare", 4, 0, 4*time.Second, time.Second, 4),
		result("ring-100M", "ring", 1, 100*Mbit, 20*time.Second, time.Second, 1),
		result("ring-100M", "ring", 64, 100*Mbit, 20*time.Second+900*time.Millisecond, time.Second, 64),
	}
	rows := Summarize(rs)
	if rows[0].VsBare != 0.5 || rows[1].VsBare != 0 || rows[2].VsBare != 0.8 {
		t.Errorf("vs bare: ring N=1 %.3f, bare %.3f, ring N=4 %.3f; want 0.5, 0 and 0.8", rows[0].VsBare, rows[1].VsBare, rows[2].VsBare)
	}
	want := map[string]string{
		"unlimited ring, N=1 and 4": "missed",
		"time(64)/time(1) <= 1.05":  "met",
		"loopback":                  "n/a",
		"time(16)/time(1) <= 1.03":  "n/a",
	}
	for _, g := range Goals(rows) {
		for k, v := range want {
			if !strings.Contains(g.What, k) {
				continue
			}
			got := "n/a"
			if g.Measured && g.Met {
				got = "met"
			} else if g.Measured {
				got = "missed"
			}
			if got != v {
				t.Errorf("goal %q: %s (%s), want %s", g.What, got, g.Figure, v)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("goals missing: %v", want)
	}
	md := string(Markdown(rows, nil))
	if !strings.Contains(md, "| 1 | 1 | 2.00 | 1.000 | 134.2 | 50% |") {
		t.Errorf("markdown lacks the ring's vs-bare column:\n%s", md)
	}
	if svg := string(Plot(rows)); !strings.Contains(svg, "bare relay (floor)") {
		t.Error("plot lacks the bare relay's line")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"128M": 128 << 20, "1G": 1 << 30, "4096K": 4 << 20, "2097152": 2 << 20, "256MB": 256 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1M", "12K", "1000001", "100G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	p := DefaultScenario(false, 1, 1).Resize(128 << 20)
	for k, im := range p.Images {
		if im.Size != 128<<20 {
			t.Errorf("Resize: image %s is %d bytes", k, im.Size)
		}
	}
	if p.Images["sparse"].Fraction != 0.10 {
		t.Error("Resize lost the sparse image's fraction")
	}
}

func TestPaired(t *testing.T) {
	p := Scenario{Suites: []Suite{
		{Name: "ring-400M", Mode: "ring", Rate: 400 * Mbit, Image: "random", Reps: 3},
		{Name: "zstd-400M", Mode: "ring", Rate: 400 * Mbit, Image: "zstd", Reps: 3},
		{Name: "ring-unlimited", Mode: "ring", Image: "random5", Reps: 3},
		{Name: "bare-unlimited", Mode: "bare", Image: "random5", Reps: 3},
		{Name: "bare-400M", Mode: "bare", Rate: 400 * Mbit, Image: "random", Reps: 3},
		{Name: "bare-100M", Mode: "bare", Rate: 100 * Mbit, Image: "random", Reps: 1},
	}}
	var got []string
	for _, g := range p.Paired() {
		var names []string
		for _, s := range g {
			names = append(names, s.Name)
		}
		got = append(got, strings.Join(names, "+"))
	}
	want := []string{"ring-400M+bare-400M", "zstd-400M", "ring-unlimited+bare-unlimited", "bare-100M"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Paired: %q, want %q", got, want)
	}
}
