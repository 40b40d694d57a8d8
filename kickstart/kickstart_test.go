package kickstart

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A kickstart file as a cluster administrator writes it: every supported
// command, options in both forms, quoting, a continued line, sections.
func TestParseFile(t *testing.T) {
	f, err := os.Open("testdata/compute.ks")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Parse("compute.ks", f)
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		ClearPart: &ClearPart{All: true, Drives: []string{"sda"}, InitLabel: true, Line: 11},
		ZeroMBR:   true,
		OnlyUse:   []string{"sda"},
		Parts: []Part{
			{Mount: "/boot", FSType: "ext4", SizeMiB: 512, Kind: Primary, Label: "boot", Line: 12},
			{Mount: "swap", FSType: "swap", SizeMiB: 2048, Line: 13},
			{Mount: "/", FSType: "ext4", SizeMiB: 8192, Grow: true, MaxSizeMiB: 65536, OnDisk: "sda", Line: 14},
			{Mount: "/scratch", FSType: "xfs", SizeMiB: 1024, Grow: true, Line: 15},
		},
		Bootloader: &Bootloader{Location: "mbr", Append: "console=ttyS0,115200   net.ifnames=0", Timeout: 5, Line: 16},
		Network:    []Network{{BootProto: "dhcp", Hostname: "node01", Device: "eth0", Line: 8}},
		RootPW:     &RootPW{Password: "$6$rounds=4096$saltsalt$3MEaFGVQnJqC7fWg1ZJ6T0Yl3x1vUuQd3n9r8oMh0h7d4cQ9mR2kq0yM5q2e9l4x1Cz8bR3a1q0oD2wV8tQ1m.", Crypted: true, Line: 7},
		Timezone:   "Europe/Zurich",
		UTC:        true,
		Finish:     "reboot",
		Images:     []Image{{Source: "root.tar.zst", To: "/", Line: 18}, {Source: "scratch-skel.tar", To: "/scratch", Line: 19}},
		Pre:        []Script{{Interpreter: "/bin/bash", Body: "echo \"pre on $(hostname)\"\n", Line: 27}},
		Post: []Script{
			{NoChroot: true, Body: "cp /etc/resolv.conf /mnt/sysimage/etc/resolv.conf\n", Line: 31},
			{Body: "echo \"# Hostname: $HOSTNAME\" >> /etc/motd\nsystemctl enable sshd\n", Line: 35},
		},
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Warnings" }, cmp.Ignore())); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	var warned []string
	for _, w := range got.Warnings {
		warned = append(warned, w.String())
	}
	for _, want := range []string{
		"compute.ks:3: text is not supported",
		"compute.ks:4: lang is not supported",
		"compute.ks:5: keyboard is not supported",
		"compute.ks:8: network --onboot ignored",
		"compute.ks:22: %packages section ignored",
	} {
		if !strings.Contains(strings.Join(warned, "\n"), want) {
			t.Errorf("no warning %q in:\n%s", want, strings.Join(warned, "\n"))
		}
	}
}

func TestParseSmall(t *testing.T) {
	for _, tc := range []struct {
		name, ks string
		check    func(*Plan) string
	}{
		{"defaults", "part / --size=100\n", func(p *Plan) string {
			if p.Finish != "reboot" || p.Kexec || p.Parts[0].FSType != "ext4" || p.Parts[0].Kind != Any {
				return "want reboot, ext4, any kind"
			}
			return ""
		}},
		{"poweroff and kexec", "poweroff\nkexec\n", func(p *Plan) string {
			if p.Finish != "poweroff" || !p.Kexec {
				return "want poweroff and kexec"
			}
			return ""
		}},
		{"grow without size", "part /data --grow --fstype xfs\n", func(p *Plan) string {
			if pt := p.Parts[0]; !pt.Grow || pt.SizeMiB != 0 || pt.FSType != "xfs" {
				return "want a growing xfs partition"
			}
			return ""
		}},
		{"efi is vfat", "part /boot/efi --fstype=efi --size=200\n", func(p *Plan) string {
			if p.Parts[0].FSType != "vfat" {
				return "want vfat"
			}
			return ""
		}},
		{"image to a device", "image golden.img.zst --to /dev/sda\n", func(p *Plan) string {
			if len(p.Images) != 1 || p.Images[0].To != "/dev/sda" {
				return "want the image to /dev/sda"
			}
			return ""
		}},
		{"comments and quotes", "# c\n  network --hostname 'a b' # trailing\n", func(p *Plan) string {
			if p.Network[0].Hostname != "a b" {
				return "want hostname 'a b'"
			}
			return ""
		}},
		{"rootpw locked", "rootpw --lock\n", func(p *Plan) string {
			if !p.RootPW.Lock || p.RootPW.Password != "" {
				return "want a locked root"
			}
			return ""
		}},
		{"disklabel gpt", "clearpart --all --disklabel=gpt\n", func(p *Plan) string {
			if p.ClearPart.DiskLabel != "gpt" || len(p.Warnings) != 0 {
				return "want gpt, no warning"
			}
			return ""
		}},
		{"disklabel msdos", "clearpart --all --disklabel msdos\n", func(p *Plan) string {
			if p.ClearPart.DiskLabel != "dos" {
				return "want dos"
			}
			return ""
		}},
		{"bootloader none", "bootloader --location none\n", func(p *Plan) string {
			if p.Bootloader.Location != "none" || p.Bootloader.Timeout != -1 {
				return "want none, no timeout"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("t.ks", strings.NewReader(tc.ks))
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(p); msg != "" {
				t.Errorf("%s; got %+v", msg, p)
			}
		})
	}
}

// Bad plans fail with the file, the line and what is wrong.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		ks   string
		line int
		want string
	}{
		{"frobnicate --now\n", 1, `unknown command "frobnicate"`},
		{"part / --size=100\npart / --size=200\n", 2, "mount point / is already used on line 1"},
		{"part /\n", 1, "want --size= (MiB) or --grow"},
		{"part / --size=0\n", 1, "want a whole number of MiB"},
		{"part / --size=ten\n", 1, "want a whole number of MiB"},
		{"part / --size=100 --maxsize=200\n", 1, "--maxsize without --grow"},
		{"part / --size=300 --grow --maxsize=200\n", 1, "--maxsize=200 is below --size=300"},
		{"part home --size=1\n", 1, "want an absolute mount point or swap"},
		{"part / --fstype=zfs --size=1\n", 1, `--fstype="zfs": unknown`},
		{"part / --fstype=btrfs --size=1\n", 1, "not supported"},
		{"part swap --fstype=ext4 --size=1\n", 1, "swap is swap"},
		{"part / --fstype=swap --size=1\n", 1, "a swap partition's mount point is swap"},
		{"part / --size=1 --bogus\n", 1, "part: unknown option --bogus"},
		{"part / --size\n", 1, "part --size: missing value"},
		{"part / --grow=yes\n", 1, "--grow takes no value"},
		{"part / --size=1 --size=2\n", 1, "--size given twice"},
		{"\n\nbootloader --location=partition\n", 3, "herd installs to the MBR"},
		{"bootloader --timeout=-3\n", 1, "want seconds"},
		{"network --bootproto=static\n", 1, "from their DHCP reservation"},
		{"rootpw --iscrypted secret\n", 1, "not a crypt(3) hash"},
		{"rootpw\n", 1, "want one password"},
		{"timezone\n", 1, "want one zone"},
		{"clearpart --all --disklabel=sun\n", 1, "--disklabel=sun: want gpt or msdos"},
		{"reboot\nhalt\n", 2, "already says how it ends"},
		{"image root.tar\n", 1, "want image SOURCE --to"},
		{"image root.tar --to /srv\n", 1, "no partition of the plan is mounted there"},
		{"image root.tar --to dev/sda\n", 1, "want a /dev/ device or an absolute mount point"},
		{"ignoredisk --drives=sdb\n", 1, "only --only-use="},
		{"%post\necho hi\n", 1, "%post section without %end"},
		{"%packages\n@core\n", 2, "%packages section without %end"},
		{"%end\n", 1, "%end without a section"},
		{"%postinstall\n", 1, "unknown section %postinstall"},
		{"%pre --nochroot\n%end\n", 1, "%pre always runs in the installer"},
		{"%include /tmp/part.ks\n", 1, "%include is not supported"},
		{"network --hostname 'open\n", 1, "unterminated ' quote"},
		{"zerombr now\n", 1, `zerombr: unexpected "now"`},
		{"bootloader --append=a \\\n", 1, "ends inside a line continued"},
	} {
		_, err := Parse("bad.ks", strings.NewReader(tc.ks))
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %v, want a *kickstart.Error", tc.ks, err)
			continue
		}
		if pe.File != "bad.ks" || pe.Line != tc.line || !strings.Contains(pe.Msg, tc.want) {
			t.Errorf("%q: %v; want bad.ks:%d: ...%s...", tc.ks, err, tc.line, tc.want)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a  b	c`, []string{"a", "b", "c"}},
		{`--append="x y" --b='p q'`, []string{"--append=x y", "--b=p q"}},
		{`a\ b c#d # comment`, []string{"a b", "c#d"}},
		{`"say \"hi\" \$x"`, []string{`say "hi" $x`}},
		{`''`, []string{""}},
		{`# all comment`, nil},
	} {
		got, err := split(tc.in)
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("split(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/compute.ks"); err == nil {
		f.Add(string(b))
	}
	for _, s := range []string{
		"part / --size=100 --grow\nimage a --to /\n",
		"%post --nochroot\n%end\n%pre\n%end\n",
		"bootloader --append=\"a \\\"b\\\"\" \\\n --timeout 3\n",
		"network --hostname 'x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse("fuzz.ks", strings.NewReader(s))
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) && !strings.HasPrefix(err.Error(), "fuzz.ks: ") {
				t.Fatalf("error %v names no place", err)
			}
			return
		}
		for _, pt := range p.Parts {
			if pt.SizeMiB < 0 || !pt.Grow && pt.SizeMiB == 0 || pt.FSType == "" {
				t.Fatalf("bad partition %+v from %q", pt, s)
			}
		}
		if p.Finish != "reboot" && p.Finish != "poweroff" && p.Finish != "halt" {
			t.Fatalf("finish %q", p.Finish)
		}
	})
}
