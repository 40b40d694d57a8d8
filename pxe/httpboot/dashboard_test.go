package httpboot

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// dashFixture is a handler for nodes d1..dN, three to a rack (r1, r2...),
// on clock clk.
func dashFixture(t *testing.T, n int) (*fixture, *clock) {
	t.Helper()
	inv := &inventory.Inventory{File: "inv", Subnet: netip.MustParsePrefix("10.0.0.0/16")}
	for i := 1; i <= n; i++ {
		inv.Nodes = append(inv.Nodes, inventory.Node{
			MAC: mustMAC(fmt.Sprintf("52:54:00:00:01:%02x", i)), Name: fmt.Sprintf("d%d", i),
			IP: netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), Rack: fmt.Sprintf("r%d", (i+2)/3), Line: i,
		})
	}
	clk := &clock{t: testNow}
	f := &fixture{store: newMemStore(inv), root: t.TempDir()}
	h, err := New(Config{Root: f.root, Inventory: inv, Store: f.store, BaseURL: "http://10.0.0.1:8080", Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	f.h = h
	return f, clk
}

func (f *fixture) dashboard(t *testing.T) dashSnapshot {
	t.Helper()
	w := f.do(t, "GET", "/api/dashboard", "")
	var d dashSnapshot
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || w.Code != 200 {
		t.Fatalf("%d %v\n%s", w.Code, err, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return d
}

func mac(i int) string { return fmt.Sprintf("52:54:00:00:01:%02x", i) }

// TestDashboardFeed: agents register and report through the API; the
// snapshot counts them, lists the failed node first with its reason,
// flags the slow one, computes ETAs and the aggregate rate, and keeps a
// history sampled at most once a second.
func TestDashboardFeed(t *testing.T) {
	f, clk := dashFixture(t, 5)
	for i, rate := range map[int]float64{1: 100, 2: 100, 3: 100, 4: 20} {
		postJSON(t, f, "/api/register", contract.RegisterRequest{MAC: mac(i)})
		if w := postJSON(t, f, "/api/report", contract.ReportRequest{MAC: mac(i), State: contract.StateInstalling, Bytes: 500, Total: 1000, Rate: rate}); w.Code != 200 {
			t.Fatalf("report: %d %s", w.Code, w.Body)
		}
	}
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: mac(5), State: contract.StateFailed, Reason: "<script>alert(1)</script>"})
	clk.add(30 * time.Second)

	d := f.dashboard(t)
	wantCounts := []stateCount{{"unknown", 0}, {"booting", 0}, {"registered", 0}, {"installing", 4}, {"done", 0}, {"failed", 1}}
	if diff := cmp.Diff(wantCounts, d.Counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r1", "r2"}, d.Racks); diff != "" {
		t.Errorf("racks (-want +got):\n%s", diff)
	}
	if d.Rate != 320 || d.Bytes != 2000 || d.Total != 4000 || d.ETA != 25 {
		t.Errorf("aggregate: rate %v bytes %d total %d eta %v, want 320 2000 4000 25", d.Rate, d.Bytes, d.Total, d.ETA)
	}
	var names []string
	for _, n := range d.Nodes {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff([]string{"d5", "d4", "d1", "d2", "d3"}, names); diff != "" {
		t.Errorf("order, failed first, then the straggler (-want +got):\n%s", diff)
	}
	want1 := dashRow{Name: "d1", MAC: mac(1), IP: "10.0.1.1", Rack: "r1", State: contract.StateInstalling, Step: contract.StepReceiving,
		StepSecs: 30, Bytes: 500, Total: 1000, Rate: 100, ETA: 5, Message: "agent registered"}
	if diff := cmp.Diff(want1, d.Nodes[2]); diff != "" {
		t.Errorf("d1 (-want +got):\n%s", diff)
	}
	if n := d.Nodes[1]; n.Straggler != stragglerSlow || n.ETA != 25 {
		t.Errorf("d4: straggler %q eta %v, want slow, 25", n.Straggler, n.ETA)
	}
	if n := d.Nodes[0]; n.Reason != "<script>alert(1)</script>" || n.ETA != -1 || n.StepSecs != 30 {
		t.Errorf("d5: %+v", n)
	}
	if len(d.History) != 1 || d.History[0].Rate != 320 || d.History[0].T != clk.now().Unix() {
		t.Errorf("history %+v", d.History)
	}

	// Within snapshotMaxAge the snapshot is shared; then a new one, and
	// a new sample once historyEvery passed.
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: mac(4), State: contract.StateInstalling, Bytes: 600, Rate: 120})
	clk.add(100 * time.Millisecond)
	if d := f.dashboard(t); d.Rate != 320 {
		t.Errorf("within %v: rate %v, want the shared snapshot's 320", snapshotMaxAge, d.Rate)
	}
	clk.add(time.Second)
	d = f.dashboard(t)
	if d.Rate != 420 || len(d.History) != 2 || d.History[1].Rate != 420 || d.Nodes[4].Straggler != "" {
		t.Errorf("after a second: rate %v, history %+v, d4 straggler %q", d.Rate, d.History, d.Nodes[4].Straggler)
	}
}

func TestRateHistoryBounded(t *testing.T) {
	d := newDashboard()
	var h []rateSample
	for i := range historyLen + 7 {
		h = d.sample(testNow.Add(time.Duration(i)*time.Second), float64(i))
		d.sample(testNow.Add(time.Duration(i)*time.Second+time.Millisecond), -1) // too soon: dropped
	}
	if len(h) != historyLen || h[0].Rate != 7 || h[len(h)-1].Rate != historyLen+6 {
		t.Fatalf("%d samples from %v to %v, want %d from 7 to %d", len(h), h[0], h[len(h)-1], historyLen, historyLen+6)
	}
	for i := 1; i < len(h); i++ {
		if h[i].T != h[i-1].T+1 {
			t.Fatalf("not oldest first at %d: %v after %v", i, h[i], h[i-1])
		}
	}
}

// TestReportSteps: the steps the API sets and refuses.
func TestReportSteps(t *testing.T) {
	f, clk := dashFixture(t, 3)
	step := func(name string) contract.Step { return f.state(t, name).Step }

	// The agent asks for its plan before it registers: agent up.
	f.do(t, "GET", "/api/plan/"+mac(1), "")
	if s := step("d1"); s != contract.StepAgentUp {
		t.Errorf("after the plan: %q", s)
	}
	postJSON(t, f, "/api/register", contract.RegisterRequest{MAC: mac(1)})
	f.do(t, "GET", "/api/plan/"+mac(1), "")
	if s := step("d1"); s != contract.StepRegistered {
		t.Errorf("plan after registering: %q, want registered", s)
	}
	clk.add(time.Minute)
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: mac(1), State: contract.StateInstalling, Step: contract.StepVerifying, Total: 9})
	if st := f.state(t, "d1"); st.Step != contract.StepVerifying || st.Total != 9 || !st.StepSince.Equal(clk.now()) {
		t.Errorf("verifying report: %+v", st)
	}
	clk.add(time.Minute)
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: mac(1), State: contract.StateFailed, Reason: "disk gone"})
	if st := f.state(t, "d1"); st.Step != contract.StepVerifying || !st.StepSince.Equal(clk.now()) {
		t.Errorf("failed report: step %q since %v, want the step it failed in, since now", st.Step, st.StepSince)
	}
	for _, tc := range []struct{ body, err string }{
		{`{"mac":"` + mac(2) + `","state":"installing","step":"dancing"}`, `field "step": unknown step "dancing"`},
		{`{"mac":"` + mac(2) + `","state":"installing","total":-1}`, `field "total": negative`},
	} {
		w := f.do(t, "POST", "/api/report", tc.body)
		var e apiError
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 400 || e.Error != tc.err {
			t.Errorf("%s: %d %s, want 400 %s", tc.body, w.Code, w.Body, tc.err)
		}
	}

	// Done without a total: the total is what it wrote; then its firmware
	// gets the local-boot entry.
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: mac(2), State: contract.StateDone, Bytes: 77})
	if st := f.state(t, "d2"); st.Step != contract.StepRebooting || st.Total != 77 {
		t.Errorf("done: %+v", st)
	}
	f.do(t, "GET", "/boot/"+mac(2)+".ipxe", "")
	if s := step("d2"); s != contract.StepDiskBoot {
		t.Errorf("local boot entry: %q", s)
	}
	f.do(t, "GET", "/boot/"+mac(3)+".ipxe", "")
	if s := step("d3"); s != contract.StepLoading {
		t.Errorf("install boot entry: %q", s)
	}
}

// TestEvents: GET /api/events sends the snapshot at once as an event,
// ends when the client goes, and refuses streams beyond maxStreams.
func TestEvents(t *testing.T) {
	f, _ := dashFixture(t, 2)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%s %q", resp.Status, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var d dashSnapshot
			if err := json.Unmarshal([]byte(data), &d); err != nil || event != "dashboard" || len(d.Nodes) != 2 {
				t.Fatalf("event %q: %v: %s", event, err, data)
			}
			break
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	// The stream's slot is freed once its handler returned.
	deadline := time.Now().Add(5 * time.Second)
	for len(f.h.dash.streams) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the event stream did not end when its client went")
		}
		time.Sleep(10 * time.Millisecond)
	}

	for range maxStreams {
		f.h.dash.streams <- struct{}{}
	}
	if w := f.do(t, "GET", "/api/events", ""); w.Code != 503 || !strings.Contains(w.Body.String(), "poll /api/dashboard") {
		t.Errorf("beyond %d streams: %d %s", maxStreams, w.Code, w.Body)
	}
}

// TestDashboardPage: GET / is the page with its own script and style
// sheet, served by herd, and the table for browsers without JavaScript.
func TestDashboardPage(t *testing.T) {
	f, _ := dashFixture(t, 2)
	body := f.do(t, "GET", "/", "").Body.String()
	for _, want := range []string{`<script src="/ui/dashboard.js"></script>`, `href="/ui/dashboard.css"`, `<polyline id="rate-line"`, "<noscript>", "<td>d1</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("page refers to another site")
	}
	for file, want := range map[string]string{"/ui/dashboard.js": "text/javascript", "/ui/dashboard.css": "text/css"} {
		w := f.do(t, "GET", file, "")
		if ct := w.Header().Get("Content-Type"); w.Code != 200 || !strings.HasPrefix(ct, want) || w.Body.Len() < 1000 {
			t.Errorf("%s: %d %q, %d bytes", file, w.Code, ct, w.Body.Len())
		}
		if strings.Contains(w.Body.String(), "http://") || strings.Contains(w.Body.String(), "https://") {
			t.Errorf("%s refers to another site", file)
		}
	}
}
