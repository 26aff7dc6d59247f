package claims_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// clock is a test clock: time moves only when the test says.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc    *claims.Service
	ledger *sqlite.Ledger
	bus    *microdrop.MemoryBus
	events *microdrop.Subscription
	clock  *clock
	signer *claims.TokenSigner
}

func newFixture(t *testing.T, opts claims.Options) *fixture {
	t.Helper()
	f := &fixture{ledger: sqlite.MustOpen(t), bus: microdrop.NewMemoryBus(), clock: newClock()}
	f.events = f.bus.Subscribe(1 << 16)
	f.start(t, opts)
	return f
}

func (f *fixture) start(t *testing.T, opts claims.Options) {
	t.Helper()
	signer, err := claims.NewTokenSigner([]byte("current-key-0123456789"), []byte("previous-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	f.signer = signer
	if opts.ClaimRate == 0 {
		opts.ClaimRate, opts.ClaimBurst = 1000, 1000
	}
	receipts, err := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := claims.New(claims.Deps{Ledger: f.ledger, Bus: f.bus, Signer: signer, Receipts: receipts, Now: f.clock.Now, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	t.Cleanup(func() { svc.Close() })
}

func (f *fixture) open(t *testing.T, req claims.OpenRequest) *claims.Drop {
	t.Helper()
	if req.Channel == "" {
		req.Channel = "streamer"
	}
	if req.SKU == "" {
		req.SKU = "hoodie"
	}
	if req.Duration == 0 {
		req.Duration = claims.Duration(90 * time.Second)
	}
	d, err := f.svc.OpenDrop(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) claim(id, user string) (claims.ClaimResult, error) {
	return f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: id, Viewer: claims.Viewer{UserID: user, Login: user}})
}

// waitState waits (bounded) for the decider to reach a state after the clock moved.
func (f *fixture) waitState(t *testing.T, id string, want claims.State) *claims.Drop {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := f.svc.Drop(context.Background(), id)
		if err == nil && d.State == want {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop %s never reached %s (now %v, err %v)", id, want, d.State, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEnded waits (bounded) until the drop's decider has finished and
// everything it decided is in the ledger.
func (f *fixture) waitEnded(t *testing.T, d *claims.Drop) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, live := f.svc.Live(d.Channel); !live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop %s still live", d.ID)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) waitWaiting(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.svc.Waiting(id) != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting claims = %d, want %d", f.svc.Waiting(id), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func reason(err error) string { return microdrop.ErrorReason(err) }

func TestFCFSSellsOutAndRejectsDuplicates(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := f.open(t, claims.OpenRequest{Stock: 2, Policy: claims.FCFS, Title: "Tour hoodie", PriceMinor: 4500, Currency: "eur"})
	if d.State != claims.Open || d.Currency != "EUR" || d.SeedHash != claims.SeedHashOf(d.Seed) || d.CueCode == 0 {
		t.Fatalf("opened drop = %+v", d)
	}
	r, err := f.claim(d.ID, "alice")
	if err != nil || r.Outcome != claims.OutcomeWon || r.Unit != 1 || len(r.Token) != claims.TokenLength || r.Remaining != 1 {
		t.Fatalf("first claim = %+v, %v", r, err)
	}
	if _, err := f.claim(d.ID, "alice"); reason(err) != claims.ReasonDuplicate || microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("duplicate claim: %v", err)
	}
	if _, err := f.claim(d.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.claim(d.ID, "carol"); reason(err) != claims.ReasonSoldOut || microdrop.ErrorCode(err) != microdrop.ESOLDOUT {
		t.Fatalf("claim after sell-out: %v", err)
	}
	got := f.waitState(t, d.ID, claims.SoldOut)
	if got.Remaining != 0 || got.View().Seed == "" {
		t.Fatalf("sold out drop = %+v", got)
	}
	kinds := map[microdrop.Kind]int{}
	timeout := time.After(2 * time.Second)
	for kinds[microdrop.SoldOut] == 0 {
		select {
		case e := <-f.events.C():
			kinds[e.Kind]++
		case <-timeout:
			t.Fatalf("events so far %v, no SoldOut", kinds)
		}
	}
	if kinds[microdrop.DropOpened] != 1 || kinds[microdrop.Claimed] != 2 {
		t.Fatalf("events = %v", kinds)
	}
	rep, err := f.svc.Audit(context.Background(), d.ID)
	if err != nil || !rep.Match || rep.Awarded != 2 || !rep.SeedVerified {
		t.Fatalf("audit = %+v, %v", rep, err)
	}
}

func TestManyGoroutinesClaimTheLastUnits(t *testing.T) {
	for _, policy := range []claims.Policy{claims.FCFS, claims.Bucketed} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t, claims.Options{})
			const stock, users, tries = 25, 200, 3
			d := f.open(t, claims.OpenRequest{Stock: stock, Policy: policy, Cap: 2})
			var won sync.Map
			var wins atomic.Int32
			var wg sync.WaitGroup
			for u := 0; u < users; u++ {
				wg.Add(1)
				go func(u int) {
					defer wg.Done()
					for i := 0; i < tries; i++ {
						r, err := f.claim(d.ID, fmt.Sprintf("user%d", u))
						if err == nil {
							wins.Add(1)
							n, _ := won.LoadOrStore(r.Token, 0)
							if n.(int) != 0 {
								t.Errorf("token %s handed out twice", r.Token)
							}
						} else if c := microdrop.ErrorCode(err); c != microdrop.ESOLDOUT && c != microdrop.ECONFLICT {
							t.Errorf("unexpected error %v", err)
						}
					}
				}(u)
				if policy == claims.Bucketed && u == users/2 {
					f.clock.Advance(300 * time.Millisecond) // a second bucket
				}
			}
			// Bucketed claims wait for their bucket to end.
			if policy == claims.Bucketed {
				go func() {
					for i := 0; i < 100 && wins.Load() < stock; i++ {
						time.Sleep(20 * time.Millisecond)
						f.clock.Advance(300 * time.Millisecond)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != stock {
				t.Fatalf("%d wins acknowledged, stock %d", wins.Load(), stock)
			}
			es, err := f.ledger.Entries(context.Background(), d.ID)
			if err != nil {
				t.Fatal(err)
			}
			perUser := map[string]int{}
			n := 0
			for _, e := range es {
				if e.Outcome == claims.OutcomeWon {
					n++
					perUser[e.UserID]++
					if perUser[e.UserID] > 2 {
						t.Fatalf("user %s over cap", e.UserID)
					}
				}
			}
			if n != stock {
				t.Fatalf("ledger has %d wins, stock %d", n, stock)
			}
			ld, _ := f.ledger.Drop(context.Background(), d.ID)
			if ld.Remaining != 0 {
				t.Fatalf("ledger remaining %d", ld.Remaining)
			}
			rep, _ := f.svc.Audit(context.Background(), d.ID)
			if !rep.Match {
				t.Fatalf("audit: %+v", rep)
			}
		})
	}
}

// claimAsync starts a claim and returns where its answer will arrive.
func (f *fixture) claimAsync(id, user string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := f.claim(id, user)
		ch <- err
	}()
	return ch
}

func TestBucketedSameBucketIsADrawAndEarlierBucketWins(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := f.open(t, claims.OpenRequest{Stock: 3, Policy: claims.Bucketed, BucketWidth: claims.Duration(250 * time.Millisecond)})

	// Bucket 0: two claims. Bucket 1: four claims for the last unit.
	first := []<-chan error{f.claimAsync(d.ID, "early1"), f.claimAsync(d.ID, "early2")}
	f.waitWaiting(t, d.ID, 2)
	f.clock.Advance(260 * time.Millisecond)
	for _, ch := range first {
		if err := <-ch; err != nil {
			t.Fatalf("bucket 0 claim lost: %v", err)
		}
	}
	var late []<-chan error
	for i := 0; i < 4; i++ {
		late = append(late, f.claimAsync(d.ID, fmt.Sprintf("late%d", i)))
	}
	f.waitWaiting(t, d.ID, 4)
	// Nothing is decided before the bucket ends, whatever the arrival order.
	time.Sleep(60 * time.Millisecond)
	if f.svc.Waiting(d.ID) != 4 {
		t.Fatal("bucket decided before it ended")
	}
	f.clock.Advance(250 * time.Millisecond)
	wins, lost := 0, 0
	for _, ch := range late {
		switch err := <-ch; {
		case err == nil:
			wins++
		case reason(err) == claims.ReasonLostDraw:
			lost++
		default:
			t.Fatalf("late claim: %v", err)
		}
	}
	if wins != 1 || lost != 3 {
		t.Fatalf("bucket 1: %d won, %d lost the draw; want 1 and 3", wins, lost)
	}
	f.waitState(t, d.ID, claims.SoldOut)
	rep, err := f.svc.Audit(context.Background(), d.ID)
	if err != nil || !rep.Match || rep.Entries != 6 || rep.Awarded != 3 {
		t.Fatalf("audit = %+v, %v", rep, err)
	}
	// The audit notices a ledger that disagrees with the seed.
	es, _ := f.ledger.Entries(context.Background(), d.ID)
	dr, _ := f.ledger.Drop(context.Background(), d.ID)
	for i := range es {
		if es[i].Bucket == 1 {
			if es[i].Outcome == claims.OutcomeWon {
				es[i].Outcome = claims.OutcomeLost
			} else {
				es[i].Outcome = claims.OutcomeWon
				break
			}
		}
	}
	if bad := claims.Audit(dr, es); bad.Match {
		t.Fatalf("audit of tampered entries matched: %+v", bad)
	}
}

func TestGraceAcceptsLateViewersThenCloses(t *testing.T) {
	f := newFixture(t, claims.Options{})
	grace := claims.Duration(5 * time.Second)
	d := f.open(t, claims.OpenRequest{Stock: 10, Policy: claims.FCFS, Duration: claims.Duration(30 * time.Second), Grace: &grace})
	f.clock.Advance(32 * time.Second) // window over, inside grace
	if r, err := f.claim(d.ID, "late_viewer"); err != nil || r.Outcome != claims.OutcomeWon {
		t.Fatalf("claim inside grace: %+v, %v", r, err)
	}
	f.clock.Advance(4 * time.Second) // past close + grace
	f.waitState(t, d.ID, claims.Closed)
	if _, err := f.claim(d.ID, "too_late"); reason(err) != claims.ReasonClosed {
		t.Fatalf("claim after grace: %v", err)
	}
	if _, err := f.svc.CloseDrop(context.Background(), d.ID, "mod"); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("closing a closed drop: %v", err)
	}
	if _, err := f.svc.ExtendDrop(context.Background(), d.ID, time.Minute, "mod"); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("extending a closed drop: %v", err)
	}
}

func TestRaffleDrawsAtCloseAndAudits(t *testing.T) {
	f := newFixture(t, claims.Options{})
	grace := claims.Duration(0)
	d := f.open(t, claims.OpenRequest{Stock: 3, Policy: claims.Raffle, Grace: &grace, Duration: claims.Duration(time.Minute)})
	for i := 0; i < 10; i++ {
		r, err := f.claim(d.ID, fmt.Sprintf("fan%d", i))
		if err != nil || r.Outcome != claims.OutcomeEntered || r.Token != "" {
			t.Fatalf("raffle entry = %+v, %v", r, err)
		}
	}
	if _, err := f.claim(d.ID, "fan0"); reason(err) != claims.ReasonDuplicate {
		t.Fatalf("second entry: %v", err)
	}
	f.clock.Advance(time.Minute)
	f.waitState(t, d.ID, claims.SoldOut)
	f.waitEnded(t, d)
	winners := 0
	for i := 0; i < 10; i++ {
		ps, err := f.svc.Status(context.Background(), d.ID, fmt.Sprintf("fan%d", i))
		if err != nil || len(ps) != 1 {
			t.Fatalf("status: %+v, %v", ps, err)
		}
		if ps[0].Outcome == claims.OutcomeWon {
			winners++
			if _, err := f.svc.Redeem(context.Background(), ps[0].Token); err != nil {
				t.Fatalf("redeem raffle win: %v", err)
			}
		}
	}
	if winners != 3 {
		t.Fatalf("%d raffle winners, want 3", winners)
	}
	rep, err := f.svc.Audit(context.Background(), d.ID)
	if err != nil || !rep.Match {
		t.Fatalf("audit = %+v, %v", rep, err)
	}
}

func TestProgressiveCapsAndCodes(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := f.open(t, claims.OpenRequest{Stock: 100, Policy: claims.FCFS, Cap: 2, ClaimCode: "moon42", Stages: []claims.Stage{
		{Offset: 0, Cap: 1, Eligible: claims.Eligibility{Subscribers: true, MinAccountAgeDays: 30}},
		{Offset: claims.Duration(10 * time.Second), Cap: 2, Eligible: claims.Eligibility{Everyone: true}},
	}})
	ctx := context.Background()
	claim := func(v claims.Viewer, code string) error {
		_, err := f.svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: v, Code: code})
		return err
	}
	sub := claims.Viewer{UserID: "sub1", Subscriber: true}
	old := claims.Viewer{UserID: "old1", AccountCreated: f.clock.Now().Add(-90 * 24 * time.Hour)}
	fresh := claims.Viewer{UserID: "new1", AccountCreated: f.clock.Now().Add(-2 * 24 * time.Hour)}
	if err := claim(sub, ""); reason(err) != claims.ReasonWrongCode {
		t.Fatalf("missing code: %v", err)
	}
	if err := claim(sub, "nope"); reason(err) != claims.ReasonWrongCode {
		t.Fatalf("wrong code: %v", err)
	}
	if err := claim(sub, "MOON42"); err != nil {
		t.Fatalf("subscriber in stage 1: %v", err)
	}
	if err := claim(old, "moon42"); err != nil {
		t.Fatalf("old account in stage 1: %v", err)
	}
	if err := claim(fresh, "moon42"); reason(err) != claims.ReasonNotEligible || microdrop.ErrorCode(err) != microdrop.EFORBIDDEN {
		t.Fatalf("new account in stage 1: %v", err)
	}
	if err := claim(sub, "moon42"); reason(err) != claims.ReasonDuplicate {
		t.Fatalf("second unit in stage 1 (cap 1): %v", err)
	}
	f.clock.Advance(10 * time.Second)
	if err := claim(fresh, "moon42"); err != nil {
		t.Fatalf("new account in stage 2: %v", err)
	}
	if err := claim(sub, "moon42"); err != nil {
		t.Fatalf("second unit in stage 2 (cap 2): %v", err)
	}
	if err := claim(sub, "moon42"); reason(err) != claims.ReasonOverCap {
		t.Fatalf("third unit: %v", err)
	}
}

func TestRateLimitCountsRejections(t *testing.T) {
	f := newFixture(t, claims.Options{ClaimRate: 0.001, ClaimBurst: 2})
	d := f.open(t, claims.OpenRequest{Stock: 5, Policy: claims.FCFS})
	f.claim(d.ID, "bot")
	f.claim(d.ID, "bot")
	if _, err := f.claim(d.ID, "bot"); reason(err) != claims.ReasonRateLimited || microdrop.ErrorCode(err) != microdrop.ERATELIMIT {
		t.Fatalf("third attempt: %v", err)
	}
	counts := map[string]uint64{}
	for _, c := range f.svc.Metrics().Rejections() {
		counts[c.Name] = c.Count
	}
	if counts[claims.ReasonRateLimited] != 1 || counts[claims.ReasonDuplicate] != 1 {
		t.Fatalf("rejections by reason = %v", counts)
	}
}

func TestRedeemTokens(t *testing.T) {
	f := newFixture(t, claims.Options{TokenTTL: time.Hour})
	d := f.open(t, claims.OpenRequest{Stock: 5, Policy: claims.FCFS})
	r1, _ := f.claim(d.ID, "a")
	r2, _ := f.claim(d.ID, "b")
	ctx := context.Background()
	red, err := f.svc.Redeem(ctx, r1.Token)
	if err != nil || red.UserID != "a" || red.DropID != d.ID {
		t.Fatalf("redeem = %+v, %v", red, err)
	}
	if _, err := f.svc.Redeem(ctx, r1.Token); !errors.Is(err, claims.ErrTokenUsed) {
		t.Fatalf("second redeem: %v", err)
	}
	forged := []byte(r2.Token)
	if forged[3] == 'A' {
		forged[3] = 'B'
	} else {
		forged[3] = 'A'
	}
	if _, err := f.svc.Redeem(ctx, string(forged)); !errors.Is(err, claims.ErrTokenForged) {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := f.svc.Redeem(ctx, "short"); !errors.Is(err, claims.ErrTokenMalformed) {
		t.Fatalf("malformed token: %v", err)
	}
	other, _ := claims.NewTokenSigner([]byte("current-key-0123456789"))
	if _, err := f.svc.Redeem(ctx, other.New()); !errors.Is(err, claims.ErrTokenUnknown) {
		t.Fatalf("well-signed but never issued: %v", err)
	}
	f.clock.Advance(2 * time.Hour)
	if _, err := f.svc.Redeem(ctx, r2.Token); !errors.Is(err, claims.ErrTokenExpired) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestConcurrentRedeemExactlyOnce(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := f.open(t, claims.OpenRequest{Stock: 1, Policy: claims.FCFS})
	r, err := f.claim(d.ID, "a")
	if err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.svc.Redeem(context.Background(), r.Token); err == nil {
				ok.Add(1)
			} else if !errors.Is(err, claims.ErrTokenUsed) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d desks redeemed the same token", ok.Load())
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("old-key-0123456789abcd"), []byte("new-key-0123456789abcd")
	before, _ := claims.NewTokenSigner(oldKey)
	after, _ := claims.NewTokenSigner(newKey, oldKey)
	tok := before.New()
	if _, err := after.Verify(tok); err != nil {
		t.Fatalf("token of the previous key refused: %v", err)
	}
	dropped, _ := claims.NewTokenSigner(newKey)
	if _, err := dropped.Verify(tok); !errors.Is(err, claims.ErrTokenForged) {
		t.Fatalf("token of a retired key: %v", err)
	}
	if canon, err := after.Verify(tok[:4] + "-" + tok[4:8] + " " + tok[8:]); err != nil || canon != tok {
		t.Fatalf("grouped token: %q, %v", canon, err)
	}
}

func TestTransitionsAndValidation(t *testing.T) {
	f := newFixture(t, claims.Options{DefaultGrace: 3 * time.Second})
	ctx := context.Background()
	bad := []claims.OpenRequest{
		{Channel: "Bad Channel!", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute)},
		{Channel: "c", SKU: "", Stock: 1, Duration: claims.Duration(time.Minute)},
		{Channel: "c", SKU: "x", Stock: 0, Duration: claims.Duration(time.Minute)},
		{Channel: "c", SKU: "x", Stock: 1, Duration: 0},
		{Channel: "c", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute), Policy: "lottery"},
		{Channel: "c", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute), Currency: "euro"},
		{Channel: "c", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute), ClaimCode: "a b"},
		{Channel: "c", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute), Stages: []claims.Stage{{Offset: claims.Duration(time.Second), Cap: 1, Eligible: claims.Eligibility{Everyone: true}}}},
	}
	for i, req := range bad {
		if _, err := f.svc.OpenDrop(ctx, req); microdrop.ErrorCode(err) != microdrop.EINVALID {
			t.Errorf("bad request %d: %v, want invalid", i, err)
		}
	}
	if ds, _ := f.ledger.Drops(ctx, claims.DropFilter{}); len(ds) != 0 {
		t.Fatalf("bad requests created %d drops", len(ds))
	}
	d := f.open(t, claims.OpenRequest{Stock: 5, Policy: claims.FCFS, Duration: claims.Duration(time.Minute)})
	if _, err := f.svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "x", Stock: 1, Duration: claims.Duration(time.Minute)}); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("second live drop in a channel: %v", err)
	}
	ext, err := f.svc.ExtendDrop(ctx, d.ID, 30*time.Second, "mod")
	if err != nil || !ext.ClosesAt.Equal(d.ClosesAt.Add(30*time.Second)) {
		t.Fatalf("extend: %v, %v", ext, err)
	}
	closed, err := f.svc.CloseDrop(ctx, d.ID, "mod")
	if err != nil || closed.State != claims.Grace {
		t.Fatalf("close with grace: %+v, %v", closed, err)
	}
	if _, err := f.claim(d.ID, "late"); err != nil {
		t.Fatalf("claim during grace after close: %v", err)
	}
	closed, err = f.svc.CloseDrop(ctx, d.ID, "mod")
	if err != nil || closed.State != claims.Closed {
		t.Fatalf("second close ends grace: %+v, %v", closed, err)
	}
	if _, err := f.claim(d.ID, "later"); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("claim after close: %v", err)
	}
	if _, err := f.svc.CloseDrop(ctx, "nosuch", "mod"); microdrop.ErrorCode(err) != microdrop.ENOTFOUND {
		t.Fatalf("close unknown: %v", err)
	}
}

func TestRestartResumesLiveDrop(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := f.open(t, claims.OpenRequest{Stock: 3, Policy: claims.FCFS, Cap: 1})
	if _, err := f.claim(d.ID, "a"); err != nil {
		t.Fatal(err)
	}
	f.svc.Close()
	f.start(t, claims.Options{})
	got, err := f.svc.Drop(context.Background(), d.ID)
	if err != nil || got.Remaining != 2 || got.State != claims.Open {
		t.Fatalf("resumed drop = %+v, %v", got, err)
	}
	if _, err := f.claim(d.ID, "a"); reason(err) != claims.ReasonDuplicate {
		t.Fatalf("a winner claims again after restart: %v", err)
	}
	if _, err := f.claim(d.ID, "b"); err != nil {
		t.Fatal(err)
	}
}

func TestTokensAreUniqueAndOrdered(t *testing.T) {
	s, _ := claims.NewTokenSigner([]byte("order-key-0123456789"))
	prev := ""
	seen := map[string]bool{}
	for i := 0; i < 300000; i++ { // more than one second's counter range
		tok := s.New()
		if seen[tok] {
			t.Fatalf("token %s issued twice", tok)
		}
		seen[tok] = true
		if _, err := s.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if tok[:10] < prev[:min(10, len(prev))] {
			t.Fatalf("token ids went backwards: %s after %s", tok, prev)
		}
		prev = tok
	}
}

func TestGraceFollowsMeasuredCueDelay(t *testing.T) {
	f := newFixture(t, claims.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.svc.FollowCueDelays(ctx, f.bus, time.Second)
	grace := claims.Duration(2 * time.Second)
	d := f.open(t, claims.OpenRequest{Stock: 5, Policy: claims.FCFS, Grace: &grace})
	publish := func(delay time.Duration) {
		f.bus.Publish(ctx, microdrop.Event{Kind: microdrop.CueAired, Channel: d.Channel, DropID: d.ID,
			Cue: &microdrop.CueView{Code: d.CueCode, Stream: "live", DelayMS: delay.Milliseconds()}})
	}
	waitGrace := func(want time.Duration) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := f.svc.Drop(ctx, d.ID)
			if got.Grace == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("grace = %v, want %v", got.Grace, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	publish(6500 * time.Millisecond)
	waitGrace(7500 * time.Millisecond)
	publish(500 * time.Millisecond) // a shorter delay never shrinks the promise
	publish(7 * time.Second)
	waitGrace(8 * time.Second)
	// The window is over but the measured delay still counts late viewers.
	f.clock.Advance(90*time.Second + 7*time.Second)
	if _, err := f.claim(d.ID, "late_by_seven_seconds"); err != nil {
		t.Fatalf("claim inside the measured grace: %v", err)
	}
	// And it survived in the ledger.
	f.waitState(t, d.ID, claims.Grace)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ld, _ := f.ledger.Drop(ctx, d.ID)
		if ld.Grace == 8*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger grace = %v", ld.Grace)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
