package kickstart

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// unsupported are kickstart commands herd knows but does not carry out: a
// plan using them gets a warning, not an error.
var unsupported = []string{
	"auth", "authconfig", "authselect", "autopart", "autostep", "btrfs", "cdrom", "cmdline",
	"device", "deviceprobe", "driverdisk", "eula", "fcoe", "firewall", "firstboot", "graphical",
	"group", "harddrive", "install", "interactive", "iscsi", "iscsiname", "keyboard", "lang",
	"liveimg", "logging", "logvol", "mediacheck", "module", "monitor", "mount", "nfs",
	"ostreesetup", "raid", "realm", "repo", "reqpart", "rescue", "rhsm", "selinux", "services",
	"shutdown", "skipx", "snapshot", "sshkey", "sshpw", "syspurpose", "text", "timesource",
	"updates", "upgrade", "url", "user", "vnc", "volgroup", "xconfig", "zfcp", "zipl",
}

// skippedSections are kickstart sections herd reads past with a warning.
var skippedSections = []string{"%packages", "%addon", "%anaconda", "%onerror", "%traceback"}

// ParseNamed reads a plan by its name: a ka-deploy partition description
// when IsKa(name), else a kickstart file.
func ParseNamed(name string, r io.Reader) (*Plan, error) {
	if IsKa(name) {
		return ParseKa(name, r)
	}
	return Parse(name, r)
}

// IsKa says whether a plan's file name marks a ka-deploy partition
// description (.desc or .ka) rather than a kickstart file.
func IsKa(name string) bool {
	return strings.HasSuffix(name, ".desc") || strings.HasSuffix(name, ".ka")
}

// Parse reads a kickstart file; name is used in messages.
func Parse(name string, r io.Reader) (*Plan, error) {
	p := &parser{name: name, plan: &Plan{Finish: "reboot"}}
	if err := p.run(r); err != nil {
		return nil, err
	}
	return p.plan, nil
}

type parser struct {
	name string
	plan *Plan
	line int
	// finishSet: a reboot/poweroff/halt was given (a second one is an
	// error).
	finishSet bool
}

func (p *parser) errf(line int, format string, args ...any) error {
	return &Error{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.plan.Warnings = append(p.plan.Warnings, Warning{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) run(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var section *Script // the %pre/%post being read
	var sectionKind string
	var skipping string // a section read past
	var body strings.Builder
	var cont string // a line continued with a backslash
	contLine := 0
	for sc.Scan() {
		p.line++
		text := sc.Text()
		if section != nil || skipping != "" {
			if strings.TrimSpace(text) == "%end" {
				if section != nil {
					section.Body = body.String()
					if sectionKind == "%pre" {
						p.plan.Pre = append(p.plan.Pre, *section)
					} else {
						p.plan.Post = append(p.plan.Post, *section)
					}
					section, body = nil, strings.Builder{}
				}
				skipping = ""
				continue
			}
			if section != nil {
				body.WriteString(text)
				body.WriteByte('\n')
			}
			continue
		}
		if strings.HasSuffix(text, "\\") && !strings.HasSuffix(text, "\\\\") {
			if cont == "" {
				contLine = p.line
			}
			cont += strings.TrimSuffix(text, "\\") // as a shell: the backslash and newline vanish
			continue
		}
		line := p.line
		if cont != "" {
			text, line, cont = cont+text, contLine, ""
		}
		words, err := split(text)
		if err != nil {
			return p.errf(line, "%v", err)
		}
		if len(words) == 0 {
			continue
		}
		cmd, args := words[0], words[1:]
		switch {
		case cmd == "%pre" || cmd == "%post":
			s, err := p.scriptHeader(line, cmd, args)
			if err != nil {
				return err
			}
			section, sectionKind = s, cmd
			continue
		case slices.Contains(skippedSections, cmd):
			p.warnf(line, "%s section ignored: herd installs images, not packages or add-ons", cmd)
			skipping = cmd
			continue
		case cmd == "%end":
			return p.errf(line, "%%end without a section")
		case cmd == "%include" || cmd == "%ksappend":
			return p.errf(line, "%s is not supported: put everything in one file", cmd)
		case strings.HasPrefix(cmd, "%"):
			return p.errf(line, "unknown section %s (herd knows %%pre, %%post, and reads past %s)", cmd, strings.Join(skippedSections, ", "))
		}
		if err := p.command(line, cmd, args); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	switch {
	case cont != "":
		return p.errf(contLine, "the file ends inside a line continued with \\")
	case section != nil:
		return p.errf(section.Line, "%s section without %%end", sectionKind)
	case skipping != "":
		return p.errf(p.line, "%s section without %%end", skipping)
	}
	return p.check()
}

// check looks at the plan as a whole.
func (p *parser) check() error {
	mounts := map[string]int{}
	for _, pt := range p.plan.Parts {
		if pt.Mount == "" || pt.Mount == "swap" {
			continue
		}
		if l, dup := mounts[pt.Mount]; dup {
			return p.errf(pt.Line, "mount point %s is already used on line %d", pt.Mount, l)
		}
		mounts[pt.Mount] = pt.Line
	}
	for _, im := range p.plan.Images {
		if strings.HasPrefix(im.To, "/dev/") {
			continue
		}
		if _, ok := mounts[im.To]; !ok {
			return p.errf(im.Line, "image %s --to %s: no partition of the plan is mounted there (give a mount point of a part, or a /dev/ device)", im.Source, im.To)
		}
	}
	return nil
}

func (p *parser) scriptHeader(line int, cmd string, args []string) (*Script, error) {
	s := &Script{Line: line}
	opts, rest, err := p.options(line, cmd, args, map[string]bool{"--nochroot": false, "--interpreter": true, "--erroronfail": false, "--log": true})
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, p.errf(line, "%s: unexpected %q", cmd, rest[0])
	}
	if _, ok := opts["--nochroot"]; ok {
		if cmd == "%pre" {
			return nil, p.errf(line, "%%pre --nochroot: %%pre always runs in the installer")
		}
		s.NoChroot = true
	}
	s.Interpreter = opts["--interpreter"]
	if _, ok := opts["--log"]; ok {
		p.warnf(line, "%s --log ignored: the script's output goes to the console and the node's report", cmd)
	}
	return s, nil
}

// command applies one kickstart command.
func (p *parser) command(line int, cmd string, args []string) error {
	switch cmd {
	case "clearpart":
		opts, rest, err := p.options(line, cmd, args, map[string]bool{"--all": false, "--drives": true, "--initlabel": false, "--linux": false, "--none": false, "--list": true, "--disklabel": true})
		if err != nil {
			return err
		}
		if err := noArgs(p, line, cmd, rest); err != nil {
			return err
		}
		cp := &ClearPart{Line: line}
		_, cp.All = opts["--all"]
		_, cp.InitLabel = opts["--initlabel"]
		if d, ok := opts["--drives"]; ok {
			cp.Drives = commaList(d)
		}
		if l, ok := opts["--disklabel"]; ok {
			switch l {
			case "gpt", "msdos", "dos", "mbr":
				cp.DiskLabel = "gpt"
				if l != "gpt" {
					cp.DiskLabel = "dos"
				}
			default:
				return p.errf(line, "clearpart --disklabel=%s: want gpt or msdos", l)
			}
		}
		for _, o := range []string{"--linux", "--none", "--list"} {
			if _, ok := opts[o]; ok {
				p.warnf(line, "clearpart %s ignored: herd clears whole disks (--all or --drives=)", o)
			}
		}
		p.plan.ClearPart = cp
	case "zerombr":
		if err := noArgs(p, line, cmd, args); err != nil {
			return err
		}
		p.plan.ZeroMBR = true
	case "ignoredisk":
		opts, rest, err := p.options(line, cmd, args, map[string]bool{"--only-use": true, "--drives": true})
		if err != nil {
			return err
		}
		if err := noArgs(p, line, cmd, rest); err != nil {
			return err
		}
		if d, ok := opts["--drives"]; ok {
			return p.errf(line, "ignoredisk --drives=%s: herd supports only --only-use= (the disks it may touch)", d)
		}
		d, ok := opts["--only-use"]
		if !ok {
			return p.errf(line, "ignoredisk: want --only-use=DISK[,DISK]")
		}
		p.plan.OnlyUse = commaList(d)
	case "part", "partition":
		return p.part(line, args)
	case "bootloader":
		opts, rest, err := p.options(line, cmd, args, map[string]bool{"--location": true, "--append": true, "--timeout": true, "--boot-drive": true, "--driveorder": true, "--password": true, "--iscrypted": false, "--md5pass": true})
		if err != nil {
			return err
		}
		if err := noArgs(p, line, cmd, rest); err != nil {
			return err
		}
		b := &Bootloader{Location: "mbr", Timeout: -1, Line: line}
		if l, ok := opts["--location"]; ok {
			switch l {
			case "mbr", "none":
				b.Location = l
			case "partition", "boot":
				return p.errf(line, "bootloader --location=%s: herd installs to the MBR (mbr) or not at all (none)", l)
			default:
				return p.errf(line, "bootloader --location=%q: want mbr or none", l)
			}
		}
		b.Append = opts["--append"]
		if t, ok := opts["--timeout"]; ok {
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 {
				return p.errf(line, "bootloader --timeout=%q: want seconds, 0 or more", t)
			}
			b.Timeout = n
		}
		for _, o := range []string{"--boot-drive", "--driveorder", "--password", "--iscrypted", "--md5pass"} {
			if _, ok := opts[o]; ok {
				p.warnf(line, "bootloader %s ignored", o)
			}
		}
		p.plan.Bootloader = b
	case "network":
		opts, rest, err := p.options(line, cmd, args, map[string]bool{"--bootproto": true, "--hostname": true, "--device": true, "--onboot": true, "--activate": false, "--noipv6": false, "--ipv6": true})
		if err != nil {
			return err
		}
		if err := noArgs(p, line, cmd, rest); err != nil {
			return err
		}
		n := Network{BootProto: "dhcp", Hostname: opts["--hostname"], Device: opts["--device"], Line: line}
		if bp, ok := opts["--bootproto"]; ok {
			switch bp {
			case "dhcp", "bootp":
			case "static", "ibft", "query":
				return p.errf(line, "network --bootproto=%s: herd configures nodes from their DHCP reservation (dhcp)", bp)
			default:
				return p.errf(line, "network --bootproto=%q: want dhcp", bp)
			}
		}
		for _, o := range []string{"--onboot", "--activate", "--noipv6", "--ipv6"} {
			if _, ok := opts[o]; ok {
				p.warnf(line, "network %s ignored", o)
			}
		}
		p.plan.Network = append(p.plan.Network, n)
	case "rootpw":
		opts, rest, err := p.options(line, cmd, args, map[string]bool{"--iscrypted": false, "--plaintext": false, "--lock": false, "--allow-ssh": false})
		if err != nil {
			return err
		}
		rp := &RootPW{Line: line}
		_, rp.Crypted = opts["--iscrypted"]
		_, rp.Lock = opts["--lock"]
		if _, plain := opts["--plaintext"]; plain && rp.Crypted {
			return p.errf(line, "rootpw: --iscrypted and --plaintext together")
		}
		switch {
		case len(rest) == 1:
			rp.Password = rest[0]
		case len(rest) == 0 && rp.Lock:
		default:
			return p.errf(line, "rootpw: want one password (with --iscrypted, a crypt(3) hash such as $6$...)")
		}
		if rp.Crypted && !strings.HasPrefix(rp.Password, "$") {
			return p.errf(line, "rootpw --iscrypted: %q is not a crypt(3) hash ($id$salt$hash)", rp.Password)
		}
		p.plan.RootPW = rp
	case "timezone":
		opts, rest, err := p.options(line, cmd, args, map[string]bool{"--utc": false, "--isUtc": false, "--nontp": false, "--ntpservers": true})
		if err != nil {
			return err
		}
		if len(rest) != 1 {
			return p.errf(line, "timezone: want one zone, such as Europe/Zurich")
		}
		p.plan.Timezone = rest[0]
		_, u1 := opts["--utc"]
		_, u2 := opts["--isUtc"]
		p.plan.UTC = u1 || u2
	case "reboot", "poweroff", "halt":
		if _, _, err := p.options(line, cmd, args, map[string]bool{"--eject": false, "--kexec": false}); err != nil {
			return err
		}
		if p.finishSet {
			return p.errf(line, "%s: the plan already says how it ends", cmd)
		}
		p.finishSet, p.plan.Finish = true, cmd
		if slices.Contains(args, "--kexec") {
			p.plan.Kexec = true
		}
	case "kexec":
		if err := noArgs(p, line, cmd, args); err != nil {
			return err
		}
		p.plan.Kexec = true
	case "image":
		return p.image(line, args)
	default:
		if slices.Contains(unsupported, cmd) {
			p.warnf(line, "%s is not supported by herd and is ignored", cmd)
			return nil
		}
		return p.errf(line, "unknown command %q", cmd)
	}
	return nil
}

// part reads part MOUNT --fstype= --size= --grow --maxsize= --ondisk=
// --asprimary --label=.
func (p *parser) part(line int, args []string) error {
	opts, rest, err := p.options(line, "part", args, map[string]bool{"--fstype": true, "--size": true, "--grow": false, "--maxsize": true, "--ondisk": true, "--ondrive": true, "--asprimary": false, "--label": true, "--recommended": false, "--fsoptions": true, "--noformat": false})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return p.errf(line, "part: want one mount point (/, /boot, swap ...)")
	}
	pt := Part{Mount: rest[0], Line: line, OnDisk: opts["--ondisk"]}
	if d, ok := opts["--ondrive"]; ok {
		pt.OnDisk = d
	}
	if pt.Mount != "swap" && !strings.HasPrefix(pt.Mount, "/") {
		return p.errf(line, "part %q: want an absolute mount point or swap", pt.Mount)
	}
	pt.FSType = opts["--fstype"]
	if pt.Mount == "swap" {
		if pt.FSType != "" && pt.FSType != "swap" {
			return p.errf(line, "part swap --fstype=%s: swap is swap", pt.FSType)
		}
		pt.FSType = "swap"
	}
	switch pt.FSType {
	case "":
		pt.FSType = "ext4"
	case "ext4", "ext3", "ext2", "xfs", "vfat", "efi", "swap":
		if pt.FSType == "efi" {
			pt.FSType = "vfat"
		}
	case "biosboot", "prepboot", "btrfs", "lvmpv", "raid":
		return p.errf(line, "part %s --fstype=%s: not supported (ext4, ext3, ext2, xfs, vfat, swap)", pt.Mount, pt.FSType)
	default:
		return p.errf(line, "part %s --fstype=%q: unknown (ext4, ext3, ext2, xfs, vfat, swap)", pt.Mount, pt.FSType)
	}
	if pt.Mount == "swap" && pt.FSType != "swap" || pt.FSType == "swap" && pt.Mount != "swap" {
		return p.errf(line, "part %s --fstype=%s: a swap partition's mount point is swap", pt.Mount, pt.FSType)
	}
	size, ok := opts["--size"]
	_, pt.Grow = opts["--grow"]
	if _, rec := opts["--recommended"]; rec {
		return p.errf(line, "part %s --recommended: give --size= (MiB)", pt.Mount)
	}
	switch {
	case ok:
		if pt.SizeMiB, err = mib(size); err != nil {
			return p.errf(line, "part %s --size=%q: %v", pt.Mount, size, err)
		}
	case !pt.Grow:
		return p.errf(line, "part %s: want --size= (MiB) or --grow", pt.Mount)
	}
	if m, ok := opts["--maxsize"]; ok {
		if !pt.Grow {
			return p.errf(line, "part %s --maxsize without --grow", pt.Mount)
		}
		if pt.MaxSizeMiB, err = mib(m); err != nil {
			return p.errf(line, "part %s --maxsize=%q: %v", pt.Mount, m, err)
		}
		if pt.MaxSizeMiB < pt.SizeMiB {
			return p.errf(line, "part %s: --maxsize=%d is below --size=%d", pt.Mount, pt.MaxSizeMiB, pt.SizeMiB)
		}
	}
	if _, ok := opts["--asprimary"]; ok {
		pt.Kind = Primary
	}
	pt.Label = opts["--label"]
	for _, o := range []string{"--fsoptions", "--noformat"} {
		if _, ok := opts[o]; ok {
			p.warnf(line, "part %s %s ignored", pt.Mount, o)
		}
	}
	p.plan.Parts = append(p.plan.Parts, pt)
	return nil
}

// image reads herd's image SOURCE --to DEVICE|MOUNTPOINT.
func (p *parser) image(line int, args []string) error {
	opts, rest, err := p.options(line, "image", args, map[string]bool{"--to": true})
	if err != nil {
		return err
	}
	to, ok := opts["--to"]
	if len(rest) != 1 || !ok || to == "" {
		return p.errf(line, "image: want image SOURCE --to DEVICE|MOUNTPOINT")
	}
	if !strings.HasPrefix(to, "/") {
		return p.errf(line, "image %s --to %q: want a /dev/ device or an absolute mount point", rest[0], to)
	}
	p.plan.Images = append(p.plan.Images, Image{Source: rest[0], To: to, Line: line})
	return nil
}

// options separates a command's options (known: name → takes a value)
// from its other words. Values come as --name=value or --name value.
func (p *parser) options(line int, cmd string, args []string, known map[string]bool) (map[string]string, []string, error) {
	opts := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			rest = append(rest, a)
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		takes, ok := known[name]
		switch {
		case !ok:
			return nil, nil, p.errf(line, "%s: unknown option %s", cmd, name)
		case takes && !hasVal:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				return nil, nil, p.errf(line, "%s %s: missing value", cmd, name)
			}
			i++
			val = args[i]
		case !takes && hasVal:
			return nil, nil, p.errf(line, "%s %s takes no value", cmd, name)
		}
		if _, dup := opts[name]; dup {
			return nil, nil, p.errf(line, "%s: %s given twice", cmd, name)
		}
		opts[name] = val
	}
	return opts, rest, nil
}

func noArgs(p *parser, line int, cmd string, rest []string) error {
	if len(rest) > 0 {
		return p.errf(line, "%s: unexpected %q", cmd, rest[0])
	}
	return nil
}

func commaList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// mib parses a size in MiB: a positive whole number.
func mib(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return 0, errors.New("want a whole number of MiB, more than 0")
	}
	return n, nil
}

// split cuts a kickstart line into words as a POSIX shell would: quotes,
// backslash escapes, and a # that starts a word starts a comment.
func split(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\\':
			if i+1 < len(s) {
				i++
				w.WriteByte(s[i])
			}
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated \" quote")
			}
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
