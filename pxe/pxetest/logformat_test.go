//go:build nettest

package pxetest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogFormatJSON: herd pxe --log-format json -v writes one JSON object
// per line on standard error, each with time, level and msg, the command's
// own with prog and its fields, the services' per-request lines at DEBUG
// (a TFTP transfer), and nothing else.
func TestLogFormatJSON(t *testing.T) {
	ns := newNetns(t, "log", "10.251.5.1", "", "10.251.5.21")
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.251.5.0/24\nnode 52:54:00:25:15:21 l1 10.251.5.21\n"), 0o644)
	srv := start(t, dir, herdBin, "pxe", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", filepath.Join(dir, "state"),
		"--boot-dir", filepath.Join(dir, "boot"), "--http-port", "18085", "--tftp-port", "16974", "--no-dhcp", "--no-ra",
		"--log-format", "json", "-v")
	waitTCP(t, "10.251.5.1:18085", 10*time.Second)
	if _, err := ns.Command("curl", "-s", "--max-time", "20", "-o", "/dev/null", "tftp://10.251.5.1:16974/undionly.kpxe").Output(); err != nil {
		t.Fatalf("tftp: %v", err)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("herd pxe exit %d:\n%s", code, srv.errb.String())
	}
	var serving, transfer bool
	sc := bufio.NewScanner(strings.NewReader(srv.errb.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("not a JSON line: %q: %v", sc.Text(), err)
			continue
		}
		msg, _ := rec["msg"].(string)
		if _, ok := rec["time"].(string); !ok || rec["level"] == nil || msg == "" {
			t.Errorf("record without time, level or msg: %q", sc.Text())
		}
		switch {
		case rec["prog"] == "herd pxe" && strings.HasPrefix(msg, "serving 1 node(s) on "):
			serving = rec["level"] == "INFO" && rec["nodes"] == float64(1) && rec["interface"] == ns.hostIf
		case strings.HasPrefix(msg, "tftp: ") && strings.Contains(msg, "undionly.kpxe: ") && strings.Contains(msg, " bytes in "):
			transfer = rec["level"] == "DEBUG"
		}
	}
	if !serving || !transfer {
		t.Errorf("want herd pxe's INFO record (prog, nodes, interface) and a DEBUG TFTP transfer; got %v, %v:\n%s", serving, transfer, srv.errb.String())
	}
}
