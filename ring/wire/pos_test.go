package wire

import "testing"

// streamOrder is a list of distinct positions in stream order.
var streamOrder = []Position{
	{File: 0},
	{File: 0, Started: true},
	{File: 0, Started: true, Offset: 1},
	{File: 0, Started: true, Offset: 4096},
	{File: 0, Started: true, Offset: 1 << 40},
	{File: 1},
	{File: 1, Started: true},
	{File: 1, Started: true, Offset: 7},
	{File: 2},
	{File: 2, Started: true},
	{File: 3},
	{File: 1 << 31, Started: true, Offset: 1},
	{File: 1<<32 - 1, Started: true, Offset: 1<<64 - 1},
}

func TestPositionLess(t *testing.T) {
	for i, p := range streamOrder {
		if p.Less(p) {
			t.Errorf("%v.Less(itself) = true", p)
		}
		for j, q := range streamOrder {
			if got, want := p.Less(q), i < j; got != want {
				t.Errorf("%+v.Less(%+v) = %v, want %v", p, q, got, want)
			}
		}
	}
}

func TestPositionString(t *testing.T) {
	for _, tt := range []struct {
		p    Position
		want string
	}{
		{Position{File: 0}, "start of file 1"},
		{Position{File: 2, Started: true, Offset: 4096}, "file 3 offset 4096"},
		{Position{File: 0, Started: true}, "file 1 offset 0"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestHeaderBeforeAfter(t *testing.T) {
	for _, tt := range []struct {
		name          string
		h             Header
		before, after Position
	}{
		{"FileStart", Header{Type: TFileStart, File: 2},
			Position{File: 2}, Position{File: 2, Started: true}},
		{"FileStart ignores offset", Header{Type: TFileStart, File: 2, Offset: 99},
			Position{File: 2}, Position{File: 2, Started: true}},
		{"Data", Header{Type: TData, File: 1, Offset: 4096, Length: 100},
			Position{File: 1, Started: true, Offset: 4096}, Position{File: 1, Started: true, Offset: 4196}},
		{"Hole", Header{Type: THole, File: 0, Offset: 0, Length: 1 << 30},
			Position{File: 0, Started: true}, Position{File: 0, Started: true, Offset: 1 << 30}},
		{"Data above 4 GiB", Header{Type: TData, File: 3, Offset: 1<<32 + 5, Length: 1<<32 - 1},
			Position{File: 3, Started: true, Offset: 1<<32 + 5}, Position{File: 3, Started: true, Offset: 1<<33 + 4}},
		{"FileEnd", Header{Type: TFileEnd, File: 1, Offset: 12345},
			Position{File: 1, Started: true, Offset: 12345}, Position{File: 2}},
		{"empty FileEnd", Header{Type: TFileEnd, File: 0},
			Position{File: 0, Started: true}, Position{File: 1}},
		{"End of 2 files", Header{Type: TEnd, File: 2},
			Position{File: 2}, Position{File: 3, Started: true}},
		{"End of no files", Header{Type: TEnd},
			Position{File: 0}, Position{File: 1, Started: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Before(); got != tt.before {
				t.Errorf("Before = %+v, want %+v", got, tt.before)
			}
			if got := tt.h.After(); got != tt.after {
				t.Errorf("After = %+v, want %+v", got, tt.after)
			}
			if !tt.h.Before().Less(tt.h.After()) {
				t.Errorf("Before %v is not less than After %v", tt.h.Before(), tt.h.After())
			}
		})
	}
}

// TestStreamPositionsChain walks a realistic stream of two files: each
// frame begins where the previous one ended, and positions only grow.
func TestStreamPositionsChain(t *testing.T) {
	frames := []Header{
		{Type: TFileStart, File: 0},
		{Type: TData, File: 0, Offset: 0, Length: 4096},
		{Type: THole, File: 0, Offset: 4096, Length: 8192},
		{Type: TData, File: 0, Offset: 12288, Length: 100},
		{Type: TFileEnd, File: 0, Offset: 12388},
		{Type: TFileStart, File: 1},
		{Type: THole, File: 1, Offset: 0, Length: 1 << 20},
		{Type: TData, File: 1, Offset: 1 << 20, Length: 1},
		{Type: TFileEnd, File: 1, Offset: 1<<20 + 1},
		{Type: TEnd, File: 2},
	}
	if got := frames[0].Before(); got != (Position{}) {
		t.Errorf("the stream begins at %+v, want the zero Position", got)
	}
	for i, h := range frames {
		if !h.Before().Less(h.After()) {
			t.Errorf("frame %d (%v): Before %+v not less than After %+v", i, h.Type, h.Before(), h.After())
		}
		if i == 0 {
			continue
		}
		prev := frames[i-1]
		if h.Before() != prev.After() {
			t.Errorf("frame %d (%v): Before = %+v, want After of frame %d (%v) = %+v",
				i, h.Type, h.Before(), i-1, prev.Type, prev.After())
		}
		if !prev.Before().Less(h.Before()) {
			t.Errorf("frame %d (%v) does not begin after frame %d", i, h.Type, i-1)
		}
	}
	if got, want := frames[len(frames)-1].Before(), (Position{File: 2}); got != want {
		t.Errorf("End of 2 files begins at %+v, want %+v", got, want)
	}
}
