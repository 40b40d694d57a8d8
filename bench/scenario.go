package bench

import (
	"fmt"
	"regexp"
)

// Suite is a set of runs that belong on one line of the plot or table:
// one mode, rate and image over a range of N.
type Suite struct {
	// Name is "ring-400M", "bare-unlimited", "star-unlimited",
	// "sparse-400M", ...
	Name  string
	Mode  string
	Rate  int64
	Image string // key into the images (see ImageSet)
	Ns    []int
	Reps  int
}

// ImageSpec says how to make one of the benchmark's images.
type ImageSpec struct {
	Kind     string
	Size     int64
	Fraction float64 // sparse only
}

// Make creates the image under dir.
func (s ImageSpec) Make(dir string, seed uint64) (*Image, error) {
	switch s.Kind {
	case "random":
		return MakeRandom(dir, s.Size, seed)
	case "sparse":
		return MakeSparse(dir, s.Size, s.Fraction, seed)
	case "zstd":
		return MakeZstd(dir, s.Size, seed)
	}
	return nil, fmt.Errorf("unknown image kind %q", s.Kind)
}

// Mbit is one megabit per second.
const Mbit = 1_000_000

// Scenario is a benchmark: its images and suites.
type Scenario struct {
	Images map[string]ImageSpec
	Suites []Suite
}

// DefaultScenario is the full benchmark (reps repetitions of every ring run
// and unlimited star run; a star on shaped links is link-bound and
// repeatable, so it runs starReps times), or with quick a smoke test of
// a few minutes.
func DefaultScenario(quick bool, reps, starReps int) Scenario {
	if quick {
		return Scenario{
			Images: map[string]ImageSpec{
				"random": {Kind: "random", Size: 128 << 20},
				"dense":  {Kind: "random", Size: 1 << 30},
				"sparse": {Kind: "sparse", Size: 1 << 30, Fraction: 0.10},
				"zstd":   {Kind: "zstd", Size: 256 << 20},
			},
			Suites: []Suite{
				{Name: "ring-400M", Mode: "ring", Rate: 400 * Mbit, Image: "random", Ns: []int{1, 4}, Reps: reps},
				{Name: "star-400M", Mode: "star", Rate: 400 * Mbit, Image: "random", Ns: []int{1, 4}, Reps: starReps},
				{Name: "ring-unlimited", Mode: "ring", Image: "random", Ns: []int{1, 4}, Reps: reps},
				{Name: "bare-unlimited", Mode: "bare", Image: "random", Ns: []int{1, 4}, Reps: reps},
				{Name: "star-unlimited", Mode: "star", Image: "random", Ns: []int{1, 4}, Reps: reps},
				{Name: "dense-unlimited", Mode: "ring", Image: "dense", Ns: []int{1}, Reps: reps},
				{Name: "sparse-unlimited", Mode: "ring", Image: "sparse", Ns: []int{1}, Reps: reps},
				{Name: "zstd-400M", Mode: "ring", Rate: 400 * Mbit, Image: "zstd", Ns: []int{1, 4}, Reps: reps},
			},
		}
	}
	ns := []int{1, 2, 4, 8, 12, 16}
	// A shaped star's time is N times its time(1): five points draw it.
	starNs := []int{1, 2, 4, 8, 16}
	return Scenario{
		Images: map[string]ImageSpec{
			"random":  {Kind: "random", Size: 256 << 20},
			"random5": {Kind: "random", Size: 512 << 20},
			"dense":   {Kind: "random", Size: 4 << 30},
			"sparse":  {Kind: "sparse", Size: 4 << 30, Fraction: 0.10},
			"zstd":    {Kind: "zstd", Size: 1 << 30},
		},
		// The goals' runs first; the long link-bound star last.
		Suites: []Suite{
			{Name: "ring-400M", Mode: "ring", Rate: 400 * Mbit, Image: "random", Ns: ns, Reps: reps},
			// The floor: bench/bare's relay through the same chain, beside
			// the ring on the same images (issue 21).
			{Name: "bare-400M", Mode: "bare", Rate: 400 * Mbit, Image: "random", Ns: []int{1, 4}, Reps: reps},
			{Name: "ring-100M", Mode: "ring", Rate: 100 * Mbit, Image: "random", Ns: append(ns[:len(ns):len(ns)], 32), Reps: reps},
			// Link-bound: repeatable as the shaped star. With -n 1,64 it is
			// the floor of issue 21's N=64 goal.
			{Name: "bare-100M", Mode: "bare", Rate: 100 * Mbit, Image: "random", Ns: []int{1, 4}, Reps: starReps},
			{Name: "ring-unlimited", Mode: "ring", Image: "random5", Ns: ns, Reps: reps},
			{Name: "bare-unlimited", Mode: "bare", Image: "random5", Ns: []int{1, 4}, Reps: reps},
			{Name: "sparse-400M", Mode: "ring", Rate: 400 * Mbit, Image: "sparse", Ns: []int{1, 8}, Reps: reps},
			// 90 s a run, link-bound: repeatable as the shaped star.
			{Name: "dense-400M", Mode: "ring", Rate: 400 * Mbit, Image: "dense", Ns: []int{1}, Reps: starReps},
			{Name: "sparse-unlimited", Mode: "ring", Image: "sparse", Ns: []int{1}, Reps: reps},
			{Name: "dense-unlimited", Mode: "ring", Image: "dense", Ns: []int{1}, Reps: reps},
			{Name: "zstd-400M", Mode: "ring", Rate: 400 * Mbit, Image: "zstd", Ns: []int{1, 4, 8}, Reps: reps},
			{Name: "zstd-unlimited", Mode: "ring", Image: "zstd", Ns: []int{1, 4}, Reps: reps},
			{Name: "star-unlimited", Mode: "star", Image: "random5", Ns: ns, Reps: reps},
			{Name: "star-400M", Mode: "star", Rate: 400 * Mbit, Image: "random", Ns: starNs, Reps: starReps},
			{Name: "star-100M", Mode: "star", Rate: 100 * Mbit, Image: "random", Ns: starNs, Reps: starReps},
		},
	}
}

// Resize gives every image of the plan size bytes (a sparse image keeps
// its fraction of data); size 0 leaves them.
func (p Scenario) Resize(size int64) Scenario {
	if size <= 0 {
		return p
	}
	out := Scenario{Images: map[string]ImageSpec{}, Suites: p.Suites}
	for k, im := range p.Images {
		im.Size = size
		out.Images[k] = im
	}
	return out
}

// Filter keeps the suites whose names match re, and the images they use.
func (p Scenario) Filter(re *regexp.Regexp) Scenario {
	out := Scenario{Images: map[string]ImageSpec{}}
	for _, s := range p.Suites {
		if re == nil || re.MatchString(s.Name) {
			out.Suites = append(out.Suites, s)
			out.Images[s.Image] = p.Images[s.Image]
		}
	}
	return out
}

// Paired groups the plan's suites in order, a bare suite with the first
// ring suite of its rate and image (its floor), so that the two run
// repetition by repetition in turn and drift on the machine hits both
// alike.
func (p Scenario) Paired() [][]Suite {
	var groups [][]Suite
	at := map[string]int{} // rate/image of a ring suite -> its group
	var bare []Suite
	for _, s := range p.Suites {
		k := fmt.Sprintf("%d/%s", s.Rate, s.Image)
		switch s.Mode {
		case "ring":
			if _, ok := at[k]; !ok {
				at[k] = len(groups)
			}
		case "bare":
			bare = append(bare, s)
			continue
		}
		groups = append(groups, []Suite{s})
	}
	for _, s := range bare {
		if g, ok := at[fmt.Sprintf("%d/%s", s.Rate, s.Image)]; ok {
			groups[g] = append(groups[g], s)
			continue
		}
		groups = append(groups, []Suite{s})
	}
	return groups
}

// MaxN is the largest N of the plan.
func (p Scenario) MaxN() int {
	m := 1
	for _, s := range p.Suites {
		for _, n := range s.Ns {
			m = max(m, n)
		}
	}
	return m
}
