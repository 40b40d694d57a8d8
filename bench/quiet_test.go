package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, text string
		want       CPUTimes
		err        bool
	}{
		{
			name: "kernel 6 with steal, guest",
			text: "cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 50 2 25 400 10 1 1 5 3 0\nintr 1\n",
			// user nice system idle iowait irq softirq steal; guest is in user.
			want: CPUTimes{Idle: 820, Total: 990},
		},
		{name: "old kernel, four fields", text: "cpu 1 2 3 4\n", want: CPUTimes{Idle: 4, Total: 10}},
		{name: "no cpu line", text: "intr 5\n", err: true},
		{name: "short line", text: "cpu 1 2 3\n", err: true},
		{name: "not a number", text: "cpu 1 2 x 4\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat(strings.NewReader(tt.text))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("cpu  100 5 50 800 20 3 2 10 7 0\n")
	f.Add("cpu 1 2 3 4\n")
	f.Add("cpu 18446744073709551615 1 1 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		got, err := ParseProcStat(strings.NewReader(text))
		if err == nil && got.Idle > got.Total {
			t.Errorf("idle %d above total %d", got.Idle, got.Total)
		}
	})
}

func TestIdleShare(t *testing.T) {
	a := CPUTimes{Idle: 100, Total: 200}
	for _, tt := range []struct {
		b    CPUTimes
		want float64
	}{
		{CPUTimes{Idle: 190, Total: 300}, 0.9},
		{CPUTimes{Idle: 100, Total: 300}, 0},
		{a, 1}, // no time passed
	} {
		if got := IdleShare(a, tt.b); got != tt.want {
			t.Errorf("IdleShare(%+v, %+v) = %v, want %v", a, tt.b, got, tt.want)
		}
	}
}

// quiesce on a machine it cannot wait for (nothing is ever idle enough)
// gives up after max.
func TestQuiesceBounded(t *testing.T) {
	d, ok := quiesce(context.Background(), 1.01, 10*time.Millisecond, 100*time.Millisecond)
	if ok {
		t.Fatal("an idle share above 1 was reached")
	}
	if d < 100*time.Millisecond {
		t.Errorf("gave up after %v, before max", d)
	}
}
