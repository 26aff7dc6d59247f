package nats_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	mdnats "github.com/microdrop/microdrop/claims/nats"
	"github.com/microdrop/microdrop/claims/nats/natstest"
)

func open(t testing.TB, url string) *mdnats.Bus {
	t.Helper()
	servers, o, err := mdnats.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mdnats.Open(context.Background(), servers, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func collect(t *testing.T, s *microdrop.Subscription, n int) []microdrop.Event {
	t.Helper()
	var out []microdrop.Event
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case e := <-s.C():
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

// Events published on two replicas reach subscribers on both, in one order
// (the stream's), with Seq the stream sequence and each drop's events in
// the order its decider published them.
func testCrossReplica(t *testing.T, url string) {
	a, b := open(t, url), open(t, url)
	subA, subB := a.Subscribe(1024), b.Subscribe(1024)
	const perDrop = 100
	var wg sync.WaitGroup
	for i, bus := range []*mdnats.Bus{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := uint64(0)
			for n := 1; n <= perDrop; n++ {
				e, err := bus.Publish(context.Background(), microdrop.Event{Kind: microdrop.Claimed, Channel: "chan", DropID: fmt.Sprintf("drop%d", i),
					Claim: &microdrop.ClaimView{UserID: fmt.Sprint(n), Units: n}})
				if err != nil {
					t.Error(err)
					return
				}
				if e.Seq <= prev {
					t.Errorf("seq %d after %d", e.Seq, prev)
				}
				prev = e.Seq
			}
		}()
	}
	wg.Wait()
	ea, eb := collect(t, subA, 2*perDrop), collect(t, subB, 2*perDrop)
	next := map[string]int{}
	for i := range ea {
		if ea[i].Seq != eb[i].Seq || ea[i].DropID != eb[i].DropID || ea[i].Claim.Units != eb[i].Claim.Units {
			t.Fatalf("replicas saw different orders at %d: %+v vs %+v", i, ea[i], eb[i])
		}
		if i > 0 && ea[i].Seq <= ea[i-1].Seq {
			t.Fatalf("seq not increasing: %d then %d", ea[i-1].Seq, ea[i].Seq)
		}
		next[ea[i].DropID]++
		if ea[i].Claim.Units != next[ea[i].DropID] {
			t.Fatalf("drop %s: event %d arrived as number %d", ea[i].DropID, ea[i].Claim.Units, next[ea[i].DropID])
		}
	}
}

func TestCrossReplicaInProcess(t *testing.T) { testCrossReplica(t, natstest.RunServer(t)) }

func TestCrossReplicaSharedServer(t *testing.T) { testCrossReplica(t, natstest.BusURL(t)) }

// A burst of 100,000 claims published from several goroutines, with the
// control events of drops in between, reaches a subscriber that does not
// read until the burst is over: it gets every control event, everything in
// stream order, and only claims are shed.
func TestBurstNeverDropsControlEvents(t *testing.T) {
	b := open(t, natstest.RunServer(t))
	stalled := b.Subscribe(256)
	defer stalled.Close()
	const claimers, perClaimer = 8, 12_500
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perClaimer {
				if _, err := b.Publish(context.Background(), microdrop.Event{Kind: microdrop.Claimed, Channel: "chan", DropID: fmt.Sprint("drop", i),
					Claim: &microdrop.ClaimView{UserID: fmt.Sprint(n)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	control := []microdrop.Kind{microdrop.DropOpened, microdrop.DropExtended, microdrop.CueAired, microdrop.HighlightMarked, microdrop.SoldOut, microdrop.DropClosed}
	var want []uint64
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			e, err := b.Publish(context.Background(), microdrop.Event{Kind: control[i%len(control)], Channel: "chan", DropID: "ctl"})
			if err != nil {
				t.Error(err)
				return
			}
			want = append(want, e.Seq)
		}
	}()
	wg.Wait()
	close(stop)
	<-ctlDone
	end, err := b.Publish(context.Background(), microdrop.Event{Kind: microdrop.DropClosed, Channel: "chan", DropID: "end"})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, end.Seq)

	var got []uint64
	prev := uint64(0)
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case e := <-stalled.C():
			if e.Seq <= prev {
				t.Fatalf("seq %d after %d", e.Seq, prev)
			}
			prev = e.Seq
			if e.Kind != microdrop.Claimed {
				got = append(got, e.Seq)
			}
			done = e.DropID == "end"
		case <-timeout:
			t.Fatalf("got %d of %d control events", len(got), len(want))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %d control events, want all %d in order", len(got), len(want))
	}
	if stalled.Dropped() == 0 {
		t.Fatal("the subscriber shed nothing: the burst did not overflow it")
	}
	t.Logf("%d claims, %d control events; the stalled subscriber shed %d claims", claimers*perClaimer, len(want), stalled.Dropped())
}

func TestForwardReplica(t *testing.T) {
	url := natstest.RunServer(t)
	a, b := open(t, url), open(t, url)
	stop, err := a.ServeReplica("host-1.a", func(_ context.Context, req []byte) []byte { return append([]byte("re:"), req...) })
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.ForwardReplica(context.Background(), "host-1.a", []byte("claim"))
	if err != nil || string(got) != "re:claim" {
		t.Fatalf("forward: %q, %v", got, err)
	}
	stop()
	if _, err := b.ForwardReplica(context.Background(), "host-1.a", []byte("claim")); !errors.Is(err, claims.ErrReplicaUnreachable) {
		t.Fatalf("forward to a stopped replica: %v, want ErrReplicaUnreachable", err)
	}
}

func TestParseURL(t *testing.T) {
	servers, o, err := mdnats.ParseURL("nats://10.0.0.1:4222?stream=S1&prefix=p1&max_age=1h")
	if err != nil || servers != "nats://10.0.0.1:4222" || o.Stream != "S1" || o.Prefix != "p1" || o.MaxAge != time.Hour {
		t.Fatalf("%q %+v %v", servers, o, err)
	}
	if _, _, err := mdnats.ParseURL("http://x"); err == nil {
		t.Fatal("http URL accepted")
	}
}
