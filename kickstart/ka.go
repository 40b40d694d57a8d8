package kickstart

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseKa reads a ka-deploy partition description (fdisk_to_desc's
// output, see the Mandriva cluster cloning guide):
//
//	linux 3500 extended fill logical swap 500 logical linux fill
//
// Primary partitions are TYPE SIZE; "extended SIZE" opens the extended
// partition, and "logical TYPE SIZE" are the partitions inside it. TYPE is
// linux or swap, SIZE is in MB (taken as MiB) or fill: the room left, for
// the last partition of its level. Words may span lines; # starts a
// comment. The plan's partitions have no mount points: what is written to
// them (herd's image --to DEVICE) makes them.
func ParseKa(name string, r io.Reader) (*Plan, error) {
	type word struct {
		s    string
		line int
	}
	var words []word
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		for _, f := range strings.Fields(text) {
			words = append(words, word{f, n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	errf := func(line int, format string, args ...any) error {
		return &Error{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if len(words) == 0 {
		return nil, errf(1, "empty partition description: want e.g. linux 3500 extended fill logical swap 500 logical linux fill")
	}
	plan := &Plan{Finish: "reboot"}
	var (
		primaries    int   // primary and extended partitions
		extended     = -1  // index of the extended partition in plan.Parts
		extSize      int64 // its size (0: fill)
		logicalSum   int64
		topFilled    bool // a top-level fill was given
		logicalFill  bool // a logical fill was given
		lastLogicals int
	)
	for i := 0; i < len(words); i++ {
		w := words[i]
		next := func(what string) (word, error) {
			if i+1 >= len(words) {
				return word{}, errf(w.line, "%s: missing %s at the end of the description", w.s, what)
			}
			i++
			return words[i], nil
		}
		size := func(sw word) (int64, bool, error) {
			if sw.s == "fill" {
				return 0, true, nil
			}
			n, err := strconv.ParseInt(sw.s, 10, 64)
			if err != nil || n <= 0 || n > 1<<40 {
				return 0, false, errf(sw.line, "size %q: want MB (a whole number above 0) or fill", sw.s)
			}
			return n, false, nil
		}
		switch w.s {
		case "linux", "swap", "extended":
			if extended >= 0 && w.s != "extended" {
				return nil, errf(w.line, "%s: a primary partition after the extended one (put primaries first, then extended, then logical ...)", w.s)
			}
			if topFilled {
				return nil, errf(w.line, "%s after a partition that fills the disk", w.s)
			}
			if w.s == "extended" && extended >= 0 {
				return nil, errf(w.line, "a second extended partition")
			}
			if primaries++; primaries > 4 {
				return nil, errf(w.line, "%s: more than 4 primary and extended partitions in an MBR table", w.s)
			}
			sw, err := next("size")
			if err != nil {
				return nil, err
			}
			n, fill, err := size(sw)
			if err != nil {
				return nil, err
			}
			pt := Part{Kind: Primary, SizeMiB: n, Grow: fill, Line: w.line}
			switch w.s {
			case "swap":
				pt.Mount, pt.FSType = "swap", "swap"
			case "extended":
				pt.Kind = Extended
				extended, extSize = len(plan.Parts), n
			}
			topFilled = fill
			plan.Parts = append(plan.Parts, pt)
		case "logical":
			if extended < 0 {
				return nil, errf(w.line, "logical before any extended partition")
			}
			if logicalFill {
				return nil, errf(w.line, "logical after a logical partition that fills the extended one")
			}
			tw, err := next("type")
			if err != nil {
				return nil, err
			}
			pt := Part{Kind: Logical, Line: w.line}
			switch tw.s {
			case "linux":
			case "swap":
				pt.Mount, pt.FSType = "swap", "swap"
			default:
				return nil, errf(tw.line, "logical %q: want linux or swap", tw.s)
			}
			sw, err := next("size")
			if err != nil {
				return nil, err
			}
			if pt.SizeMiB, pt.Grow, err = size(sw); err != nil {
				return nil, err
			}
			logicalFill = pt.Grow
			logicalSum += pt.SizeMiB
			if extSize > 0 && logicalSum > extSize {
				return nil, errf(w.line, "the logical partitions need %d MB, more than the extended partition's %d (make the extended partition fill, or the last logical one)", logicalSum, extSize)
			}
			lastLogicals++
			plan.Parts = append(plan.Parts, pt)
		default:
			return nil, errf(w.line, "unknown word %q: want linux, swap, extended or logical", w.s)
		}
	}
	if extended >= 0 && lastLogicals == 0 {
		return nil, errf(plan.Parts[extended].Line, "an extended partition without logical partitions")
	}
	return plan, nil
}
