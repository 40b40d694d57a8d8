//go:build nettest

package pxetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
)

// chromiumPath is Debian's chromium (package chromium).
const chromiumPath = "/usr/bin/chromium"

// Dashboard test population: 1,000 nodes in 10 racks of 100.
const (
	dashNodes      = 1000
	dashDone       = 600 // n0000..n0599
	dashInstalling = 300 // n0600..n0899
	dashRegistered = 50  // n0900..n0949
	dashBooting    = 30  // n0950..n0979
	dashUnknown    = 15  // n0980..n0994
	dashFailed     = 5   // n0995..n0999, through the API
)

var (
	dashSlow  = map[int]bool{610: true, 750: true, 880: true} // receiving at a tenth of the others' rate
	dashStuck = 920                                           // registered for 15 minutes, the others for seconds
)

const dashScriptReason = `<script>window.pwned=1</script><img src=x onerror="window.pwned=1">disk /dev/sda is missing`

func dashName(i int) string { return fmt.Sprintf("n%04d", i) }
func dashMAC(i int) string  { return fmt.Sprintf("52:54:00:19:%02x:%02x", i>>8, i&0xff) }
func dashRack(i int) string { return fmt.Sprintf("r%02d", i/100+1) }

// freePort returns a port of 127.0.0.1 nobody listens on now (network
// "tcp" or "udp").
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// artifactDir is where tests keep what a human looks at afterwards:
// $HERD_ARTIFACTS, else bin/artifacts of the repository.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HERD_ARTIFACTS")
	if dir == "" {
		abs, err := filepath.Abs(filepath.Join("..", "..", "bin", "artifacts"))
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// postAPI posts v as JSON to herd serve's API, as an agent does.
func postAPI(t *testing.T, url string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(url, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s %s: %s", url, b, resp.Status)
	}
}

// dashPopulate gives the nodes their states: most written through the
// node store, as herd serve's own updates are, the failed ones (and
// five installing ones) through the agents' HTTP API.
func dashPopulate(t *testing.T, inv *inventory.Inventory, stateDir, base string) {
	t.Helper()
	store, err := nodestate.Open(stateDir, inv)
	if err != nil {
		t.Fatal(err)
	}
	const gib = 1 << 30
	now := time.Now()
	for i := 0; i < dashNodes-dashUnknown-dashFailed; i++ {
		var st inventory.Status
		switch {
		case i < dashDone:
			st = inventory.Status{State: contract.StateDone, LocalBoot: true, Bytes: 4 * gib, Total: 4 * gib, Rate: 110 << 20,
				Step: contract.StepRebooting, StepSince: now.Add(-2 * time.Minute)}
			if i%2 == 0 {
				st.Step, st.StepSince = contract.StepBootedDisk, now.Add(-time.Minute)
			}
		case i < dashDone+dashInstalling:
			if i < dashDone+5 {
				continue // through the API, below
			}
			k := int64(i - dashDone)
			st = inventory.Status{State: contract.StateInstalling, Bytes: 4 * gib * k / dashInstalling, Total: 4 * gib,
				Rate: float64((100 + k%7) << 20), Step: contract.StepReceiving, StepSince: now.Add(-40*time.Second - time.Duration(k%10)*time.Second)}
			if dashSlow[i] {
				st.Rate = 10 << 20
			}
		case i < dashDone+dashInstalling+dashRegistered:
			st = inventory.Status{State: contract.StateRegistered, Step: contract.StepRegistered, StepSince: now.Add(-20*time.Second - time.Duration(i%10)*time.Second)}
			if i == dashStuck {
				st.StepSince = now.Add(-15 * time.Minute)
			}
		default:
			st = inventory.Status{State: contract.StateBooting, Step: contract.StepLoading, StepSince: now.Add(-10 * time.Second)}
		}
		st.LastReport = st.StepSince
		if err := store.Update(dashName(i), func(s *inventory.Status) error { *s = st; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := dashDone; i < dashDone+5; i++ {
		postAPI(t, base+contract.PathRegister, contract.RegisterRequest{MAC: dashMAC(i)})
		postAPI(t, base+contract.PathReport, contract.ReportRequest{MAC: dashMAC(i), State: contract.StateInstalling,
			Step: contract.StepReceiving, Bytes: 1 * gib, Total: 4 * gib, Rate: 100 << 20})
	}
	for i := dashNodes - dashFailed; i < dashNodes; i++ {
		reason := "ring: bypassed: no progress for 30s"
		if i == dashNodes-1 {
			reason = dashScriptReason
		}
		postAPI(t, base+contract.PathRegister, contract.RegisterRequest{MAC: dashMAC(i)})
		postAPI(t, base+contract.PathReport, contract.ReportRequest{MAC: dashMAC(i), State: contract.StateFailed, Reason: reason})
	}
}

// dashView is what the page shows, read in the browser.
type dashView struct {
	Counts     map[string]int `json:"counts"`
	Rows       int            `json:"rows"`
	First      []dashViewRow  `json:"first"`
	Stragglers []string       `json:"stragglers"`
	StragBG    string         `json:"stragBG"`
	PlainBG    string         `json:"plainBG"`
	Pwned      bool           `json:"pwned"`
	Injected   int            `json:"injected"`
	Points     int            `json:"points"`
	Racks      []string       `json:"racks"`
	Summary    string         `json:"summary"`
}

type dashViewRow struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Straggler string `json:"straggler"`
	Reason    string `json:"reason"`
}

const dashViewJS = `(() => {
  const rows = [...document.querySelectorAll('#rows tr')];
  const counts = {};
  document.querySelectorAll('#counts .count').forEach(c => counts[c.dataset.state] = +c.querySelector('.n').textContent);
  const strag = rows.filter(r => r.classList.contains('straggler'));
  const plain = rows.find(r => r.dataset.state === 'installing' && !r.classList.contains('straggler'));
  const bg = r => r ? getComputedStyle(r.querySelector('td')).backgroundColor : '';
  return {
    counts, rows: rows.length,
    first: rows.slice(0, 6).map(r => ({name: r.dataset.name || '', state: r.dataset.state || '', straggler: r.dataset.straggler || '', reason: r.querySelector('td.reason').textContent})),
    stragglers: strag.map(r => r.dataset.name + ':' + r.dataset.straggler),
    stragBG: bg(strag[0]), plainBG: bg(plain),
    pwned: window.pwned === 1,
    injected: document.querySelectorAll('#rows script, #rows img').length,
    points: document.getElementById('rate-line').getAttribute('points').trim().split(/\s+/).filter(Boolean).length,
    racks: [...document.querySelectorAll('#rack-filter option')].map(o => o.value).filter(Boolean),
    summary: document.getElementById('summary').textContent,
  };
})()`

// rowsJS is the rows shown: how many, and how many of them match a
// state and a rack ("" = any).
const rowsJS = `((state, rack) => {
  const rows = [...document.querySelectorAll('#rows tr[data-name]')];
  return {n: rows.length, match: rows.filter(r => (!state || r.dataset.state === state) && (!rack || r.dataset.rack === rack)).length};
})`

type shown struct {
	N     int `json:"n"`
	Match int `json:"match"`
}

// TestDashboard: herd serve with 1,000 nodes in 10 racks, their states
// written as herd serve and the agents write them; headless Chromium
// (Debian's, through chromedp) opens the dashboard, which shows the
// counts, the failed nodes first with their reasons (a <script> reason as
// text), the stragglers highlighted, the aggregate rate plot; the rack
// and state filters narrow the rows. A full-page screenshot is kept in
// $HERD_ARTIFACTS (default bin/artifacts): dashboard.png, with
// dashboard-top.png (its first screen) and dashboard-stragglers.png (the
// stragglers-only filter).
func TestDashboard(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s (Debian package chromium; make deps installs it): %v", chromiumPath, err)
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("subnet 127.0.0.0/8\n")
	for i := range dashNodes {
		fmt.Fprintf(&b, "node %s %s 127.1.%d.%d rack=%s\n", dashMAC(i), dashName(i), i/250, i%250+1, dashRack(i))
	}
	invPath := filepath.Join(dir, "inventory")
	if err := os.WriteFile(invPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseFile(invPath)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "golden.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	stateDir := filepath.Join(dir, "state")
	httpPort := freePort(t, "tcp")
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	// Loopback only: no DHCP, no RA; the nodes never all register, so
	// herd serve waits (longer than the test) and starts no session.
	srv := start(t, dir, herdBin, "serve", "--interface", "lo", "--server-ip", "127.0.0.1", "--boot-dir", filepath.Join(dir, "boot"),
		"--inventory", invPath, "--state-dir", stateDir, "--http-port", fmt.Sprint(httpPort), "--tftp-port", fmt.Sprint(freePort(t, "udp")),
		"--no-dhcp", "--no-ra", "--wait-timeout", "30m", "-I", img, "-O", filepath.Join(dir, "out.img"), "-q")
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", httpPort), 20*time.Second)
	start := time.Now()
	dashPopulate(t, inv, stateDir, base)
	t.Logf("%d nodes' states written in %v", dashNodes, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(1400, 900),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel() // closes the browser it started

	start = time.Now()
	err = chromedp.Do(bctx,
		chromedp.Navigate(base+"/"),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.body.dataset.rendered && document.querySelectorAll('#rows tr[data-name]').length === %d`, dashNodes),
			chromedp.WithPollingTimeout(30*time.Second)),
	)
	if err != nil {
		t.Fatalf("the dashboard did not show %d rows: %v\nherd serve:\n%s", dashNodes, err, srv.errb.String())
	}
	t.Logf("Chromium rendered %d nodes %v after navigating", dashNodes, time.Since(start).Round(time.Millisecond))
	// The plot needs two samples of the rate: two events, a second apart.
	if err := chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`document.getElementById('rate-line').getAttribute('points').trim().split(/\s+/).length >= 2`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("no rate plot: %v", err)
	}
	view, err := chromedp.Run(bctx, chromedp.Evaluate[dashView](dashViewJS))
	if err != nil {
		t.Fatal(err)
	}

	wantCounts := map[string]int{"unknown": dashUnknown, "booting": dashBooting, "registered": dashRegistered,
		"installing": dashInstalling, "done": dashDone, "failed": dashFailed}
	for s, n := range wantCounts {
		if view.Counts[s] != n {
			t.Errorf("count %s: %d, want %d (all: %v)", s, view.Counts[s], n, view.Counts)
		}
	}
	if want := fmt.Sprintf("%d of %d nodes done", dashDone, dashNodes); view.Summary != want {
		t.Errorf("summary %q, want %q", view.Summary, want)
	}
	for k, r := range view.First[:dashFailed] {
		if r.State != "failed" || r.Reason == "" {
			t.Errorf("row %d: %+v, want a failed node with its reason (failed first)", k, r)
		}
	}
	if r := view.First[dashFailed]; r.State == "failed" || r.Straggler == "" {
		t.Errorf("row %d: %+v, want a straggler (after the failed nodes)", dashFailed, r)
	}
	if r := view.First[dashFailed-1]; r.Name != dashName(dashNodes-1) || r.Reason != dashScriptReason {
		t.Errorf("the <script> reason: row %+v, want %s showing %q as text", r, dashName(dashNodes-1), dashScriptReason)
	}
	if view.Pwned || view.Injected != 0 {
		t.Errorf("a reason ran as HTML: window.pwned %v, %d script/img elements in the rows", view.Pwned, view.Injected)
	}
	wantStrag := map[string]bool{dashName(dashStuck) + ":stuck": true}
	for i := range dashSlow {
		wantStrag[dashName(i)+":slow"] = true
	}
	got := map[string]bool{}
	for _, s := range view.Stragglers {
		got[s] = true
	}
	for s := range wantStrag {
		if !got[s] {
			t.Errorf("straggler %s not highlighted (highlighted: %v)", s, view.Stragglers)
		}
	}
	if len(got) != len(wantStrag) {
		t.Errorf("stragglers %v, want %d", view.Stragglers, len(wantStrag))
	}
	if view.StragBG == "" || view.StragBG == view.PlainBG {
		t.Errorf("a straggler's background %q is not set off from a plain row's %q", view.StragBG, view.PlainBG)
	}
	if view.Points < 2 {
		t.Errorf("rate plot has %d points", view.Points)
	}
	if len(view.Racks) != 10 || view.Racks[0] != "r01" || view.Racks[9] != "r10" {
		t.Errorf("rack filter offers %v, want r01..r10", view.Racks)
	}

	// Full page, every node (before the filters narrow it).
	dst := artifactDir(t)
	full, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	top, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	for name, png := range map[string][]byte{"dashboard.png": full, "dashboard-top.png": top} {
		p := filepath.Join(dst, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d KiB)", p, len(png)>>10)
	}

	// The filters: a rack, then a state within it (a click on its count),
	// then the state alone.
	rows := func(state, rack string) shown {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Evaluate[shown](fmt.Sprintf("%s(%q, %q)", rowsJS, state, rack)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	choose := func(id, value string) {
		t.Helper()
		err := chromedp.Do(bctx, chromedp.SetValue(chromedp.ID(id), value),
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).dispatchEvent(new Event('change'))`, id)))
		if err != nil {
			t.Fatal(err)
		}
	}
	choose("rack-filter", "r10")
	if s := rows("", "r10"); s.N != 100 || s.Match != 100 {
		t.Errorf("rack r10: %d rows, %d of them in r10; want 100", s.N, s.Match)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#counts .count[data-state="registered"]`))); err != nil {
		t.Fatal(err)
	}
	// r10 is n0900..n0999: 50 registered.
	if s := rows("registered", "r10"); s.N != dashRegistered || s.Match != dashRegistered {
		t.Errorf("registered in r10: %d rows, %d matching; want %d", s.N, s.Match, dashRegistered)
	}
	choose("rack-filter", "")
	choose("state-filter", "failed")
	if s := rows("failed", ""); s.N != dashFailed || s.Match != dashFailed {
		t.Errorf("failed: %d rows, %d matching; want %d", s.N, s.Match, dashFailed)
	}

	// Stragglers only, every state: the four, highlighted (a screenshot).
	choose("state-filter", "")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.ID("straggler-filter"))); err != nil {
		t.Fatal(err)
	}
	if s := rows("", ""); s.N != len(wantStrag) {
		t.Errorf("stragglers only: %d rows, want %d", s.N, len(wantStrag))
	}
	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dst, "dashboard-stragglers.png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KiB)", p, len(png)>>10)

	// The feed is one request a second, not one per node.
	d := httpGet(t, base+"/api/dashboard")
	var snap struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(d), &snap); err != nil || len(snap.Nodes) != dashNodes {
		t.Errorf("/api/dashboard: %d nodes, %v", len(snap.Nodes), err)
	}
	t.Logf("/api/dashboard: %d KiB for %d nodes", len(d)>>10, dashNodes)

	bcancel()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.wait(t, 15*time.Second)
}
