package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestPlain(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		log   func(l *slog.Logger)
		want  string
	}{
		{"info", slog.LevelInfo, func(l *slog.Logger) { l.Info("3 of 4 node(s) registered") }, "herd serve: 3 of 4 node(s) registered\n"},
		{"warning", slog.LevelInfo, func(l *slog.Logger) { l.Warn("n3 never came") }, "herd serve: warning: n3 never came\n"},
		{"error", slog.LevelInfo, func(l *slog.Logger) { l.Error("boot services stopped") }, "herd serve: error: boot services stopped\n"},
		{"debug hidden", slog.LevelInfo, func(l *slog.Logger) { l.Debug("GET /boot/x.ipxe") }, ""},
		{"debug shown with -v", slog.LevelDebug, func(l *slog.Logger) { l.Debug("GET /boot/x.ipxe") }, "herd serve: GET /boot/x.ipxe\n"},
		{"fields only with -v", slog.LevelInfo, func(l *slog.Logger) { l.Info("n1 registered", "node", "n1") },
			"herd serve: n1 registered\n"},
		{"fields", slog.LevelDebug, func(l *slog.Logger) { l.Info("registered", "node", "n1", "ip", "10.0.0.11", "n", 3) },
			"herd serve: registered node=n1 ip=10.0.0.11 n=3\n"},
		{"quoted field", slog.LevelDebug, func(l *slog.Logger) { l.Info("failed", "reason", "disk too small", "empty", "") },
			"herd serve: failed reason=\"disk too small\" empty=\"\"\n"},
		{"with and groups", slog.LevelDebug, func(l *slog.Logger) {
			l.With("session", "abc").WithGroup("node").Info("done", "name", "n1", slog.Group("bytes", "got", 5))
		}, "herd serve: done session=abc node.name=n1 node.bytes.got=5\n"},
		{"a message that says warning is not one", slog.LevelInfo, func(l *slog.Logger) { l.Info("warning lights are off") },
			"herd serve: warning lights are off\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			tt.log(New(&b, "herd serve", tt.level, Plain))
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	New(&b, "herd serve", slog.LevelInfo, JSON).Warn("n3 never came", "node", "n3")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("%q: %v", b.String(), err)
	}
	if m["level"] != "WARN" || m["msg"] != "n3 never came" || m["node"] != "n3" || m["prog"] != "herd serve" || m["time"] == nil {
		t.Errorf("record %v", m)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": Plain, "plain": Plain, "json": JSON} {
		if got, ok := ParseFormat(in); !ok || got != want {
			t.Errorf("%q: %q %v", in, got, ok)
		}
	}
	if _, ok := ParseFormat("xml"); ok {
		t.Error("xml accepted")
	}
}
