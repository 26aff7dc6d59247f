package microdrop

import (
	"context"
	"testing"
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
