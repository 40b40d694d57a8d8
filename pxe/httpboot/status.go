package httpboot

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// uiFiles serves the dashboard's script and style sheet (GET /ui/...),
// built into the binary: the page needs nothing from the internet.
//
//go:embed ui
var uiFS embed.FS

var uiFiles = http.FileServerFS(uiFS)

// statusPage is the dashboard (ui/dashboard.js fills it from
// /api/events). Without JavaScript it is the table in <noscript>,
// refreshed every 2 s.
var statusPage = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="2"></noscript>
<title>herd: {{.Done}} of {{len .Nodes}} nodes done</title>
<link rel="stylesheet" href="/ui/dashboard.css">
</head>
<body>
<header><h1>herd</h1><span class="summary" id="summary">{{.Done}} of {{len .Nodes}} nodes done</span><span class="updated" id="updated">updated {{.Now}}</span></header>
<main>
<div class="panels">
<div class="panel" id="counts">{{range $i, $c := .Counts}}{{if $i}}, {{end}}{{$c.State}}: {{$c.N}}{{end}}</div>
<div class="panel" id="aggregate">
<div><span class="label">rate</span><span class="big" id="agg-rate">–</span></div>
<div><span class="label">received</span><span class="big" id="agg-bytes">–</span></div>
<div><span class="label">ETA (slowest)</span><span class="big" id="agg-eta">–</span></div>
<div><svg id="rate-plot" viewBox="0 0 320 64" preserveAspectRatio="none" role="img" aria-label="aggregate rate over time"><polygon class="area" id="rate-area" points=""/><polyline id="rate-line" points=""/></svg><span class="label" id="rate-peak"></span></div>
</div>
<div class="panel" id="filters">
<label>state<select id="state-filter"><option value="">all</option></select></label>
<label>rack<select id="rack-filter"><option value="">all</option></select></label>
<label><input type="checkbox" id="straggler-filter"> stragglers only</label>
</div>
</div>
<div id="shown"></div>
<table id="nodes">
<thead><tr><th>node</th><th>rack</th><th>state</th><th>step</th><th>in step</th><th>progress</th><th>rate</th><th>ETA</th><th>reason / message</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<noscript>
<p>Without JavaScript: the table below, refreshed every 2 s; the nodes as JSON at <a href="/api/nodes">/api/nodes</a>.</p>
<table>
<thead><tr><th>name</th><th>MAC</th><th>IP</th><th>state</th><th>next boot</th><th>bytes</th><th>rate</th><th>last seen</th><th>last report</th><th>reason / message</th></tr></thead>
<tbody>
{{range .Nodes}}<tr class="{{.State}}"><td>{{.Name}}</td><td>{{.MAC}}</td><td>{{.IP}}</td><td>{{.State}}</td><td>{{.Boot}}</td><td class="num">{{.Bytes}}</td><td class="num">{{.Rate}}</td><td>{{.Seen}}</td><td>{{.LastReport}}</td><td>{{.Reason}}</td></tr>
{{else}}<tr><td colspan="10">the inventory has no nodes</td></tr>
{{end}}</tbody>
</table>
</noscript>
</main>
<script src="/ui/dashboard.js"></script>
</body>
</html>
`))

type statusRow struct {
	Name, MAC, IP, State, Boot, Bytes, Rate, Seen, LastReport, Reason string
}

func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	list, err := h.cfg.Store.List()
	if err != nil {
		http.Error(w, "node state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	now := h.cfg.Now()
	data := struct {
		Nodes  []statusRow
		Counts []stateCount
		Done   int
		Now    string
	}{Now: now.Format("2006-01-02 15:04:05")}
	counts := inventory.CountStates(list)
	for _, s := range contract.States {
		if counts[s] > 0 {
			data.Counts = append(data.Counts, stateCount{s, counts[s]})
		}
	}
	data.Done = counts[contract.StateDone]
	for _, s := range list {
		row := statusRow{
			Name: s.Name, MAC: s.MAC, IP: s.IP, State: string(s.CurrentState()),
			Boot: "install", Bytes: humanBytes(s.Bytes), Rate: humanBytes(int64(s.Rate)) + "/s",
			LastReport: ago(now, s.LastReport), Reason: s.Reason, Seen: ago(now, s.Seen),
		}
		if s.SeenBy != "" {
			row.Seen += " (" + s.SeenBy + ")"
		}
		if s.LocalBoot {
			row.Boot = "local disk"
		}
		if row.Reason == "" {
			row.Reason = s.Message
		}
		data.Nodes = append(data.Nodes, row)
	}
	var b bytes.Buffer
	if err := statusPage.Execute(&b, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

// humanBytes is n in B, KiB, MiB, GiB or TiB.
func humanBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
		}
	}
	panic("unreachable")
}

// ago is how long before now t was, in whole seconds, minutes or hours.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.Format("15:04:05")
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Format("2006-01-02 15:04")
}
