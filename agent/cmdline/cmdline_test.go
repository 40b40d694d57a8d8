package cmdline

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// defaults returns s with Parse's defaults where s leaves them zero.
func defaults(s Settings) Settings {
	if s.Retries == 0 {
		s.Retries = DefaultRetries
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Method == "" {
		s.Method = MethodHerd
	}
	if s.Network == "" {
		s.Network = NetworkDHCP
	}
	return s
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    Settings
	}{
		{name: "empty", cmdline: "", want: defaults(Settings{})},
		{
			name:    "proc cmdline with unrelated words",
			cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/ram0 quiet console=ttyS0,115200n8\n",
			want:    defaults(Settings{Consoles: []string{"ttyS0"}}),
		},
		{
			// The kernel's consoles in order, options dropped; an empty
			// console= names none; after "--" the words are init's.
			name:    "consoles",
			cmdline: "console=tty0 console=ttyS1,115200n8 console= console=hvc0 -- console=ttyS2",
			want:    defaults(Settings{Consoles: []string{"tty0", "ttyS1", "hvc0"}}),
		},
		{
			// What pxe/httpboot writes on the kernel line.
			name:    "herd boot script",
			cmdline: "initrd=herd.cpio.zst herd.url=http://10.0.0.1:8080 herd.mac=52:54:00:00:00:01 herd.name=node1 BOOTIF=01-52-54-00-00-00-01 console=ttyS0\n",
			want: defaults(Settings{
				URL:      "http://10.0.0.1:8080",
				MAC:      mac("52:54:00:00:00:01"),
				Name:     "node1",
				BootIF:   mac("52:54:00:00:00:01"),
				Consoles: []string{"ttyS0"},
			}),
		},
		{
			name:    "every herd parameter",
			cmdline: "herd.server=10.0.0.1 herd.if=eth1 herd.retries=5 herd.timeout=30 herd.key=s3cret herd.kexec herd.debug",
			want: defaults(Settings{
				Server: "http://10.0.0.1:8080", Interface: "eth1", Retries: 5,
				Timeout: 30 * time.Second, Key: "s3cret", Kexec: true, Debug: true,
			}),
		},
		{
			name:    "allow-list",
			cmdline: "herd.allow=/dev/vd*,/dev/ram*",
			want:    defaults(Settings{Allow: []string{"/dev/vd*", "/dev/ram*"}}),
		},
		{
			name:    "allow-list: one pattern with a class, empty items skipped",
			cmdline: "herd.allow=,/dev/sd[a-c],",
			want:    defaults(Settings{Allow: []string{"/dev/sd[a-c]"}}),
		},
		{
			name:    "allow-list: the last repeat wins",
			cmdline: "herd.allow=/dev/sda herd.allow=/srv/images/*",
			want:    defaults(Settings{Allow: []string{"/srv/images/*"}}),
		},
		{
			name:    "server host:port",
			cmdline: "herd.server=mgmt.cluster:9000",
			want:    defaults(Settings{Server: "http://mgmt.cluster:9000"}),
		},
		{
			name:    "server URL kept as written",
			cmdline: "herd.server=https://mgmt.example/herd/",
			want:    defaults(Settings{Server: "https://mgmt.example/herd"}),
		},
		{
			name:    "server URL with an upper-case scheme (found by FuzzParse)",
			cmdline: "herd.server=HTTPS://Mgmt.example:8443/Herd",
			want:    defaults(Settings{Server: "https://Mgmt.example:8443/Herd"}),
		},
		{
			name:    "server bare IPv6",
			cmdline: "herd.server=fd00::1",
			want:    defaults(Settings{Server: "http://[fd00::1]:8080"}),
		},
		{
			name:    "server bracketed IPv6 with port",
			cmdline: "herd.server=[fd00::1]:81",
			want:    defaults(Settings{Server: "http://[fd00::1]:81"}),
		},
		{
			name:    "timeout as a duration",
			cmdline: "herd.timeout=2m30s",
			want:    defaults(Settings{Timeout: 150 * time.Second}),
		},
		{
			name:    "flags with values",
			cmdline: "herd.kexec=0 herd.debug=yes",
			want:    defaults(Settings{Debug: true}),
		},
		{
			name:    "last repeat wins",
			cmdline: "herd.retries=2 herd.retries=7 herd.debug herd.debug=off",
			want:    defaults(Settings{Retries: 7}),
		},
		{
			name:    "quoted value",
			cmdline: `herd.name="node 1" herd.key=a"b c"d`,
			want:    defaults(Settings{Name: "node 1", Key: `a"b c"d`}),
		},
		{
			name:    "quoted word",
			cmdline: `"herd.name=node 2" quiet`,
			want:    defaults(Settings{Name: "node 2"}),
		},
		{
			name:    "unknown herd keys",
			cmdline: "herd.foo=1 herd.bar herd.server=h",
			want:    defaults(Settings{Server: "http://h:8080", Unknown: []string{"herd.foo=1", "herd.bar"}}),
		},
		{
			name:    "after -- for init",
			cmdline: "ro -- herd.name=n3",
			want:    defaults(Settings{Name: "n3"}),
		},
		{
			name:    "BOOTIF upper case",
			cmdline: "BOOTIF=01-AA-BB-CC-DD-EE-0F",
			want:    defaults(Settings{BootIF: mac("aa:bb:cc:dd:ee:0f")}),
		},
		{
			name:    "BOOTIF InfiniBand",
			cmdline: "BOOTIF=20-80-00-02-08-fe-80-00-00-00-00-00-00-00-02-c9-03-00-0a-0b-0c",
			want:    defaults(Settings{BootIF: mac("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:0b:0c")}),
		},
		// The Mandriva guide's dolly entry, as its pxelinux APPEND line
		// puts it.
		{
			name:    "mandriva dolly",
			cmdline: `initrd=images/all.rdz ramdisk_size=64000 vga=788 automatic=method:dolly,dolly_timeout:100,interface:eth0,network:dhcp rescue dollymethod`,
			want: defaults(Settings{
				Method: MethodDolly, Timeout: 100 * time.Second, Interface: "eth0", Network: NetworkDHCP,
			}),
		},
		{
			name:    "mandriva dolly for dolly+ without timeout",
			cmdline: `initrd=images/all.rdz ramdisk_size=64000 vga=788 automatic=method:dolly,interface:eth0,network:dhcp root=/dev/ram3 rw rescue dollyCmethod`,
			want:    defaults(Settings{Method: MethodDolly, Interface: "eth0"}),
		},
		{
			name:    "mandriva interface auto, server and unknown keys",
			cmdline: "automatic=method:dolly,interface:auto,network:dhcp,server:10.0.1.253,directory:/cs4",
			want: defaults(Settings{
				Method: MethodDolly, Server: "http://10.0.1.253:8080", Unknown: []string{"automatic=directory:/cs4"},
			}),
		},
		{
			name:    "herd wins over automatic, either order",
			cmdline: "herd.if=eth2 automatic=method:dolly,dolly_timeout:100,interface:eth0,network:dhcp herd.timeout=7 herd.server=a automatic=server:b",
			want: defaults(Settings{
				Method: MethodDolly, Interface: "eth2", Timeout: 7 * time.Second, Server: "http://a:8080",
			}),
		},
		{
			name:    "method herd",
			cmdline: "automatic=method:herd",
			want:    defaults(Settings{Method: MethodHerd}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.cmdline)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.cmdline, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.cmdline, diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		cmdline string
		names   string // the argument the error must name
	}{
		{"herd.retries=x", "herd.retries"},
		{"herd.retries=0", "herd.retries"},
		{"herd.retries=-1", "herd.retries"},
		{"herd.retries", "herd.retries"},
		{"herd.timeout=0", "herd.timeout"},
		{"herd.timeout=-5s", "herd.timeout"},
		{"herd.timeout=soon", "herd.timeout"},
		{"herd.timeout=99999999999999999", "herd.timeout"},
		{"BOOTIF=01-aa-bb-cc-dd-ee", "BOOTIF"},
		{"BOOTIF=01-aa-bb-cc-dd-ee-ff-00", "BOOTIF"},
		{"BOOTIF=01:aa:bb:cc:dd:ee:ff", "BOOTIF"},
		{"BOOTIF=01-aa-bb-cc-dd-ee-fg", "BOOTIF"},
		{"BOOTIF=", "BOOTIF"},
		{"BOOTIF=aa-bb-cc-dd-ee-0f", "BOOTIF"},
		{"BOOTIF=01", "BOOTIF"},
		{"herd.mac=nope", "herd.mac"},
		{"herd.server=", "herd.server"},
		{"herd.server=ftp://x", "herd.server"},
		{"herd.server=h:0", "herd.server"},
		{"herd.server=h:99999", "herd.server"},
		{"herd.server=a/b", "herd.server"},
		{"herd.url=10.0.0.1:8080", "herd.url"},
		{"herd.if=a/b", "herd.if"},
		{"herd.if=averyveryverylongname", "herd.if"},
		{"herd.kexec=maybe", "herd.kexec"},
		{"herd.debug=", "herd.debug"},
		{"herd.name", "herd.name"},
		{"herd.allow", "herd.allow"},
		{"herd.allow=", "herd.allow"},
		{"herd.allow=,", "herd.allow"},
		{"herd.allow=dev/vd*", "herd.allow"},
		{"herd.allow=/dev/vd*,ram*", "herd.allow"},
		{"herd.allow=/dev/sd[a-", "herd.allow"},
		{`herd.allow=/dev/vd\`, "herd.allow"},
		{"automatic=method:ka,interface:eth0,network:dhcp", "automatic=method:ka"},
		{"automatic=method:nfs,interface:eth0,network:dhcp,server:10.0.1.253,directory:/cs4", "automatic=method:nfs"},
		{"automatic=method:dolly,network:static,ip:10.0.0.5", "automatic=network:static"},
		{"automatic=method:dolly,dolly_timeout:0", "automatic=dolly_timeout"},
		{"automatic=method:dolly,dolly_timeout:x", "automatic=dolly_timeout"},
		{"automatic=method:dolly,interface:a/b", "automatic=interface"},
		{"automatic=method", "automatic"},
		{"automatic=", "automatic"},
		// A bad automatic= value is an error even when herd.* overrides
		// the setting: the line is wrong either way.
		{"herd.timeout=5 automatic=dolly_timeout:-1", "automatic=dolly_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			_, err := Parse(tt.cmdline)
			if err == nil {
				t.Fatalf("Parse(%q): no error", tt.cmdline)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse(%q): %v does not wrap ErrSyntax", tt.cmdline, err)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("Parse(%q): %q does not name %q", tt.cmdline, err, tt.names)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\tc\n", []string{"a", "b", "c"}},
		{`a="b c" d`, []string{"a=b c", "d"}},
		{`"a b" c`, []string{"a b", "c"}},
		{`"a=b c"`, []string{"a=b c"}},
		{`a=b"c d"e f`, []string{`a=b"c d"e`, "f"}},
		{`a="`, []string{"a="}},
		{`a="b`, []string{"a=b"}},
		{`"`, []string{""}},
		{`=x`, []string{"=x"}},
		{`a="b" "c"`, []string{"a=b", "c"}},
	}
	for _, tt := range tests {
		if got := Split(tt.in); !cmp.Equal(got, tt.want) {
			t.Errorf("Split(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(p, []byte("herd.name=n9 herd.retries=4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ParseFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "n9" || got.Retries != 4 {
		t.Errorf("ParseFile = %+v", got)
	}
	if err := os.WriteFile(p, []byte("herd.retries=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("ParseFile(bad) = %v, want an error naming the file", err)
	}
	if _, err := ParseFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ParseFile(missing): no error")
	}
}

func TestStringHidesKey(t *testing.T) {
	s, err := Parse("herd.key=topsecret herd.name=n1")
	if err != nil {
		t.Fatal(err)
	}
	out := s.String()
	if strings.Contains(out, "topsecret") || !strings.Contains(out, "n1") {
		t.Errorf("String() = %s", out)
	}
	if s.Key != "topsecret" {
		t.Error("String changed the settings")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"herd.url=http://10.0.0.1:8080 herd.mac=52:54:00:00:00:01 herd.name=node1 BOOTIF=01-52-54-00-00-00-01",
		"automatic=method:dolly,dolly_timeout:100,interface:eth0,network:dhcp",
		`herd.name="a b" "herd.key=c d" herd.server=[::1]:1`,
		"herd.timeout=1h herd.retries=9 herd.kexec herd.debug=0 herd.x",
		"herd.allow=/dev/vd*,/dev/ram[0-9] herd.allow=,/srv/*,",
		"herd.server=https://h/p/ BOOTIF=20-00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff-00-11-22-33",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		s, err := Parse(line)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrSyntax", line, err)
			}
			return
		}
		if s.Retries < 1 || s.Timeout <= 0 {
			t.Fatalf("Parse(%q) = %+v: retries or timeout out of range", line, s)
		}
		if s.Method != MethodHerd && s.Method != MethodDolly || s.Network != NetworkDHCP {
			t.Fatalf("Parse(%q): method %q network %q", line, s.Method, s.Network)
		}
		if s.Server != "" && !strings.HasPrefix(s.Server, "http://") && !strings.HasPrefix(s.Server, "https://") {
			t.Fatalf("Parse(%q): server %q is not a URL", line, s.Server)
		}
		if s.BootIF != nil && len(s.BootIF) == 0 {
			t.Fatalf("Parse(%q): empty BOOTIF", line)
		}
		for _, p := range s.Allow {
			if _, err := filepath.Match(p, ""); err != nil || !filepath.IsAbs(p) {
				t.Fatalf("Parse(%q): allow pattern %q is not an absolute shell pattern", line, p)
			}
		}
		// Parsing is deterministic.
		again, err := Parse(line)
		if err != nil || !cmp.Equal(s, again) {
			t.Fatalf("Parse(%q) not deterministic", line)
		}
	})
}
