package agent

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/GehirnInc/crypt"
	"github.com/herdproject/herd/agent/partition"
	"github.com/herdproject/herd/kickstart"
	"github.com/herdproject/herd/ring/wire"
)

func TestSetShadowRoot(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"replace", "root:*:19000:0:99999:7:::\ndaemon:*:19000::::::\n", "root:$6$x:19000:0:99999:7:::\ndaemon:*:19000::::::\n"},
		{"not first", "bin:*:1::::::\nroot:!:1::::::", "bin:*:1::::::\nroot:$6$x:1::::::"},
		{"no root", "daemon:*:1::::::\n", "root:$6$x:19000:0:99999:7:::\ndaemon:*:1::::::\n"},
		{"empty", "", "root:$6$x:19000:0:99999:7:::\n"},
		{"rootless look-alike", "rootkit:*:1::::::\n", "root:$6$x:19000:0:99999:7:::\nrootkit:*:1::::::\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := setShadowRoot(tc.in, "$6$x"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRootHash(t *testing.T) {
	h, err := rootHash(&kickstart.RootPW{Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$6$") || crypt.SHA512.New().Verify(h, []byte("s3cret")) != nil {
		t.Errorf("clear text: hash %q does not verify as SHA-512 crypt of the password", h)
	}
	for _, tc := range []struct {
		rp   kickstart.RootPW
		want string
	}{
		{kickstart.RootPW{Password: "$6$salt$abc", Crypted: true}, "$6$salt$abc"},
		{kickstart.RootPW{Password: "$6$salt$abc", Crypted: true, Lock: true}, "!$6$salt$abc"},
		{kickstart.RootPW{Lock: true}, "!*"},
	} {
		if got, _ := rootHash(&tc.rp); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.rp, got, tc.want)
		}
	}
}

// testPlan is a plan state as prepareDisks leaves it: /dev/vda
// partitioned into /boot, swap and /, mounted under a temporary target.
func testPlan(t *testing.T, images ...kickstart.Image) *planState {
	t.Helper()
	return &planState{
		name:   "compute.ks",
		plan:   &kickstart.Plan{Images: images},
		target: t.TempDir(),
		tables: []*partition.Table{{Disk: "/dev/vda", Label: "dos"}},
		fs: []planFS{
			{part: kickstart.Part{Mount: "/", FSType: "ext4"}, disk: "/dev/vda", number: 3, dev: "/dev/vda3", uuid: "r-uuid"},
			{part: kickstart.Part{Mount: "/boot", FSType: "ext4"}, disk: "/dev/vda", number: 1, dev: "/dev/vda1", uuid: "b-uuid"},
			{part: kickstart.Part{Mount: "/boot/efi", FSType: "vfat"}, disk: "/dev/vda", number: 4, dev: "/dev/vda4", uuid: "ABCD-1234"},
			{part: kickstart.Part{Mount: "swap", FSType: "swap"}, disk: "/dev/vda", number: 2, dev: "/dev/vda2", uuid: "s-uuid"},
		},
	}
}

func TestWriteFstab(t *testing.T) {
	ps := testPlan(t)
	got, err := ps.writeFstab()
	if err != nil {
		t.Fatal(err)
	}
	want := "# /etc/fstab: written by herd from the install plan compute.ks\n" +
		"# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n" +
		"UUID=r-uuid\t/\text4\terrors=remount-ro\t0\t1\n" +
		"UUID=b-uuid\t/boot\text4\tdefaults\t0\t2\n" +
		"UUID=ABCD-1234\t/boot/efi\tvfat\tumask=0077\t0\t2\n" +
		"UUID=s-uuid\tnone\tswap\tsw\t0\t0\n"
	if got != want {
		t.Errorf("fstab:\n%s\nwant:\n%s", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(ps.target, "etc/fstab")); string(b) != want {
		t.Errorf("the file holds:\n%s", b)
	}
}

func TestMountOrder(t *testing.T) {
	for _, tc := range []struct{ a, b string }{{"/", "/boot"}, {"/boot", "/boot/efi"}, {"/var", "swap"}, {"/", "/home"}} {
		if mountDepth(tc.a) >= mountDepth(tc.b) {
			t.Errorf("%s is not mounted before %s", tc.a, tc.b)
		}
	}
}

func TestPrepareImage(t *testing.T) {
	a := &agent{con: &console{w: &bytes.Buffer{}, now: time.Now}}
	images := []kickstart.Image{
		{Source: "root.tar.zst", To: "/", Line: 7},
		{Source: "home.tar", To: "/boot", Line: 8},
		{Source: "data.img", To: "/dev/vdb", Line: 9},
		{Source: "raw.img", To: "/", Line: 10},
		{Source: "clobber.img", To: "/dev/vda3", Line: 11},
	}
	for _, tc := range []struct {
		name string
		f    wire.SetupFile
		want string // the output under the target ("T" = the target), or an error's text
		err  bool
	}{
		{"named, cooked", wire.SetupFile{InputName: "/srv/images/root.tar.zst", Output: "/ignored", Cooked: true}, "T", false},
		{"named into a mount point", wire.SetupFile{InputName: "home.tar", Output: "/x", Cooked: true}, "T/boot", false},
		{"named, raw to a device", wire.SetupFile{InputName: "data.img", Output: "/x"}, "/dev/vdb", false},
		{"not named, cooked", wire.SetupFile{InputName: "extra.tar", Output: "/opt/extra", Cooked: true}, "T/opt/extra", false},
		{"named raw into a filesystem", wire.SetupFile{InputName: "raw.img", Output: "/"}, "line 10: image raw.img --to /: a file goes into a filesystem only cooked", true},
		{"not named, raw", wire.SetupFile{InputName: "other.img", Output: "/srv/x"}, "a raw file goes to a /dev/ device only", true},
		{"raw onto the plan's disk", wire.SetupFile{InputName: "disk.img", Output: "/dev/vda"}, "which the plan compute.ks partitioned", true},
		{"raw onto a plan filesystem", wire.SetupFile{InputName: "clobber.img", Output: "/x"}, "holds the plan's / filesystem", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.plan = testPlan(t, images...)
			f := tc.f
			err := a.prepareImage(&f)
			want := strings.Replace(tc.want, "T", a.plan.target, 1)
			switch {
			case tc.err && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one saying %q", err, tc.want)
			case !tc.err && err != nil:
				t.Errorf("error %v", err)
			case !tc.err && f.Output != want:
				t.Errorf("output %s, want %s", f.Output, want)
			}
		})
	}
}

func TestClears(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    kickstart.Plan
		dev  string
		want bool
	}{
		{"nothing", kickstart.Plan{}, "/dev/sda", false},
		{"zerombr", kickstart.Plan{ZeroMBR: true}, "/dev/sda", true},
		{"all", kickstart.Plan{ClearPart: &kickstart.ClearPart{All: true}}, "/dev/sda", true},
		{"drives", kickstart.Plan{ClearPart: &kickstart.ClearPart{All: true, Drives: []string{"sdb"}}}, "/dev/sdb", true},
		{"other drive", kickstart.Plan{ClearPart: &kickstart.ClearPart{All: true, Drives: []string{"sdb"}}}, "/dev/sda", false},
	} {
		if got := clears(&tc.p, tc.dev); got != tc.want {
			t.Errorf("%s: clears %s = %v", tc.name, tc.dev, got)
		}
	}
}

// As a plain process, the agent writes only to disks the plan names.
func TestPlanDisksNamed(t *testing.T) {
	a := &agent{}
	_, _, err := a.planDisks(&kickstart.Plan{Parts: []kickstart.Part{{Mount: "/", Line: 3}}})
	if err == nil || !strings.Contains(err.Error(), "plan line 3: part / names no disk") {
		t.Errorf("unnamed disk as a process: %v", err)
	}
	disks, parts, err := a.planDisks(&kickstart.Plan{OnlyUse: []string{"loop7"}, Parts: []kickstart.Part{{Mount: "/"}, {Mount: "/data", OnDisk: "loop8"}}})
	if err == nil || !strings.Contains(err.Error(), "not among ignoredisk --only-use=loop7") {
		t.Errorf("--ondisk outside --only-use: %v %v %v", disks, parts, err)
	}
	disks, parts, err = a.planDisks(&kickstart.Plan{OnlyUse: []string{"loop7", "/dev/loop8"}, Parts: []kickstart.Part{{Mount: "/"}, {Mount: "/data", OnDisk: "loop8"}, {Mount: "swap"}}})
	if err != nil || len(disks) != 2 || disks[0] != "/dev/loop7" || len(parts["/dev/loop7"]) != 2 || len(parts["/dev/loop8"]) != 1 {
		t.Errorf("two disks: %v %v %v", disks, parts, err)
	}
}

// runScript: output line by line on the console and in the tail, the
// node's identity in the environment, a non-zero exit an error quoting
// the last lines.
func TestRunScript(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	var con bytes.Buffer
	a := &agent{con: &console{w: &con, now: time.Now}}
	a.id = Identity{Hostname: "c7", Name: "c7", MAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, Addr: netip.MustParsePrefix("10.0.0.7/24")}
	out, err := a.runScript(context.Background(), "%post (line 4)", kickstart.Script{Body: "echo \"$HOSTNAME $IPADDR $MAC in $HERD_TARGET\"\necho two >&2\n"}, "", "/mnt/sysimage")
	if err != nil {
		t.Fatal(err)
	}
	if out != "c7 10.0.0.7 52:54:00:01:02:03 in /mnt/sysimage\ntwo\n" {
		t.Errorf("output %q", out)
	}
	if !strings.Contains(con.String(), "  %post (line 4): c7 10.0.0.7 52:54:00:01:02:03 in /mnt/sysimage\n  %post (line 4): two\n") {
		t.Errorf("console:\n%s", con.String())
	}
	_, err = a.runScript(context.Background(), "%post (line 9)", kickstart.Script{Body: "for i in 1 2 3 4 5 6 7; do echo line $i; done\nexit 3\n"}, "", "")
	if err == nil || !strings.Contains(err.Error(), "%post (line 9) exited with status 3") || !strings.Contains(err.Error(), "line 3\nline 4\nline 5\nline 6\nline 7") || strings.Contains(err.Error(), "line 2") {
		t.Errorf("failing script: %v", err)
	}
	_, err = a.runScript(context.Background(), "%pre (line 1)", kickstart.Script{Interpreter: "/no/such/python", Body: "print(1)\n"}, "", "")
	if err == nil || !strings.Contains(err.Error(), "interpreter /no/such/python not found in the installer") {
		t.Errorf("missing interpreter: %v", err)
	}
}

// A ka-deploy description is carried out as ka-deploy did: the first
// linux partition is the ext4 root, the disk is repartitioned.
func TestKaRoot(t *testing.T) {
	p, err := kickstart.ParseKa("node.desc", strings.NewReader("linux 3500 extended fill logical swap 500 logical linux fill\n"))
	if err != nil {
		t.Fatal(err)
	}
	if note := kaRoot(p); !strings.Contains(note, "partition 1 (line 1) becomes the ext4 root") {
		t.Errorf("note %q", note)
	}
	if !p.ZeroMBR || p.Parts[0].Mount != "/" || p.Parts[0].FSType != "ext4" || p.Parts[1].Kind != kickstart.Extended || p.Parts[1].FSType != "" || p.Parts[3].Mount != "" || p.Parts[3].FSType != "" {
		t.Errorf("plan after kaRoot: %+v", p.Parts)
	}
}

func TestCheckUEFIPlan(t *testing.T) {
	for _, tt := range []struct {
		name, plan string
		uefi, ok   bool
	}{
		{"UEFI with ESP", "clearpart --all --disklabel=gpt\npart /boot/efi --fstype=efi --size=100\npart / --fstype=ext4 --size=500 --grow\nbootloader\n", true, true},
		{"UEFI without ESP", "clearpart --all\npart / --fstype=ext4 --size=500 --grow\nbootloader\n", true, false},
		{"UEFI without ESP, no bootloader line: herd still installs one", "clearpart --all\npart / --size=500\n", true, false},
		{"UEFI without ESP, bootloader none", "clearpart --all\npart / --size=500\nbootloader --location=none\n", true, true},
		{"UEFI, no partitions (image only)", "image root.tar.zst --to /dev/vda\n", true, true},
		{"BIOS without ESP", "clearpart --all\npart / --size=500\nbootloader\n", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kickstart.Parse("t.ks", strings.NewReader(tt.plan))
			if err != nil {
				t.Fatal(err)
			}
			err = checkUEFIPlan("t.ks", p, tt.uefi)
			if (err == nil) != tt.ok {
				t.Fatalf("checkUEFIPlan = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "part /boot/efi --fstype=efi") {
				t.Errorf("error %q does not say what to add", err)
			}
		})
	}
}
