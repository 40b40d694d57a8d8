//go:build qemu

package debimage

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/internal/logging"
)

// Bounds under TCG on a 2-core machine that others share.
const (
	buildTimeout = 25 * time.Minute // a cold build (downloads included)
	bootTimeout  = 6 * time.Minute  // power-on to the report's end
)

// OVMF's firmware: code read-only, a private copy of the variables.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// bootReport runs as boot-report.service (Type=simple, so that boot-up
// can finish while it waits for it) and prints on the serial console
// what the booted system says about itself, then "herd-boot-report end".
const bootReport = `#!/bin/sh
state=$(systemctl is-system-running --wait 2>/dev/null)
say() { echo "herd-boot-report $*" >/dev/ttyS0; }
say state=$state failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | paste -sd, -)
say firmware=$(test -d /sys/firmware/efi && echo uefi || echo bios) grub=$(sed -n 's/.*herd\.grub=\([^ ]*\).*/\1/p' /proc/cmdline)
say root-source=$(findmnt -n -o SOURCE /) root-uuid=$(findmnt -n -o UUID /) root-fstype=$(findmnt -n -o FSTYPE /) cmdline-root=$(sed -n 's/.* root=\([^ ]*\).*/\1/p' /proc/cmdline)
say esp-fstype=$(findmnt -n -o FSTYPE /boot/efi) esp-uuid=$(findmnt -n -o UUID /boot/efi) kernel=$(uname -r) host=$(hostname) machine-id=$(cat /etc/machine-id)
say networkd=$(systemctl is-active systemd-networkd) sshd=$(systemctl is-active ssh)
say end
`

const bootReportUnit = `[Unit]
Description=herd debimage test: report the booted system on the serial console
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/herd-boot-report

[Install]
WantedBy=multi-user.target
`

// reportHook installs the report into the image ("$1"); the files are in
// the hook itself, so that the cache key follows them.
func reportHook() string {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return fmt.Sprintf(`echo %s | base64 -d > "$1/usr/local/sbin/herd-boot-report" && chmod 0755 "$1/usr/local/sbin/herd-boot-report" && `+
		`echo %s | base64 -d > "$1/etc/systemd/system/herd-boot-report.service" && chroot "$1" systemctl enable herd-boot-report.service`,
		enc(bootReport), enc(bootReportUnit))
}

// testImage builds the image with the report hook, or takes it from the
// cache ($HERD_IMAGE_CACHE, else the default: shared with later runs).
func testImage(t *testing.T) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	res, err := Build(ctx, Config{Hooks: []string{reportHook()},
		Log: logging.New(tWriter{t}, "", slog.LevelInfo, logging.Plain)}) // mmdebstrap's lines are debug
	if errors.Is(err, ErrNotRoot) {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	how := "built"
	if res.Cached {
		how = "cached"
	}
	t.Logf("image %s (%s, call took %v): size %d MiB, data %.1f MiB, sha256 %s, kernel %s, root %s",
		res.CachedImage, how, res.Took.Round(100*time.Millisecond), res.Size>>20, float64(res.DataSize)/(1<<20), res.SHA256, res.KernelVersion, res.RootUUID)
	for _, p := range res.Phases {
		t.Logf("  phase %-16s %v", p.Name, p.Duration.Round(100*time.Millisecond))
	}
	return res
}

// vm is a QEMU machine booting a private copy of the image.
type vm struct {
	t      *testing.T
	log    string
	start  time.Time
	exited chan error
}

// boot starts QEMU on a private copy of res's image from its own disk,
// without a network; uefi selects OVMF (with a private copy of its
// variables) over SeaBIOS. QEMU is killed by its PID on cleanup.
func boot(t *testing.T, res *Result, uefi bool) *vm {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64: apt-get install qemu-system-x86")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := CloneFile(res.CachedImage, img); err != nil {
		t.Fatal(err)
	}
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot",
		"-drive", "file=" + img + ",format=raw,if=virtio", "-nic", "none", "-monitor", "none"}
	if uefi {
		if _, err := os.Stat(ovmfCode); err != nil {
			t.Skip("no OVMF: apt-get install ovmf")
		}
		vars := filepath.Join(dir, "OVMF_VARS_4M.fd")
		if err := buildutil.CopyFile(ovmfVars, vars, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode, "-drive", "if=pflash,format=raw,file="+vars)
	}
	v := &vm{t: t, log: filepath.Join(dir, "serial.log"), exited: make(chan error, 1)}
	args = append(args, "-serial", "file:"+v.log)
	cmd := exec.Command(qemu, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	v.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	pid := cmd.Process.Pid
	go func() { v.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID; nothing when it exited
		select {
		case err := <-v.exited:
			v.exited <- err
		case <-time.After(30 * time.Second):
			t.Errorf("QEMU (pid %d) did not exit after SIGKILL", pid)
		}
		if t.Failed() {
			t.Logf("serial console (last 6000 bytes):\n%s\nQEMU:\n%s", tail(v.console(), 6000), out.String())
		}
	})
	return v
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (v *vm) console() string {
	b, _ := os.ReadFile(v.log)
	return string(b)
}

// waitFor waits until re matches the console, at most until deadline,
// and returns the submatches and the time since QEMU started.
func (v *vm) waitFor(re *regexp.Regexp, deadline time.Time) ([]string, time.Duration) {
	v.t.Helper()
	for {
		var gone bool
		var err error
		select {
		case err = <-v.exited:
			v.exited <- err
			gone = true
		default:
		}
		if m := re.FindStringSubmatch(v.console()); m != nil {
			return m, time.Since(v.start)
		}
		switch {
		case gone:
			v.t.Fatalf("QEMU exited (%v) before %q", err, re)
		case time.Now().After(deadline):
			v.t.Fatalf("no %q after %v", re, time.Since(v.start).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
}

var (
	reportLineRE = regexp.MustCompile(`herd-boot-report (.*)`)
	reportEndRE  = regexp.MustCompile(`herd-boot-report end`)
	loginRE      = regexp.MustCompile(`debian login:`)
)

// report collects the key=value pairs of the herd-boot-report lines.
func (v *vm) report() map[string]string {
	r := map[string]string{}
	for _, m := range reportLineRE.FindAllStringSubmatch(v.console(), -1) {
		for _, kv := range strings.Fields(m[1]) {
			if k, val, ok := strings.Cut(kv, "="); ok {
				r[k] = strings.TrimSpace(val)
			}
		}
	}
	return r
}

// TestQEMUBoot builds the image (or takes it from the cache) and boots
// private copies of it from its own disk, one machine at a time: with
// SeaBIOS (boot.img in the MBR, core.img in the BIOS boot partition) and
// with OVMF (\EFI\BOOT\BOOTX64.EFI on the ESP). Each must come through
// GRUB, mount the root by its UUID, reach the login prompt on ttyS0 and
// a running system state.
func TestQEMUBoot(t *testing.T) {
	res := testImage(t)
	for _, fw := range []struct {
		name, grub, firmware string
		uefi                 bool
	}{
		{"SeaBIOS", "pc", "bios", false},
		{"OVMF", "efi", "uefi", true},
	} {
		t.Run(fw.name, func(t *testing.T) {
			v := boot(t, res, fw.uefi)
			deadline := time.Now().Add(bootTimeout)
			_, grubAt := v.waitFor(regexp.MustCompile(`herd: GRUB on `+fw.grub+`, root hd0,gpt3`), deadline)
			_, kernelAt := v.waitFor(regexp.MustCompile(`Linux version `+regexp.QuoteMeta(res.KernelVersion)), deadline)
			_, loginAt := v.waitFor(loginRE, deadline)
			_, doneAt := v.waitFor(reportEndRE, deadline)
			r := v.report()
			t.Logf("%s: GRUB after %v, kernel %v, login prompt %v, report %v", fw.name,
				grubAt.Round(100*time.Millisecond), kernelAt.Round(100*time.Millisecond), loginAt.Round(100*time.Millisecond), doneAt.Round(100*time.Millisecond))
			t.Logf("%s: %v", fw.name, r)
			want := map[string]string{
				"firmware":     fw.firmware,
				"grub":         fw.grub,
				"root-uuid":    res.RootUUID,
				"root-fstype":  "ext4",
				"cmdline-root": "UUID=" + res.RootUUID,
				"esp-fstype":   "vfat",
				"esp-uuid":     res.ESPID,
				"kernel":       res.KernelVersion,
				"host":         Hostname,
				"machine-id":   res.MachineID,
				"networkd":     "active",
				"sshd":         "active",
				"state":        "running",
			}
			for k, w := range want {
				if r[k] != w {
					t.Errorf("%s=%q, want %q", k, r[k], w)
				}
			}
			if r["state"] != "running" {
				t.Errorf("failed units: %s", r["failed"])
			}
		})
	}
}

// tWriter writes each log line to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
