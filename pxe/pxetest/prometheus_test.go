//go:build nettest

package pxetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrometheus: Debian's Prometheus scrapes herd serve's /metrics
// during and after a ring session to two nodes, and its query API gives
// back what happened: the nodes per state, the session and its bytes,
// two install durations. promtool check metrics finds nothing to say.
func TestPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus (Debian package prometheus) is not installed: make deps installs it")
	}
	ns := newNetns(t, "prm", "10.251.6.1", "", "10.251.6.11", "10.251.6.12")
	dir := t.TempDir()
	img := filepath.Join(dir, "golden.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.251.6.0/24\nnode 52:54:00:25:16:11 p1 10.251.6.11\nnode 52:54:00:25:16:12 p2 10.251.6.12\n"), 0o644)
	srv := start(t, dir, herdBin, "serve", "--interface", ns.hostIf, "--boot-dir", filepath.Join(dir, "boot"),
		"--inventory", inv, "--state-dir", filepath.Join(dir, "state"),
		"--http-port", "18087", "--tftp-port", "16977", "--no-dhcp", "--no-ra", "--wait-timeout", "60s",
		"-I", img, "-O", "disk.img", "-q")
	waitTCP(t, "10.251.6.1:18087", 10*time.Second)

	// Prometheus on loopback, scraping herd every second.
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := pl.Addr().String()
	pl.Close()
	conf := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(conf, []byte("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: herd\n    static_configs:\n      - targets: ['10.251.6.1:18087']\n"), 0o644)
	pp := start(t, dir, prom, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	waitTCP(t, promAddr, 20*time.Second)

	nodes := recvNodes(t, ns, dir, "10.251.6.11", "10.251.6.12")
	register(t, "http://10.251.6.1:18087", "52:54:00:25:16:11", "52:54:00:25:16:12")
	waitNodes(t, nodes)
	waitState(t, "http://10.251.6.1:18087", "p2", "done", 10*time.Second)

	for query, want := range map[string]float64{
		`herd_nodes{state="done"}`:                                 2,
		`herd_sessions_total{kind="install",result="ok"}`:          1,
		`herd_bytes_total`:                                         2 * 4 << 20,
		`herd_install_duration_seconds_count`:                      2,
		`sum(herd_step_duration_seconds_count{step="registered"})`: 2,
	} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := promQuery(promAddr, query)
			if err == nil && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("Prometheus: %s = %v (%v), want %v\nprometheus:\n%s", query, got, err, want, pp.errb.String())
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// promtool's lint of what herd serves.
	resp, err := http.Get("http://10.251.6.1:18087/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = strings.NewReader(string(body))
	if out, err := lint.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.wait(t, 15*time.Second)
}

// promQuery asks Prometheus's HTTP API for one instant value.
func promQuery(addr, query string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" || len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("status %s, %d results", r.Status, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
