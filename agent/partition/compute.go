package partition

import (
	"errors"
	"fmt"
	"math/bits"
	"path/filepath"

	"github.com/herdproject/herd/kickstart"
)

const (
	// maxDosSize is the largest disk a dos table describes: 2^32
	// sectors of 512 bytes.
	maxDosSize = 1 << 41
	// maxGPTParts is the number of entries of a standard GPT.
	maxGPTParts = 128
	// typeBasicData is gpt's Microsoft basic data type (vfat that is
	// not an EFI system partition).
	typeBasicData = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
)

// slot is one partition being laid out: a primary one (every gpt
// partition), or the extended one with its logicals in inner.
type slot struct {
	part  kickstart.Part
	num   int
	inner []slot
	made  bool // an extended partition Compute made for Any parts
}

// Compute lays out parts on disk, a device of size bytes, with a partition
// table of label "dos" or "gpt". bootable is the mount point whose
// partition gets the boot flag ("" = none; no error when no partition is
// mounted there). Compute does not look at Part.OnDisk: the caller passes
// the parts meant for disk. disk must be an absolute path: Script names
// partitions by it.
//
// The first partition starts at 1 MiB; starts and sizes are MiB-aligned
// and gpt keeps the last MiB free for its backup table. Fixed sizes come
// first; grow partitions share the room left in proportion to their
// minimum sizes (Anaconda's way), each capped at MaxSizeMiB, and what a
// capped one leaves goes to the other grow partitions; what no one may
// take stays free at the end. A part without a size counts as 1 MiB.
//
// dos: with no explicit extended or logical partition, up to 4 parts are
// primary; with more, the parts with --asprimary and the first others up
// to 3 are primary, and an extended partition (number 4 or lower) holds
// the rest as logicals 5, 6 ... Explicit kinds (a ka-deploy description)
// are honoured; a part of kind Any after an explicit extended partition
// is logical. Every logical partition keeps the MiB before it for its
// EBR. A made extended partition grows as its logicals do: it is sized as
// one grow partition weighing the sum of their minimum sizes, and its
// logicals share it.
func Compute(disk string, size int64, label string, parts []kickstart.Part, bootable string) (*Table, error) {
	if disk == "" || !filepath.IsAbs(disk) {
		return nil, fmt.Errorf("partition %q: want the disk's absolute device path, such as /dev/sda", disk)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("partition %s: the plan has no partitions for it: add part lines (or a ka-deploy description), or leave the disk out", disk)
	}
	diskMiB := size / MiB
	var (
		top []slot
		err error
		end = diskMiB // first MiB after the room for partitions
	)
	switch label {
	case "dos":
		if size > maxDosSize {
			return nil, fmt.Errorf("partition %s: %d MiB is more than a dos partition table can describe (2 TiB): use clearpart --disklabel=gpt", disk, diskMiB)
		}
		top, err = slotsDos(disk, parts)
	case "gpt":
		end--
		top, err = slotsGPT(disk, parts)
	default:
		return nil, fmt.Errorf("partition %s: label %q: want dos or gpt", disk, label)
	}
	if err != nil {
		return nil, err
	}
	const first = 1 // MiB: the table, and room for a boot loader
	avail := end - first
	if avail < 1 {
		return nil, fmt.Errorf("partition %s: the disk has %d bytes, too small for a partition table and a partition: use a larger disk", disk, size)
	}

	// Minimums, and the fit: name the first partition that does not.
	items := make([]item, len(top))
	left := avail
	for i, s := range top {
		it, err := topItem(disk, s)
		if err != nil {
			return nil, err
		}
		items[i] = it
		if it.min <= left {
			left -= it.min
			continue
		}
		p, need := s.part, it.min
		if s.made {
			// Name the logical partition that does not fit.
			for _, l := range s.inner {
				if 1+effMin(l.part) > left {
					p, need = l.part, effMin(l.part)
					left = max(left-1, 0)
					break
				}
				left -= 1 + effMin(l.part)
			}
		}
		return nil, fmt.Errorf("line %d: %s needs at least %d MiB but only %d MiB are left on %s (%d MiB): shrink the plan or use a larger disk", p.Line, describe(p), need, left, disk, diskMiB)
	}

	t := &Table{Disk: disk, Label: label, Size: size}
	sizes := share(avail, items)
	pos := int64(first)
	var logicals []Partition
	for i, s := range top {
		p, err := newPartition(disk, label, s.part, s.num, pos, sizes[i], bootable)
		if err != nil {
			return nil, err
		}
		t.Parts = append(t.Parts, p)
		if s.part.Kind == kickstart.Extended {
			inner := make([]item, len(s.inner))
			for j, l := range s.inner {
				inner[j] = partItem(l.part)
			}
			lsizes := share(sizes[i]-int64(len(s.inner)), inner)
			lpos := pos
			for j, l := range s.inner {
				lpos++ // the EBR's MiB
				p, err := newPartition(disk, label, l.part, l.num, lpos, lsizes[j], bootable)
				if err != nil {
					return nil, err
				}
				logicals = append(logicals, p)
				lpos += lsizes[j]
			}
		}
		pos += sizes[i]
	}
	t.Parts = append(t.Parts, logicals...)
	return t, nil
}

// slotsDos sorts parts into primary partitions and an extended one with
// logicals, and numbers them.
func slotsDos(disk string, parts []kickstart.Part) ([]slot, error) {
	explicit := false
	for _, p := range parts {
		if p.Kind == kickstart.Extended || p.Kind == kickstart.Logical {
			explicit = true
		}
	}
	var top []slot
	if explicit {
		ext := -1
		for _, p := range parts {
			switch {
			case p.Kind == kickstart.Extended:
				if ext >= 0 {
					return nil, fmt.Errorf("line %d: a second extended partition on %s: a dos table has one; put every logical partition in the first", p.Line, disk)
				}
				ext = len(top)
				top = append(top, slot{part: p})
			case p.Kind == kickstart.Logical || p.Kind == kickstart.Any && ext >= 0:
				if ext < 0 {
					return nil, fmt.Errorf("line %d: %s without an extended partition before it on %s: describe the extended partition first", p.Line, describe(p), disk)
				}
				top[ext].inner = append(top[ext].inner, slot{part: p, num: 5 + len(top[ext].inner)})
			default:
				top = append(top, slot{part: p})
			}
		}
	} else {
		primaries := 0
		for _, p := range parts {
			if p.Kind != kickstart.Primary {
				continue
			}
			if primaries++; len(parts) > 4 && primaries > 3 {
				return nil, fmt.Errorf("line %d: %s: more than 3 partitions with --asprimary among %d on %s: a dos table holds 4 primary partitions, or 3 and an extended one with the others: drop --asprimary from some, or use clearpart --disklabel=gpt", p.Line, describe(p), len(parts), disk)
			}
		}
		if len(parts) <= 4 {
			for _, p := range parts {
				top = append(top, slot{part: p})
			}
		} else {
			ext := slot{part: kickstart.Part{Kind: kickstart.Extended}, made: true}
			room := 3 - primaries
			for _, p := range parts {
				switch {
				case p.Kind == kickstart.Primary:
					top = append(top, slot{part: p})
				case room > 0:
					room--
					top = append(top, slot{part: p})
				default:
					if len(ext.inner) == 0 {
						ext.part.Line = p.Line
					}
					ext.inner = append(ext.inner, slot{part: p, num: 5 + len(ext.inner)})
				}
			}
			top = append(top, ext)
		}
	}
	if len(top) > 4 {
		p := top[4].part
		return nil, fmt.Errorf("line %d: %s is a fifth primary or extended partition on %s: a dos table has 4; make it logical (in an extended partition), or use clearpart --disklabel=gpt", p.Line, describe(p), disk)
	}
	for i := range top {
		top[i].num = i + 1
	}
	return top, nil
}

// slotsGPT numbers parts for a gpt table.
func slotsGPT(disk string, parts []kickstart.Part) ([]slot, error) {
	if len(parts) > maxGPTParts {
		return nil, fmt.Errorf("line %d: %s is partition %d on %s: a gpt table has %d: shrink the plan", parts[maxGPTParts].Line, describe(parts[maxGPTParts]), maxGPTParts+1, disk, maxGPTParts)
	}
	top := make([]slot, len(parts))
	for i, p := range parts {
		if p.Kind == kickstart.Extended || p.Kind == kickstart.Logical {
			return nil, fmt.Errorf("line %d: %s on %s, a gpt disk: gpt has no extended or logical partitions: describe primary partitions only, or use a dos label", p.Line, describe(p), disk)
		}
		top[i] = slot{part: p, num: i + 1}
	}
	return top, nil
}

// item is what share needs of a partition, in MiB.
type item struct {
	min    int64
	grow   bool
	weight int64 // of a grow partition's share of the room left
	max    int64 // with grow: 0 = no limit
}

// effMin is a part's minimum size: a part without a size (a ka fill)
// counts as 1 MiB.
func effMin(p kickstart.Part) int64 { return max(p.SizeMiB, 1) }

func partItem(p kickstart.Part) item {
	it := item{min: effMin(p), grow: p.Grow}
	it.weight = it.min
	if p.Grow && p.MaxSizeMiB > 0 {
		it.max = max(p.MaxSizeMiB, it.min)
	}
	return it
}

// topItem is the item of a slot: an extended partition's minimum holds
// its logicals and their EBRs.
func topItem(disk string, s slot) (item, error) {
	if s.part.Kind != kickstart.Extended {
		return partItem(s.part), nil
	}
	var need int64 // the logicals' minimums, and a MiB for each EBR
	for _, l := range s.inner {
		need += 1 + effMin(l.part)
	}
	if s.made {
		it := item{min: need}
		capped := true
		var capSum int64
		for _, l := range s.inner {
			li := partItem(l.part)
			capSum += 1 + li.min
			if !li.grow {
				continue
			}
			it.grow = true
			it.weight += li.weight
			if li.max == 0 {
				capped = false
			}
			capSum += li.max - li.min
		}
		if it.grow && capped {
			it.max = capSum
		}
		return it, nil
	}
	if !s.part.Grow && s.part.SizeMiB < need {
		return item{}, fmt.Errorf("line %d: the logical partitions need %d MiB (with 1 MiB for each one's EBR) but the extended partition has %d MiB on %s: make the extended partition fill, or larger", s.part.Line, need, s.part.SizeMiB, disk)
	}
	it := partItem(s.part)
	it.min = max(it.min, need)
	it.weight = it.min
	if it.max > 0 {
		it.max = max(it.max, it.min)
	}
	return it, nil
}

// share gives each item its minimum out of avail MiB, then shares what
// is left among the grow items in proportion to their weights, each up
// to its max; what a capped item leaves is shared again among the others.
// The MiB that rounding leaves go to the last grow items with room. The
// caller has checked that the minimums fit.
func share(avail int64, items []item) []int64 {
	sizes := make([]int64, len(items))
	left := avail
	var active []int
	for i, it := range items {
		sizes[i] = it.min
		left -= it.min
		if it.grow {
			active = append(active, i)
		}
	}
	for left > 0 && len(active) > 0 {
		var wsum uint64
		for _, i := range active {
			wsum += uint64(max(items[i].weight, 1))
		}
		adds := make([]int64, len(active))
		var still []int
		capped := false
		for k, i := range active {
			hi, lo := bits.Mul64(uint64(left), uint64(max(items[i].weight, 1)))
			q, _ := bits.Div64(hi, lo, wsum)
			adds[k] = int64(q)
			if m := items[i].max; m > 0 && sizes[i]+adds[k] >= m {
				capped = true
				left -= m - sizes[i]
				sizes[i] = m
				continue
			}
			still = append(still, i)
		}
		if capped {
			// Share again among those below their max.
			active = still
			continue
		}
		for k, i := range active {
			sizes[i] += adds[k]
			left -= adds[k]
		}
		for k := len(active) - 1; k >= 0 && left > 0; k-- {
			i := active[k]
			give := left
			if m := items[i].max; m > 0 {
				give = min(give, m-sizes[i])
			}
			sizes[i] += give
			left -= give
		}
		break
	}
	return sizes
}

// newPartition places p at start (MiB) with size (MiB) and picks its type.
func newPartition(disk, label string, p kickstart.Part, num int, start, size int64, bootable string) (Partition, error) {
	typ, err := partType(label, p)
	if err != nil {
		return Partition{}, fmt.Errorf("line %d: %s on %s: %w", p.Line, describe(p), disk, err)
	}
	return Partition{
		Part:     p,
		Number:   num,
		Start:    start * MiB,
		Size:     size * MiB,
		Type:     typ,
		Bootable: bootable != "" && p.Mount == bootable && p.Kind != kickstart.Extended,
	}, nil
}

var errFSType = errors.New("no partition type for this filesystem")

// partType is a partition's sfdisk type for label.
func partType(label string, p kickstart.Part) (string, error) {
	dos := label == "dos"
	pick := func(d, g string) (string, error) {
		if dos {
			return d, nil
		}
		return g, nil
	}
	switch {
	case p.Kind == kickstart.Extended:
		return "5", nil
	case p.FSType == "swap":
		return pick("82", "S")
	case p.FSType == "vfat" && p.Mount == "/boot/efi":
		return pick("ef", "U")
	case p.FSType == "vfat":
		return pick("c", typeBasicData)
	case p.FSType == "" || p.FSType == "ext4" || p.FSType == "ext3" || p.FSType == "ext2" || p.FSType == "xfs":
		return pick("83", "L")
	}
	return "", fmt.Errorf("--fstype=%s: %w (ext4, ext3, ext2, xfs, vfat, swap)", p.FSType, errFSType)
}

// describe names a part in messages.
func describe(p kickstart.Part) string {
	kind := "linux"
	if p.FSType == "swap" {
		kind = "swap"
	}
	switch {
	case p.Kind == kickstart.Extended:
		return "the extended partition"
	case p.Kind == kickstart.Logical:
		return "logical " + kind + " partition"
	case p.Mount != "":
		return "part " + p.Mount
	}
	return kind + " partition"
}
