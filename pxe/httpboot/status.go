package httpboot

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// states in the order of the install cycle, for counts.
var statusPage = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>herd: {{.Done}} of {{len .Nodes}} nodes done</title>
<style>
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed { background: #fdd; }
tr.done { background: #dfd; }
tr.installing { background: #ffd; }
</style>
</head>
<body>
<h1>herd</h1>
<p>{{range $i, $c := .Counts}}{{if $i}}, {{end}}{{$c.State}}: {{$c.N}}{{end}}. Updated {{.Now}}.</p>
<table>
<thead><tr><th>name</th><th>MAC</th><th>IP</th><th>state</th><th>next boot</th><th>bytes</th><th>rate</th><th>last seen</th><th>last report</th><th>reason / message</th></tr></thead>
<tbody>
{{range .Nodes}}<tr class="{{.State}}"><td>{{.Name}}</td><td>{{.MAC}}</td><td>{{.IP}}</td><td>{{.State}}</td><td>{{.Boot}}</td><td class="num">{{.Bytes}}</td><td class="num">{{.Rate}}</td><td>{{.Seen}}</td><td>{{.LastReport}}</td><td>{{.Reason}}</td></tr>
{{else}}<tr><td colspan="9">the inventory has no nodes</td></tr>
{{end}}</tbody>
</table>
</body>
</html>
`))

type statusRow struct {
	Name, MAC, IP, State, Boot, Bytes, Rate, Seen, LastReport, Reason string
}

type stateCount struct {
	State contract.State
	N     int
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
