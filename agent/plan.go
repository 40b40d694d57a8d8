package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herdproject/herd/agent/mkfs"
	"github.com/herdproject/herd/agent/partition"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/kickstart"
	"github.com/herdproject/herd/ring/blockdev"
	"github.com/herdproject/herd/ring/wire"
	"golang.org/x/sys/unix"
)

// TargetDir is where the agent mounts a plan's filesystems when it is the
// machine's init (as Anaconda's /mnt/sysimage); as a plain process it is
// mnt/sysimage under the working directory (herd agent --root-dir).
const TargetDir = "/mnt/sysimage"

// planState is an install plan being carried out.
type planState struct {
	name string
	plan *kickstart.Plan
	// target is the mounted target root.
	target string
	// tables are the partition tables written, one per disk.
	tables []*partition.Table
	// fs are the plan's filesystems, in mount order.
	fs []planFS
	// mounted are the mount points made, in order.
	mounted []string
	// postOutput is the tail of the %post scripts' output, for the
	// report.
	postOutput string
}

// planFS is one partition of the plan with its new filesystem.
type planFS struct {
	part   kickstart.Part
	disk   string
	number int
	dev    string
	uuid   string
}

// fetchPlan asks the management host for this node's install plan (GET
// /api/plan/MAC) and parses it; no plan leaves a.plan nil.
func (a *agent) fetchPlan(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	url := a.id.Server + contract.PathPlan + a.id.MAC.String()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errRegister, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(res.Body).Decode(&e)
		if strings.Contains(e.Error, "not in the inventory") {
			return fmt.Errorf("GET %s: %s", url, e.Error)
		}
		// An older herd serve without plans.
		a.con.printf("no install plan (the server has no plan route): the session's files are written as they are")
		return nil
	default:
		return fmt.Errorf("%w: GET %s: %s", errRegister, url, res.Status)
	}
	var pr contract.PlanResponse
	if err := json.NewDecoder(res.Body).Decode(&pr); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if pr.Plan == "" {
		a.con.printf("no install plan: the session's files are written as they are")
		return nil
	}
	p, err := kickstart.ParseNamed(pr.Plan, strings.NewReader(pr.PlanText))
	if err != nil {
		return fmt.Errorf("install plan: %w", err)
	}
	for _, w := range p.Warnings {
		a.con.printf("  warning: %s", w)
	}
	if kickstart.IsKa(pr.Plan) {
		if m := kaRoot(p); m != "" {
			a.con.printf("  %s", m)
		}
	}
	if len(p.Parts) == 0 {
		for _, s := range p.Post {
			if !s.NoChroot {
				return fmt.Errorf("install plan %s:%d: %%post runs in a chroot of the new system, but the plan makes no filesystems (part /): use %%post --nochroot", pr.Plan, s.Line)
			}
		}
	}
	target := TargetDir
	if !a.cfg.AsInit {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		target = filepath.Join(wd, "mnt", "sysimage")
	}
	if err := checkUEFIPlan(pr.Plan, p, a.uefiBoot()); err != nil {
		return err
	}
	a.plan = &planState{name: pr.Plan, plan: p, target: target}
	a.con.printf("install plan %s: %d partition(s), %d image(s), %d %%pre, %d %%post", pr.Plan, len(p.Parts), len(p.Images), len(p.Pre), len(p.Post))
	return nil
}

// checkUEFIPlan refuses, before any disk is touched, a plan that makes
// filesystems and a boot loader for a node that booted by UEFI but has
// no EFI System Partition (a vfat /boot/efi) to put the loader on.
func checkUEFIPlan(name string, p *kickstart.Plan, uefi bool) error {
	if !uefi || len(p.Parts) == 0 || (p.Bootloader != nil && p.Bootloader.Location == "none") {
		return nil
	}
	hasRoot := false
	for _, pt := range p.Parts {
		if pt.Mount == "/boot/efi" && pt.FSType == "vfat" {
			return nil
		}
		hasRoot = hasRoot || pt.Mount == "/"
	}
	if !hasRoot {
		return nil
	}
	return fmt.Errorf("install plan %s: this node booted by UEFI, and the plan has no EFI System Partition for its boot loader: add `part /boot/efi --fstype=efi --size=200` (and `clearpart --disklabel=gpt`), or `bootloader --location=none`", name)
}

// kaRoot gives a ka-deploy description what ka-deploy did with it: the
// disk is repartitioned whatever it held, and the first linux partition
// becomes the ext4 root the tree is copied into. It returns a note saying
// so ("" when the description has no linux partition).
func kaRoot(p *kickstart.Plan) string {
	p.ZeroMBR = true
	for i, pt := range p.Parts {
		if pt.FSType == "" && pt.Kind != kickstart.Extended && pt.Mount == "" {
			p.Parts[i].Mount, p.Parts[i].FSType = "/", "ext4"
			return fmt.Sprintf("ka-deploy description: partition %d (line %d) becomes the ext4 root; the disk is repartitioned", i+1, pt.Line)
		}
	}
	return ""
}

// blockDisks lists the machine's disks an install plan may use by
// default: /sys/block entries that are not loop, RAM, optical, device
// mapper or removable devices, by name.
func blockDisks() []string {
	ents, _ := os.ReadDir("/sys/block")
	var out []string
	for _, e := range ents {
		n := e.Name()
		if slices.ContainsFunc([]string{"loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd"}, func(p string) bool { return strings.HasPrefix(n, p) }) {
			continue
		}
		if b, _ := os.ReadFile(filepath.Join("/sys/block", n, "removable")); strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if b, _ := os.ReadFile(filepath.Join("/sys/block", n, "size")); strings.TrimSpace(string(b)) == "0" {
			continue
		}
		out = append(out, "/dev/"+n)
	}
	sort.Strings(out)
	return out
}

// devPath turns a kickstart disk name ("sda", "disk/by-id/x", "/dev/vdb")
// into a device path.
func devPath(name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	return "/dev/" + name
}

// planDisks maps the plan's partitions onto disks, in plan order. As a
// plain process the agent writes only to disks the plan names (ignoredisk
// --only-use, clearpart --drives or part --ondisk).
func (a *agent) planDisks(p *kickstart.Plan) (disks []string, parts map[string][]kickstart.Part, err error) {
	var def string
	switch {
	case len(p.OnlyUse) > 0:
		def = devPath(p.OnlyUse[0])
	case p.ClearPart != nil && len(p.ClearPart.Drives) > 0:
		def = devPath(p.ClearPart.Drives[0])
	default:
		if !a.cfg.AsInit {
			for _, pt := range p.Parts {
				if pt.OnDisk == "" {
					return nil, nil, fmt.Errorf("plan line %d: part %s names no disk: as a plain process herd agent writes only to disks the plan names (ignoredisk --only-use=, clearpart --drives= or --ondisk=)", pt.Line, orNone(pt.Mount))
				}
			}
		} else if all := blockDisks(); len(all) > 0 {
			def = all[0]
		}
	}
	parts = map[string][]kickstart.Part{}
	for _, pt := range p.Parts {
		d := def
		if pt.OnDisk != "" {
			d = devPath(pt.OnDisk)
			if len(p.OnlyUse) > 0 && !slices.ContainsFunc(p.OnlyUse, func(u string) bool { return devPath(u) == d }) {
				return nil, nil, fmt.Errorf("plan line %d: part %s --ondisk=%s: not among ignoredisk --only-use=%s", pt.Line, orNone(pt.Mount), pt.OnDisk, strings.Join(p.OnlyUse, ","))
			}
		}
		if d == "" {
			return nil, nil, fmt.Errorf("plan line %d: no disk for part %s: this node has no disk herd may use (loop, RAM, optical and removable devices are left alone; name one with --ondisk=)%s", pt.Line, orNone(pt.Mount), a.pciHint())
		}
		if _, ok := parts[d]; !ok {
			disks = append(disks, d)
		}
		parts[d] = append(parts[d], pt)
	}
	return disks, parts, nil
}

func orNone(s string) string {
	if s == "" {
		return "(no mount point)"
	}
	return s
}

// hasTable says whether a disk carries a partition table (an MBR
// signature, or partitions the kernel knows).
func hasTable(dev string) bool {
	if len(partitions(dev)) > 0 {
		return true
	}
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		return false
	}
	return b[510] == 0x55 && b[511] == 0xAA
}

// clears says whether the plan clears dev (clearpart --all or --drives=,
// or zerombr).
func clears(p *kickstart.Plan, dev string) bool {
	if p.ZeroMBR {
		return true
	}
	cp := p.ClearPart
	if cp == nil {
		return false
	}
	if len(cp.Drives) == 0 {
		return cp.All || cp.InitLabel
	}
	return slices.ContainsFunc(cp.Drives, func(d string) bool { return devPath(d) == dev })
}

// uefiBoot says whether this machine booted by UEFI.
func (a *agent) uefiBoot() bool {
	if !a.cfg.AsInit {
		return false
	}
	_, err := os.Stat("/sys/firmware/efi")
	return err == nil
}

// prepareDisks partitions the plan's disks, makes its filesystems and
// mounts them under the target. It checks everything it can (disks exist,
// are not in use, are large enough, are cleared by the plan) before it
// writes to any of them.
func (a *agent) prepareDisks(ctx context.Context) error {
	ps := a.plan
	p := ps.plan
	disks, parts, err := a.planDisks(p)
	if err != nil {
		return err
	}
	boot := ""
	for _, pt := range p.Parts {
		if pt.Mount == "/boot" {
			boot = "/boot"
		} else if pt.Mount == "/" && boot == "" {
			boot = "/"
		}
	}
	for _, d := range disks {
		size, err := blockdev.SizeOf(d)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d, err)
		}
		if hasTable(d) && !clears(p, d) {
			return fmt.Errorf("disk %s has a partition table and the plan does not clear it: add clearpart --all --initlabel (or --drives=%s); herd writes whole new tables", d, filepath.Base(d))
		}
		label := "dos"
		switch {
		case p.ClearPart != nil && p.ClearPart.DiskLabel != "":
			label = p.ClearPart.DiskLabel
		case slices.ContainsFunc(parts[d], func(pt kickstart.Part) bool { return pt.Kind == kickstart.Extended || pt.Kind == kickstart.Logical }):
		case a.uefiBoot() || size > 2<<40:
			label = "gpt"
		}
		bootable := ""
		if slices.ContainsFunc(parts[d], func(pt kickstart.Part) bool { return pt.Mount == boot }) {
			bootable = boot
		}
		t, err := partition.Compute(d, size, label, parts[d], bootable)
		if err != nil {
			return fmt.Errorf("plan %s: %w", ps.name, err)
		}
		ps.tables = append(ps.tables, t)
	}
	for _, t := range ps.tables {
		a.con.printf("  %s: %s table, %d MiB", t.Disk, t.Label, t.Size>>20)
		for _, pt := range t.Parts {
			a.con.printf("    %d  %-10s %-6s %8d MiB at %d MiB%s", pt.Number, orDash(pt.Part.Mount), orDash(pt.Part.FSType), pt.Size>>20, pt.Start>>20, map[bool]string{true: "  bootable"}[pt.Bootable])
		}
		if err := partition.Apply(ctx, t); err != nil {
			return fmt.Errorf("partition %s: %w", t.Disk, err)
		}
		for _, pt := range t.Parts {
			if pt.Part.FSType == "" { // an extended partition
				continue
			}
			uuid, err := mkfs.Make(ctx, pt.Device, pt.Part.FSType, pt.Part.Label)
			if err != nil {
				return fmt.Errorf("plan line %d: %w", pt.Part.Line, err)
			}
			a.con.printf("  %s: %s UUID=%s (%s)", pt.Device, pt.Part.FSType, uuid, orDash(pt.Part.Mount))
			ps.fs = append(ps.fs, planFS{part: pt.Part, disk: t.Disk, number: pt.Number, dev: pt.Device, uuid: uuid})
		}
	}
	// Mount parents before children: "/" before "/boot" before
	// "/boot/efi".
	sort.SliceStable(ps.fs, func(i, j int) bool { return mountDepth(ps.fs[i].part.Mount) < mountDepth(ps.fs[j].part.Mount) })
	for _, f := range ps.fs {
		if f.part.FSType == "swap" {
			continue
		}
		dir := filepath.Join(ps.target, f.part.Mount)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(f.dev, dir, mountType(f.part.FSType), 0, ""); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", f.dev, f.part.FSType, dir, err)
		}
		ps.mounted = append(ps.mounted, dir)
		a.con.printf("  mounted %s on %s", f.dev, dir)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mountDepth orders mount points: swap last, then by path depth.
func mountDepth(m string) int {
	if m == "swap" || m == "" {
		return 1 << 10
	}
	if m == "/" {
		return 0
	}
	return strings.Count(m, "/")
}

// mountType is the kernel's name for a plan filesystem (ext2 and ext3
// mount with the ext4 driver, which Debian's kernels build).
func mountType(fstype string) string {
	switch fstype {
	case "ext2", "ext3":
		return "ext4"
	}
	return fstype
}

// mountFor returns the plan filesystem mounted at m.
func (ps *planState) mountFor(m string) (planFS, bool) {
	for _, f := range ps.fs {
		if f.part.Mount == m {
			return f, true
		}
	}
	return planFS{}, false
}

// prepareImage is the relay's set-up hook for a node with a plan: a file
// an image command names goes where it says -- raw onto a device, or
// cooked into a mounted filesystem of the plan; a cooked file it does not
// name is unpacked inside the target at the sender's output path.
func (a *agent) prepareImage(f *wire.SetupFile) error {
	ps := a.plan
	var im *kickstart.Image
	for i := range ps.plan.Images {
		s := ps.plan.Images[i].Source
		if s == f.InputName || s == filepath.Base(f.InputName) {
			im = &ps.plan.Images[i]
			break
		}
	}
	if im == nil && len(ps.fs) == 0 {
		return nil // a plan without filesystems: as the sender says
	}
	to := f.Output
	if im != nil {
		to = im.To
	}
	switch {
	case strings.HasPrefix(to, "/dev/"):
		for _, t := range ps.tables {
			if to == t.Disk {
				return fmt.Errorf("%s would go raw onto %s, which the plan %s partitioned: send it cooked into a mount point (image %s --to /)", f.InputName, to, ps.name, filepath.Base(f.InputName))
			}
		}
		for _, m := range ps.fs {
			if m.dev == to && m.part.FSType != "swap" {
				return fmt.Errorf("%s would go raw onto %s, which holds the plan's %s filesystem: send it cooked (image %s --to %s)", f.InputName, to, m.part.Mount, filepath.Base(f.InputName), m.part.Mount)
			}
		}
		f.Output = to
	case im != nil && !f.Cooked:
		return fmt.Errorf("plan %s line %d: image %s --to %s: a file goes into a filesystem only cooked; send it with '>>' (herd serve --file '%s >> %s')", ps.name, im.Line, im.Source, im.To, f.InputName, im.To)
	case !f.Cooked:
		return fmt.Errorf("%s > %s: with the install plan %s, a raw file goes to a /dev/ device only; name it in an image command, or send it cooked ('>>') into a mount point", f.InputName, f.Output, ps.name)
	default:
		f.Output = filepath.Join(ps.target, to)
		if err := os.MkdirAll(f.Output, 0o755); err != nil {
			return fmt.Errorf("%s: %w", f.Output, err)
		}
	}
	a.con.printf("  %s → %s", f.InputName, f.Output)
	return nil
}

// checkImages makes sure every image command's file came in the session.
func (a *agent) checkImages() error {
	for _, im := range a.plan.plan.Images {
		if !slices.ContainsFunc(a.files, func(f wire.SetupFile) bool {
			return f.InputName == im.Source || filepath.Base(f.InputName) == im.Source
		}) {
			return fmt.Errorf("plan %s line %d: image %s: the session had no such file (herd serve --file '%s >> %s')", a.plan.name, im.Line, im.Source, im.Source, im.To)
		}
	}
	return nil
}

// writeFstab writes the target's /etc/fstab from the plan: one line per
// filesystem, by UUID.
func (ps *planState) writeFstab() (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# /etc/fstab: written by herd from the install plan %s\n# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n", ps.name)
	for _, f := range ps.fs {
		m, opts, pass := f.part.Mount, "defaults", 2
		switch {
		case f.part.FSType == "swap":
			m, opts, pass = "none", "sw", 0
		case m == "/":
			pass = 1
			if strings.HasPrefix(f.part.FSType, "ext") { // xfs has no errors=
				opts = "errors=remount-ro"
			}
		case f.part.FSType == "vfat":
			opts = "umask=0077"
		}
		fmt.Fprintf(&b, "UUID=%s\t%s\t%s\t%s\t0\t%d\n", f.uuid, m, f.part.FSType, opts, pass)
	}
	dir := filepath.Join(ps.target, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "fstab")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	return b.String(), nil
}

// unmountTarget unmounts the plan's filesystems, children first.
func (ps *planState) unmountTarget() error {
	unix.Sync()
	var errs []error
	for i := len(ps.mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(ps.mounted[i], 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", ps.mounted[i], err))
		}
	}
	ps.mounted = nil
	return errors.Join(errs...)
}

// installPlan finishes a plan install once the ring verified the data:
// fstab, the node's identity, the plan's settings, the bootloader and
// %post, then unmounts the target.
func (a *agent) installPlan(ctx context.Context) error {
	ps := a.plan
	if err := a.checkImages(); err != nil {
		return err
	}
	if err := a.con.step("write /etc/fstab", func() error {
		t, err := ps.writeFstab()
		for _, l := range strings.Split(strings.TrimSpace(t), "\n") {
			if !strings.HasPrefix(l, "#") {
				a.con.printf("  %s", l)
			}
		}
		return err
	}); err != nil {
		return err
	}
	if err := a.con.step("customize the installed system", func() error {
		if !isRootTree(ps.target) {
			a.con.printf("no /etc in the new root: nothing to customize")
			return nil
		}
		if err := a.apply(ps.target, a.identity()); err != nil {
			return err
		}
		return a.applySettings()
	}); err != nil {
		return err
	}
	if b := ps.plan.Bootloader; b == nil || b.Location != "none" {
		if err := a.con.step("install the bootloader", func() error { return a.installBootloader(ctx) }); err != nil {
			return err
		}
	}
	for i, s := range ps.plan.Post {
		what := fmt.Sprintf("%%post (line %d)", s.Line)
		root := ps.target
		if s.NoChroot {
			what = fmt.Sprintf("%%post --nochroot (line %d)", s.Line)
			root = ""
		}
		err := a.con.step(fmt.Sprintf("%s, %d of %d", what, i+1, len(ps.plan.Post)), func() error {
			out, err := a.runScript(ctx, what, s, root, ps.target)
			ps.postOutput += out
			if len(ps.postOutput) > scriptTail {
				ps.postOutput = ps.postOutput[len(ps.postOutput)-scriptTail:]
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if ps.plan.Kexec || a.cfg.Settings.Kexec {
		if root, ok := ps.mountFor("/"); ok && a.cfg.AsInit {
			if err := a.loadKexec(ps.target, root.dev); err != nil {
				a.con.printf("  kexec: %v (will reboot instead)", err)
			}
		}
	}
	return a.con.step("unmount the new system", ps.unmountTarget)
}
