package sender

import (
	"testing"

	"github.com/herdproject/herd/ring/plan"
)

// The session asks nodes for CUBIC unless told otherwise; "system" asks
// for nothing.
func TestSessionCongestion(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{"", DefaultCongestion},
		{"reno", "reno"},
		{SystemCongestion, ""},
	}
	for _, tt := range tests {
		c := Config{Plan: plan.Session{Hosts: []string{"n1"}}, Congestion: tt.cfg}
		c.setDefaults()
		s := &session{cfg: c}
		if got := s.congestion(); got != tt.want {
			t.Errorf("Congestion %q: the session asks for %q, want %q", tt.cfg, got, tt.want)
		}
		if got := s.dialOptions().Congestion; got != tt.want {
			t.Errorf("Congestion %q: the sender dials with %q, want %q", tt.cfg, got, tt.want)
		}
	}
}
