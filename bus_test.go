package microdrop

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestMemoryBusOrderAndSlowSubscriber(t *testing.T) {
	b := NewMemoryBus()
	fast := b.Subscribe(100)
	slow := b.Subscribe(2)
	defer fast.Close()
	for i := 0; i < 5; i++ {
		if _, err := b.Publish(context.Background(), Event{Kind: Claimed, DropID: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	for want := uint64(1); want <= 5; want++ {
		e := <-fast.C()
		if e.Seq != want {
			t.Fatalf("fast subscriber got seq %d, want %d", e.Seq, want)
		}
	}
	if got := slow.Dropped(); got != 3 {
		t.Fatalf("slow subscriber dropped %d, want 3", got)
	}
	if n, lag, _ := b.Stats(); n != 2 || lag != 2 {
		t.Fatalf("stats = %d subscribers, lag %d; want 2, 2", n, lag)
	}
	slow.Close()
	slow.Close() // a second close is harmless
	if n, _, _ := b.Stats(); n != 1 {
		t.Fatalf("after close: %d subscribers, want 1", n)
	}
	if _, ok := <-slow.C(); !ok {
		t.Fatal("buffered events should still be readable after close")
	}
}

// controlKinds are every kind a slow subscriber must never miss.
var controlKinds = []Kind{DropOpened, DropExtended, CueAired, HighlightMarked, SoldOut, DropClosed}

// A burst of 100,000 claims, with the control events of drops in between,
// reaches a subscriber that does not read until the burst is over and one
// that reads slowly throughout: both get every control event, all events
// in publish order, and only claims and redemptions are shed.
func TestBusBurstNeverDropsControlEvents(t *testing.T) {
	b := NewMemoryBus()
	stalled := b.Subscribe(256)
	slow := b.Subscribe(256)
	only := b.Subscribe(8, SoldOut, DropClosed)
	defer stalled.Close()
	defer slow.Close()
	defer only.Close()

	slowGot := make(chan []Event, 1)
	go func() { slowGot <- read(slow, 50*time.Microsecond) }()

	var want, wantOnly []uint64 // the seqs of control events, in order
	const claims = 100_000
	for i := range claims {
		if i%500 == 0 {
			k := controlKinds[(i/500)%len(controlKinds)]
			e, _ := b.Publish(context.Background(), Event{Kind: k, DropID: "d"})
			want = append(want, e.Seq)
			if k == SoldOut || k == DropClosed {
				wantOnly = append(wantOnly, e.Seq)
			}
		}
		kind := Claimed
		if i%1000 == 999 {
			kind = Redeemed
		}
		b.Publish(context.Background(), Event{Kind: kind, DropID: "d"})
	}
	end, _ := b.Publish(context.Background(), Event{Kind: DropClosed, DropID: "end"})
	want, wantOnly = append(want, end.Seq), append(wantOnly, end.Seq)

	for name, got := range map[string][]Event{"stalled": read(stalled, 0), "slow": <-slowGot} {
		checkBurst(t, name, got, want, claims+len(want))
	}
	if d := stalled.Dropped(); d == 0 {
		t.Fatal("the stalled subscriber shed nothing: the burst did not overflow it")
	}
	var gotOnly []uint64
	for _, e := range read(only, 0) {
		gotOnly = append(gotOnly, e.Seq)
	}
	if !slices.Equal(gotOnly, wantOnly) {
		t.Fatalf("subscriber of SoldOut and DropClosed got seqs %v, want %v", gotOnly, wantOnly)
	}
}

// read takes events until the one that ends the burst (DropClosed of
// drop "end"), pausing between them.
func read(s *Subscription, pause time.Duration) []Event {
	var got []Event
	for e := range s.C() {
		got = append(got, e)
		if e.DropID == "end" {
			break
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	return got
}

func checkBurst(t *testing.T, name string, got []Event, want []uint64, published int) {
	t.Helper()
	var control []uint64
	for i, e := range got {
		if i > 0 && e.Seq <= got[i-1].Seq {
			t.Fatalf("%s: seq %d after %d", name, e.Seq, got[i-1].Seq)
		}
		if !e.Kind.Sheddable() {
			control = append(control, e.Seq)
		}
	}
	if !slices.Equal(control, want) {
		t.Fatalf("%s: got %d control events, want %d (all of them, in order)", name, len(control), len(want))
	}
	t.Logf("%s: received %d of %d events, every one of the %d control events", name, len(got), published, len(want))
}

// Close stops the goroutine that feeds a backlog, even when the
// subscriber never reads again.
func TestSubscriptionCloseStopsBacklog(t *testing.T) {
	b := NewMemoryBus()
	before := runtime.NumGoroutine()
	s := b.Subscribe(1)
	for range 10 {
		b.Publish(context.Background(), Event{Kind: DropOpened})
	}
	if lag := s.Lag(); lag != 10 {
		t.Fatalf("lag %d, want 10 (1 buffered, 9 in the backlog)", lag)
	}
	if runtime.NumGoroutine() <= before {
		t.Fatal("no goroutine feeds the backlog")
	}
	s.Close()
	// Close waits for the goroutine to return; the runtime may count it a
	// moment longer.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before Subscribe", runtime.NumGoroutine(), before)
		}
	}
	if _, ok := <-s.C(); !ok {
		t.Fatal("the buffered event should still be readable after close")
	}
	if _, ok := <-s.C(); ok {
		t.Fatal("C not closed after the buffer")
	}
	if s.Deliver(Event{Kind: DropOpened}) {
		t.Fatal("delivered to a closed subscription")
	}
}
