package httpboot

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestStragglers(t *testing.T) {
	now := testNow
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	recv := func(rate float64, since time.Duration) inventory.Status {
		return inventory.Status{State: contract.StateInstalling, Step: contract.StepReceiving, StepSince: ago(since), Rate: rate}
	}
	reg := func(since time.Duration) inventory.Status {
		return inventory.Status{State: contract.StateRegistered, Step: contract.StepRegistered, StepSince: ago(since)}
	}
	for _, tc := range []struct {
		name string
		list []inventory.Status
		want []string
	}{
		{"none", nil, []string{}},
		{"even rates", []inventory.Status{recv(100, time.Minute), recv(90, time.Minute), recv(110, time.Minute)}, []string{"", "", ""}},
		{"one slow", []inventory.Status{recv(100, time.Minute), recv(40, time.Minute), recv(110, time.Minute), recv(95, time.Minute)},
			[]string{"", "slow", "", ""}},
		{"half the median is not below it", []inventory.Status{recv(100, time.Minute), recv(50, time.Minute), recv(100, time.Minute)}, []string{"", "", ""}},
		{"two nodes have no median", []inventory.Status{recv(100, time.Minute), recv(1, time.Minute)}, []string{"", ""}},
		{"zero median rate", []inventory.Status{recv(0, time.Minute), recv(0, time.Minute), recv(0, time.Minute)}, []string{"", "", ""}},
		{"stuck registered", []inventory.Status{reg(30 * time.Second), reg(40 * time.Second), reg(35 * time.Second), reg(10 * time.Minute)},
			[]string{"", "", "", "stuck"}},
		{"long but under the floor", []inventory.Status{reg(5 * time.Second), reg(5 * time.Second), reg(5 * time.Second), reg(50 * time.Second)},
			[]string{"", "", "", ""}},
		{"all equally long", []inventory.Status{reg(time.Hour), reg(time.Hour), reg(time.Hour)}, []string{"", "", ""}},
		{"slow wins over stuck", []inventory.Status{recv(100, time.Minute), recv(100, time.Minute), recv(100, time.Minute), recv(10, time.Hour)},
			[]string{"", "", "", "slow"}},
		{"done and failed are not compared", []inventory.Status{
			reg(time.Minute), reg(time.Minute), reg(time.Minute),
			{State: contract.StateDone, Step: contract.StepRegistered, StepSince: ago(time.Hour)},
			{State: contract.StateFailed, Step: contract.StepRegistered, StepSince: ago(time.Hour)},
		}, []string{"", "", "", "", ""}},
		{"peers in other steps do not count", []inventory.Status{reg(time.Minute), recv(100, time.Minute), recv(100, 2*time.Minute), recv(100, time.Hour)},
			[]string{"", "", "", "stuck"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stragglers(tc.list, now, defaultRules)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestETA(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   inventory.Status
		want float64
	}{
		{"receiving", inventory.Status{State: contract.StateInstalling, Step: contract.StepReceiving, Bytes: 400, Total: 1000, Rate: 200}, 3},
		{"no step yet", inventory.Status{State: contract.StateInstalling, Bytes: 0, Total: 1000, Rate: 100}, 10},
		{"past the total", inventory.Status{State: contract.StateInstalling, Bytes: 2000, Total: 1000, Rate: 100}, 0},
		{"no total", inventory.Status{State: contract.StateInstalling, Bytes: 400, Rate: 200}, -1},
		{"no rate", inventory.Status{State: contract.StateInstalling, Bytes: 400, Total: 1000}, -1},
		{"verifying", inventory.Status{State: contract.StateInstalling, Step: contract.StepVerifying, Bytes: 400, Total: 1000, Rate: 200}, -1},
		{"done", inventory.Status{State: contract.StateDone, Bytes: 1000, Total: 1000, Rate: 200}, -1},
	} {
		if got := eta(tc.st); got != tc.want {
			t.Errorf("%s: eta %v, want %v", tc.name, got, tc.want)
		}
	}
}
