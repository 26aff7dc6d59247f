package claims_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// windowFixture is a Service whose seeds come from a fixed stream, so the
// draw is the same on every run.
func windowFixture(t *testing.T, opts claims.Options) *fixture {
	t.Helper()
	f := &fixture{ledger: sqlite.MustOpen(t), bus: microdrop.NewMemoryBus(), clock: newClock()}
	f.events = f.bus.Subscribe(1 << 16)
	signer, err := claims.NewTokenSigner([]byte("current-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	f.signer = signer
	if opts.ClaimRate == 0 {
		opts.ClaimRate, opts.ClaimBurst = 1e6, 1e6
	}
	svc, err := claims.New(claims.Deps{Ledger: f.ledger, Bus: f.bus, Signer: signer, Now: f.clock.Now, Options: opts,
		Rand: rand.NewChaCha8([32]byte{'m', 'i', 'c', 'r', 'o', 'd', 'r', 'o', 'p'})})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	t.Cleanup(func() { svc.Close() })
	return f
}

// A window's worth of claims: 100,000 viewers claim inside a 6 s window
// (the clock moves 120 ms between every 2,000 of them) for 1,000 units.
// Nobody is answered before the window ends; then exactly the stock wins,
// every decision is dated at the window's end, the audit recomputes the
// draw from the revealed seed, and the second half of the arrivals wins as
// often as the first.
func TestWindowDrawOf100000Claims(t *testing.T) {
	const n, stock, chunk = 100_000, 1000, 2000
	f := windowFixture(t, claims.Options{CommitTimeout: 5 * time.Minute})
	ctx := context.Background()
	budget := claims.Duration(6 * time.Second)
	d := f.open(t, claims.OpenRequest{Stock: stock, Budget: &budget, By: "mod"})
	if d.Policy != claims.Window || d.Budget != 6*time.Second || d.BudgetBasis != "set by mod" || !d.WindowEndsAt().Equal(d.OpensAt.Add(6*time.Second)) {
		t.Fatalf("default drop: policy %s budget %s basis %q window end %s", d.Policy, d.Budget, d.BudgetBasis, d.WindowEndsAt())
	}
	user := func(i int) string { return fmt.Sprintf("v%06d", i) }
	queued := make([]claims.QueuedClaim, n)
	for i := 0; i < n; i++ {
		queued[i] = f.svc.QueueClaim(claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: user(i), Login: user(i)}})
		if (i+1)%chunk == 0 {
			// A viewer claiming twice is refused at once: when that answer
			// is back, the decider has taken every claim queued before it,
			// at the time the clock shows now.
			if _, err := f.claim(d.ID, user(i)); microdrop.ErrorReason(err) != claims.ReasonDuplicate {
				t.Fatalf("second claim of %s: %v, want duplicate", user(i), err)
			}
			f.clock.Advance(6 * time.Second * chunk / n)
		}
	}
	if got := f.clock.Now(); !got.Equal(d.WindowEndsAt()) {
		t.Fatalf("clock at %s, want the window's end %s", got, d.WindowEndsAt())
	}
	for i, q := range queued {
		if q.Decided() {
			t.Fatalf("claim %d was answered before the window ended", i)
		}
	}
	if got := f.svc.Waiting(d.ID); got != n {
		t.Fatalf("%d claims wait for the window, want %d", got, n)
	}

	wins := 0
	var early, late int // wins among the first and the second half of arrivals
	for i, q := range queued {
		res, err := q.Wait()
		switch {
		case err == nil && res.Outcome == claims.OutcomeWon && res.Token != "":
			wins++
			if i < n/2 {
				early++
			} else {
				late++
			}
		case microdrop.ErrorReason(err) == claims.ReasonLostDraw && microdrop.ErrorCode(err) == microdrop.ESOLDOUT:
			if !strings.Contains(microdrop.ErrorMessage(err), "first 6 s had the same chance") {
				t.Fatalf("loser told %q", microdrop.ErrorMessage(err))
			}
		default:
			t.Fatalf("claim %d: %+v %v", i, res, err)
		}
	}
	if wins != stock {
		t.Fatalf("%d winners, want exactly the stock %d", wins, stock)
	}
	// Each half holds 50,000 of the 100,000 claims; its wins are
	// hypergeometric with mean 500 and sd sqrt(1000·½·½·99000/99999) ≈ 15.7,
	// so early-late has sd ≈ 31.5. Allow five of them.
	sd := 2 * math.Sqrt(stock*0.25*float64(n-stock)/float64(n-1))
	if diff := math.Abs(float64(early - late)); diff > 5*sd {
		t.Fatalf("first half won %d, second half %d: differ by %.0f, more than 5 sd (%.1f)", early, late, diff, 5*sd)
	}
	t.Logf("first half of arrivals won %d, second half %d (5 sd = %.0f)", early, late, 5*sd)

	final := f.waitState(t, d.ID, claims.SoldOut)
	f.waitEnded(t, final)
	es, err := f.ledger.Entries(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n {
		t.Fatalf("%d entries in the ledger, want %d", len(es), n)
	}
	won := 0
	for _, e := range es {
		if e.Bucket != 0 || !e.DecidedAt.Equal(d.WindowEndsAt()) || !e.ArrivedAt.Before(d.WindowEndsAt()) {
			t.Fatalf("entry %+v: want bucket 0, arrived inside the window, decided at its end %s", e, d.WindowEndsAt())
		}
		if e.Outcome == claims.OutcomeWon {
			won++
		}
	}
	if won != stock {
		t.Fatalf("%d won entries in the ledger", won)
	}
	rep, err := f.svc.Audit(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Match || !rep.SeedVerified || rep.Recomputed != stock || rep.Awarded != stock || rep.BudgetMS != 6000 {
		t.Fatalf("audit: %+v", rep)
	}
}

// After the window, claims are decided as they arrive, behind the window's
// draw; a claim inside the window is answered only when the window ends.
func TestWindowThenArrivalOrder(t *testing.T) {
	f := windowFixture(t, claims.Options{})
	budget := claims.Duration(3 * time.Second)
	grace := claims.Duration(0)
	d := f.open(t, claims.OpenRequest{Stock: 3, Budget: &budget, Grace: &grace, Policy: claims.Window})
	if d.BucketWidth != 0 {
		t.Fatalf("a window drop without bucket_width goes on in arrival order, got width %s", d.BucketWidth)
	}
	early := make([]claims.QueuedClaim, 2)
	for i := range early {
		early[i] = f.svc.QueueClaim(claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: fmt.Sprintf("w%d", i)}})
	}
	if _, err := f.claim(d.ID, "w0"); microdrop.ErrorReason(err) != claims.ReasonDuplicate {
		t.Fatalf("duplicate inside the window: %v", err)
	}
	if early[0].Decided() || early[1].Decided() {
		t.Fatal("a window claim was answered before the window ended")
	}
	f.clock.Advance(3 * time.Second)
	// The first claim after the window: the window's draw comes first.
	res, err := f.claim(d.ID, "after1")
	if err != nil || res.Outcome != claims.OutcomeWon || res.Remaining != 0 {
		t.Fatalf("first claim after the window: %+v %v", res, err)
	}
	for i, q := range early {
		if res, err := q.Wait(); err != nil || res.Outcome != claims.OutcomeWon {
			t.Fatalf("window claim %d: %+v %v", i, res, err)
		}
	}
	if _, err := f.claim(d.ID, "after2"); microdrop.ErrorCode(err) != microdrop.ESOLDOUT {
		t.Fatalf("claim after the stock ran out: %v", err)
	}
	final := f.waitState(t, d.ID, claims.SoldOut)
	f.waitEnded(t, final)
	rep, err := f.svc.Audit(context.Background(), d.ID)
	if err != nil || !rep.Match {
		t.Fatalf("audit: %+v %v", rep, err)
	}
	es, err := f.ledger.Entries(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	// FairOrder, what a passed unit follows: the window first, then arrivals.
	final.FairOrder(es)
	if len(es) != 3 || es[2].UserID != "after1" || es[2].Bucket != 1 || es[0].Bucket != 0 || es[1].Bucket != 0 {
		t.Fatalf("fair order: %+v", es)
	}
}

// The budget is the measured cue-to-air delay plus the platforms' spread
// plus the reaction allowance; a delay measured on the platform playback
// already holds the fastest viewers' latency, so only the spread above it
// is added. A moderator's budget wins; other policies have none.
func TestWindowBudgetFromMeasuredDelay(t *testing.T) {
	f := windowFixture(t, claims.Options{Budget: claims.BudgetOptions{ProgrammeDelay: 500 * time.Millisecond, Reaction: 2 * time.Second,
		Platforms: []claims.PlatformLatency{{Platform: "twitch", Mode: "low_latency"}, {Platform: "youtube", Mode: "normal"}}}})
	ctx := context.Background()
	if b, basis := f.svc.Budget("streamer"); b != 32500*time.Millisecond || !strings.Contains(basis, "assumed") || !strings.Contains(basis, "youtube normal") {
		t.Fatalf("unmeasured budget %s (%s), want 0.5s + 30s + 2s", b, basis)
	}
	f.svc.LearnCueDelays(ctx, f.bus)
	cue := func(stream string, ms int64) {
		if _, err := f.bus.Publish(ctx, microdrop.Event{Kind: microdrop.CueAired, Channel: "streamer", DropID: "old",
			Cue: &microdrop.CueView{Stream: stream, DelayMS: ms}}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(want time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, basis := f.svc.Budget("streamer")
			if b == want {
				return basis
			}
			if time.Now().After(deadline) {
				t.Fatalf("budget %s (%s), want %s", b, basis, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	cue("live", 1200)
	if basis := wait(33200 * time.Millisecond); !strings.Contains(basis, "relay") {
		t.Fatalf("basis %q", basis)
	}
	cue("playback:live", 21000) // youtube normal spreads 15-30 s: 15 s on top
	if basis := wait(38 * time.Second); !strings.Contains(basis, "playback") {
		t.Fatalf("basis %q", basis)
	}
	d := f.open(t, claims.OpenRequest{Stock: 1})
	if d.Budget != 38*time.Second || d.Grace != 38*time.Second || d.View().BudgetMS != 38000 || !d.View().WindowEndsAt.Equal(d.OpensAt.Add(38*time.Second)) {
		t.Fatalf("drop budget %s grace %s view %+v", d.Budget, d.Grace, d.View())
	}
	got, err := f.ledger.Drop(ctx, d.ID)
	if err != nil || got.Budget != d.Budget || got.BudgetBasis != d.BudgetBasis {
		t.Fatalf("ledger keeps budget %v %q: %v", got.Budget, got.BudgetBasis, err)
	}
	if _, err := f.svc.CloseDrop(ctx, d.ID, "mod"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CloseDrop(ctx, d.ID, "mod"); err != nil {
		t.Fatal(err)
	}
	f.waitEnded(t, d)
	tooLong := claims.Duration(3 * time.Minute)
	for _, req := range []claims.OpenRequest{
		{Channel: "streamer", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute), Budget: &tooLong},
		{Channel: "streamer", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Budget: &tooLong},
	} {
		if _, err := f.svc.OpenDrop(ctx, req); microdrop.ErrorCode(err) != microdrop.EINVALID {
			t.Fatalf("open %+v: %v, want invalid", req, err)
		}
	}
	if _, err := claims.New(claims.Deps{Ledger: f.ledger, Bus: f.bus, Signer: f.signer,
		Options: claims.Options{Budget: claims.BudgetOptions{Platforms: []claims.PlatformLatency{{Platform: "twitch", Mode: "turbo"}}}}}); err == nil {
		t.Fatal("an unknown latency mode was accepted")
	}
}
