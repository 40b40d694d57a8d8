package bypass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// seqFrames is n Data frames of file 0, sz bytes each, back to back from
// offset 0.
func seqFrames(n, sz int) []Frame {
	fs := make([]Frame, n)
	for i := range fs {
		fs[i] = dataFrame(0, uint64(i*sz), sz)
	}
	return fs
}

// cost is what a sz-byte unsealed Data frame costs in a window.
func cost(sz int) int { return wire.HeaderSize + sz }

// bounded is a context for a wait that must end: 2 s (fake time inside a
// synctest bubble).
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readN reads n frames from r and checks they are want.
func readN(t *testing.T, r *Reader, want []Frame) {
	t.Helper()
	for i, w := range want {
		f, err := r.Next(bounded(t))
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !sameFrame(f, w) {
			t.Fatalf("frame %d: got %+v, want %+v", i, f.H, w.H)
		}
	}
}

// noFrame checks that r has no frame ready.
func noFrame(t *testing.T, r *Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if f, err := r.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with nothing left: got %+v, %v; want context.Canceled", f.H, err)
	}
}

func TestWindowEvictsOldest(t *testing.T) {
	const sz = 100
	fs := seqFrames(6, sz)
	for _, oneCall := range []bool{false, true} {
		t.Run(fmt.Sprintf("one call %v", oneCall), func(t *testing.T) {
			w := NewWindow(3 * cost(sz))
			if oneCall {
				if err := w.Add(bounded(t), fs...); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, f := range fs {
					if err := w.Add(bounded(t), f); err != nil {
						t.Fatal(err)
					}
				}
			}
			if w.bytes > w.limit {
				t.Errorf("window holds %d bytes, limit %d", w.bytes, w.limit)
			}
			got, ok := w.Range(fs[3].H.Before(), fs[5].H.After())
			if !ok || len(got) != 3 || !sameFrame(got[0], fs[3]) || !sameFrame(got[2], fs[5]) {
				t.Errorf("Range of the newest 3 frames: %d frames, %v", len(got), ok)
			}
			if _, ok := w.Range(fs[2].H.Before(), fs[5].H.After()); ok {
				t.Error("Range still covers evicted frame 2")
			}
			r, start, covered := w.Reader(fs[0].H.Before())
			defer r.Close()
			if covered || start != fs[3].H.Before() {
				t.Errorf("Reader at the evicted start: start %v covered %v, want %v false", start, covered, fs[3].H.Before())
			}
			readN(t, r, fs[3:])
			noFrame(t, r)
		})
	}
}

func TestWindowOversizedFrame(t *testing.T) {
	fs := seqFrames(3, 100)
	big := dataFrame(0, 300, 1000)
	w := NewWindow(2 * cost(100))
	if err := w.Add(bounded(t), append(fs, big)...); err != nil {
		t.Fatal(err)
	}
	r, start, covered := w.Reader(wire.Position{})
	defer r.Close()
	if covered || start != big.H.Before() {
		t.Errorf("start %v covered %v, want %v false: the big frame alone is held", start, covered, big.H.Before())
	}
	readN(t, r, []Frame{big})
}

func TestWindowReader(t *testing.T) {
	fs := twoFiles()
	w := NewWindow(1 << 20)
	if err := w.Add(bounded(t), fs...); err != nil {
		t.Fatal(err)
	}
	at := func(file uint32, off uint64) wire.Position {
		return wire.Position{File: file, Started: true, Offset: off}
	}
	for _, tt := range []struct {
		name  string
		p     wire.Position
		first int
	}{
		{"stream start", wire.Position{}, 0},
		{"after FileStart", at(0, 0), 1},
		{"inside data", at(0, 50), 1},
		{"last byte of data", at(0, 99), 1},
		{"hole start", at(0, 100), 2},
		{"inside hole", at(0, 2000), 2},
		{"before FileEnd", at(0, 4206), 4},
		{"start of file 2", wire.Position{File: 1}, 5},
		{"inside file 2", at(1, 49), 6},
		{"before End", wire.Position{File: 2}, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, start, covered := w.Reader(tt.p)
			defer r.Close()
			if !covered || start != (wire.Position{}) {
				t.Errorf("start %v covered %v, want the stream start, true", start, covered)
			}
			readN(t, r, fs[tt.first:])
			noFrame(t, r)
		})
	}
}

func TestWindowReaderBehind(t *testing.T) {
	const sz = 100
	fs := seqFrames(6, sz)
	w := NewWindow(3 * cost(sz))
	if err := w.Add(bounded(t), fs...); err != nil {
		t.Fatal(err)
	}
	oldest := fs[3].H.Before()
	for _, tt := range []struct {
		name    string
		p       wire.Position
		covered bool
		first   int
	}{
		{"evicted frame", fs[1].H.Before(), false, 3},
		{"inside the last evicted frame", wire.Position{Started: true, Offset: 3*sz - 1}, false, 3},
		{"oldest held", oldest, true, 3},
		{"inside the oldest held", wire.Position{Started: true, Offset: 3*sz + 1}, true, 3},
		{"newest", fs[5].H.Before(), true, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, start, covered := w.Reader(tt.p)
			defer r.Close()
			if covered != tt.covered || start != oldest {
				t.Errorf("start %v covered %v, want %v %v", start, covered, oldest, tt.covered)
			}
			readN(t, r, fs[tt.first:])
		})
	}
}

func TestWindowEmptyReader(t *testing.T) {
	w := NewWindow(0)
	if w.limit != DefaultWindow {
		t.Errorf("limit %d, want DefaultWindow", w.limit)
	}
	r, start, covered := w.Reader(wire.Position{})
	defer r.Close()
	if !covered || start != (wire.Position{}) {
		t.Errorf("empty window: start %v covered %v", start, covered)
	}
	noFrame(t, r)
	f := dataFrame(0, 0, 10)
	if err := w.Add(bounded(t), f); err != nil {
		t.Fatal(err)
	}
	readN(t, r, []Frame{f})
}

func TestWindowPinBlocksAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sz = 100
		fs := seqFrames(3, sz)
		w := NewWindow(2 * cost(sz))
		if err := w.Add(bounded(t), fs[0], fs[1]); err != nil {
			t.Fatal(err)
		}
		r, _, _ := w.Reader(fs[0].H.Before())
		defer r.Close()
		done := make(chan error, 1)
		go func() { done <- w.Add(bounded(t), fs[2]) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Add returned (%v) while an unread reader pins the oldest frame", err)
		default:
		}
		readN(t, r, fs[:1])
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
		default:
			t.Fatal("Add still blocked after the reader read the oldest frame")
		}
		if _, ok := w.Range(fs[0].H.Before(), fs[0].H.After()); ok {
			t.Error("frame 0 was not evicted")
		}
		readN(t, r, fs[1:])
	})
}

func TestWindowReaderCloseUnpins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := seqFrames(2, 100)
		w := NewWindow(cost(100))
		if err := w.Add(bounded(t), fs[0]); err != nil {
			t.Fatal(err)
		}
		r, _, _ := w.Reader(wire.Position{})
		done := make(chan error, 1)
		go func() { done <- w.Add(bounded(t), fs[1]) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Add returned (%v) while a reader pins the frame", err)
		default:
		}
		r.Close()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
		default:
			t.Fatal("Add still blocked after the reader closed")
		}
	})
}

func TestWindowAddCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := seqFrames(2, 100)
		w := NewWindow(cost(100))
		if err := w.Add(bounded(t), fs[0]); err != nil {
			t.Fatal(err)
		}
		r, _, _ := w.Reader(wire.Position{})
		defer r.Close()

		ctx, cancel := context.WithCancelCause(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Add(ctx, fs[1]) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Add returned (%v) before its context ended", err)
		default:
		}
		stop := errors.New("stop")
		cancel(stop)
		synctest.Wait()
		select {
		case err := <-done:
			if !errors.Is(err, stop) {
				t.Fatalf("Add: %v, want the context's cause", err)
			}
		default:
			t.Fatal("Add still blocked after its context was cancelled")
		}
		// Already cancelled: Add does not wait at all.
		if err := w.Add(ctx, fs[1]); !errors.Is(err, stop) {
			t.Fatalf("Add with a cancelled context: %v", err)
		}
		// The pinned frame is still there.
		readN(t, r, fs[:1])
	})
}

func TestWindowAddTimeout(t *testing.T) {
	// A bounded wait in real time: Add gives up when its deadline passes.
	w := NewWindow(cost(10))
	fs := seqFrames(2, 10)
	if err := w.Add(bounded(t), fs[0]); err != nil {
		t.Fatal(err)
	}
	r, _, _ := w.Reader(wire.Position{})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := w.Add(ctx, fs[1]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Add returned %v after its deadline", d)
	}
}

func TestWindowNextWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(0)
		r, _, _ := w.Reader(wire.Position{})
		defer r.Close()
		type result struct {
			f   Frame
			err error
		}
		got := make(chan result, 1)
		go func() {
			f, err := r.Next(bounded(t))
			got <- result{f, err}
		}()
		synctest.Wait()
		select {
		case res := <-got:
			t.Fatalf("Next returned %+v, %v from an empty window", res.f.H, res.err)
		default:
		}
		f := dataFrame(0, 0, 10)
		if err := w.Add(bounded(t), f); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case res := <-got:
			if res.err != nil || !sameFrame(res.f, f) {
				t.Fatalf("Next: %+v, %v", res.f.H, res.err)
			}
		default:
			t.Fatal("Next still waiting after Add")
		}
	})
}

func TestWindowNextEOF(t *testing.T) {
	fs := seqFrames(2, 10)
	w := NewWindow(0)
	if err := w.Add(bounded(t), fs...); err != nil {
		t.Fatal(err)
	}
	r, _, _ := w.Reader(wire.Position{})
	defer r.Close()
	w.Close()
	readN(t, r, fs) // the frames held before Close still come
	for range 2 {
		if f, err := r.Next(bounded(t)); err != io.EOF {
			t.Fatalf("Next after Close, drained: %+v, %v; want io.EOF", f.H, err)
		}
	}
	if err := w.Add(bounded(t), dataFrame(0, 20, 10)); !errors.Is(err, errClosed) {
		t.Errorf("Add after Close: %v, want errClosed", err)
	}
}

func TestWindowCloseWakesNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(0)
		r, _, _ := w.Reader(wire.Position{})
		defer r.Close()
		got := make(chan error, 1)
		go func() {
			_, err := r.Next(bounded(t))
			got <- err
		}()
		synctest.Wait()
		w.Close()
		synctest.Wait()
		select {
		case err := <-got:
			if err != io.EOF {
				t.Fatalf("Next: %v, want io.EOF", err)
			}
		default:
			t.Fatal("Next still waiting after Close")
		}
	})
}

// TestWindowAddWakesWaitingReader: a reader waiting for frames must get
// the frames an Add appended even while that Add waits for the reader to
// unpin room for the rest. The sender adds a whole chunk's frames in one
// call, and a chunk (block size) may exceed the window (--window 1M).
func TestWindowAddWakesWaitingReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sz = 100
		fs := seqFrames(2, sz)
		w := NewWindow(cost(sz)) // room for one frame
		r, _, _ := w.Reader(wire.Position{})
		defer r.Close()
		got := make(chan error, 1)
		go func() {
			f, err := r.Next(bounded(t))
			if err == nil && !sameFrame(f, fs[0]) {
				err = fmt.Errorf("got %+v, want frame 0", f.H)
			}
			got <- err
		}()
		synctest.Wait() // the reader waits in Next
		// Time in the bubble moves only when every goroutine in it is
		// blocked: Add taking any time means the two waited for each
		// other until a context (2 s) ended.
		t0 := time.Now()
		err := w.Add(bounded(t), fs...)
		if d := time.Since(t0); err != nil || d > 0 {
			t.Errorf("Add(2 frames, room for 1) with a reader waiting in Next: returned %v after %v; want nil at once (the reader should be woken for frame 0)", err, d)
		}
		t1 := time.Now()
		if err := <-got; err != nil {
			t.Errorf("reader: %v", err)
		}
		if d := time.Since(t1); d > 0 {
			t.Errorf("the reader got frame 0 %v after Add returned", d)
		}
	})
}

func TestWindowRange(t *testing.T) {
	fs := twoFiles()
	full := NewWindow(1 << 20)
	if err := full.Add(bounded(t), fs...); err != nil {
		t.Fatal(err)
	}
	partial := NewWindow(1 << 20) // up to the data of file 2
	if err := partial.Add(bounded(t), fs[:7]...); err != nil {
		t.Fatal(err)
	}
	const sz = 100
	seq := seqFrames(6, sz)
	evicted := NewWindow(3 * cost(sz))
	if err := evicted.Add(bounded(t), seq...); err != nil {
		t.Fatal(err)
	}
	at := func(file uint32, off uint64) wire.Position {
		return wire.Position{File: file, Started: true, Offset: off}
	}
	for _, tt := range []struct {
		name     string
		w        *Window
		src      []Frame
		from, to wire.Position
		ok       bool
		lo, hi   int // src[lo:hi] when ok
	}{
		{"whole stream", full, fs, wire.Position{}, fs[8].H.After(), true, 0, 9},
		{"cut at both ends", full, fs, at(0, 50), at(0, 4200), true, 1, 4},
		{"frame boundaries", full, fs, fs[2].H.Before(), fs[4].H.Before(), true, 2, 4},
		{"across files", full, fs, at(0, 4206), at(1, 1), true, 4, 7},
		{"empty", full, fs, wire.Position{File: 1}, wire.Position{File: 1}, true, 5, 5},
		{"up to the head", partial, fs, fs[5].H.Before(), fs[6].H.After(), true, 5, 7},
		{"beyond the head", partial, fs, fs[5].H.Before(), fs[7].H.After(), false, 0, 0},
		{"held part", evicted, seq, at(0, 3*sz), at(0, 6*sz), true, 3, 6},
		{"inside the oldest held", evicted, seq, at(0, 3*sz+1), at(0, 4*sz+1), true, 3, 5},
		{"from evicted", evicted, seq, at(0, 3*sz-1), at(0, 4*sz), false, 0, 0},
		{"from the start", evicted, seq, wire.Position{}, at(0, 4*sz), false, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.w.Range(tt.from, tt.to)
			if ok != tt.ok {
				t.Fatalf("Range(%v, %v) ok = %v, want %v", tt.from, tt.to, ok, tt.ok)
			}
			want := tt.src[tt.lo:tt.hi]
			if !ok {
				want = nil
			}
			if len(got) != len(want) {
				t.Fatalf("Range(%v, %v): %d frames, want %d", tt.from, tt.to, len(got), len(want))
			}
			for i := range got {
				if !sameFrame(got[i], want[i]) {
					t.Errorf("frame %d: %+v, want %+v", i, got[i].H, want[i].H)
				}
			}
		})
	}
	// The result is a copy: changing it does not change the window.
	got, _ := full.Range(wire.Position{}, fs[8].H.After())
	got[0] = Frame{}
	if again, _ := full.Range(wire.Position{}, fs[8].H.After()); !sameFrame(again[0], fs[0]) {
		t.Error("Range returned the window's own slice")
	}
}
