package claims_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// stallLedger is the real SQLite ledger behind a switch that makes Commit
// block until released or until its ctx ends, as a database whose disk or
// network has stopped answering does.
type stallLedger struct {
	claims.Ledger
	mu      sync.Mutex
	gate    chan struct{} // nil: commits pass; open: they wait
	waiting chan struct{} // gets a value each time a commit starts waiting
}

func (l *stallLedger) stall() {
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
}

func (l *stallLedger) release() {
	l.mu.Lock()
	if l.gate != nil {
		close(l.gate)
		l.gate = nil
	}
	l.mu.Unlock()
}

func (l *stallLedger) Commit(ctx context.Context, b claims.Batch) error {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case l.waiting <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.Ledger.Commit(ctx, b)
}

// failLedger is the real SQLite ledger whose commits fail while failing is
// set, as a database refusing writes (full disk, read-only failover) does.
type failLedger struct {
	claims.Ledger
	mu      sync.Mutex
	failing bool
	refused int
}

var errDiskFull = errors.New("disk full")

func (l *failLedger) setFailing(on bool) {
	l.mu.Lock()
	l.failing = on
	l.mu.Unlock()
}

func (l *failLedger) Commit(ctx context.Context, b claims.Batch) error {
	l.mu.Lock()
	failing := l.failing
	if failing {
		l.refused++
	}
	l.mu.Unlock()
	if failing {
		return errDiskFull
	}
	return l.Ledger.Commit(ctx, b)
}

type ledgerFixture struct {
	svc *claims.Service
	sql *sqlite.Ledger
	reg *prometheus.Registry
	bus *microdrop.MemoryBus
}

func newLedgerFixture(t *testing.T, wrap func(claims.Ledger) claims.Ledger, opts claims.Options) *ledgerFixture {
	t.Helper()
	f := &ledgerFixture{sql: sqlite.MustOpen(t), reg: prometheus.NewRegistry(), bus: microdrop.NewMemoryBus()}
	signer, err := claims.NewTokenSigner([]byte("current-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	opts.ClaimRate, opts.ClaimBurst = 1000, 1000
	svc, err := claims.New(claims.Deps{Ledger: wrap(f.sql), Bus: f.bus, Signer: signer, Metrics: claims.NewMetrics(f.reg), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	t.Cleanup(func() { _ = svc.Close() })
	return f
}

func (f *ledgerFixture) open(t *testing.T, channel string) *claims.Drop {
	t.Helper()
	d, err := f.svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: channel, SKU: "hoodie", Stock: 5,
		Duration: claims.Duration(time.Hour), Policy: claims.FCFS})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *ledgerFixture) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// within runs fn and fails the test if it has not returned after limit: the
// limit only catches a hang, it is no claim about speed.
func within[T any](t *testing.T, limit time.Duration, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(limit):
		t.Fatalf("%s still blocked after %s", what, limit)
	}
	var zero T
	return zero
}

// A stalled ledger fails claims with a retryable error once the commit
// timeout passes, instead of pinning every caller; the edge answers 503,
// health says why, the timeout is counted, and the decider recovers once
// the ledger answers again.
func TestStalledLedgerFailsClaimsWithinTheBound(t *testing.T) {
	sl := &stallLedger{waiting: make(chan struct{}, 1)}
	f := newLedgerFixture(t, func(l claims.Ledger) claims.Ledger { sl.Ledger = l; return sl }, claims.Options{CommitTimeout: 100 * time.Millisecond})
	d := f.open(t, "streamer")
	if f.svc.Health() != nil {
		t.Fatalf("healthy service reports %v", f.svc.Health())
	}
	sl.stall()
	type result struct {
		res claims.ClaimResult
		err error
	}
	r := within(t, 30*time.Second, "a claim on a stalled ledger", func() result {
		res, err := f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "alice"}})
		return result{res, err}
	})
	if r.err == nil || microdrop.ErrorCode(r.err) != microdrop.EINTERNAL || microdrop.ErrorReason(r.err) != claims.ReasonUnavailable ||
		!strings.Contains(microdrop.ErrorMessage(r.err), "did not answer in time") {
		t.Fatalf("claim on a stalled ledger: %+v, %v; want an unavailable error saying the ledger did not answer", r.res, r.err)
	}
	rec := httptest.NewRecorder()
	microdrop.WriteError(rec, r.err)
	if rec.Code != 503 {
		t.Fatalf("the edge answers %d, want 503", rec.Code)
	}
	herr := f.svc.Health()
	if !errors.Is(herr, claims.ErrDegraded) || !strings.Contains(herr.Error(), d.ID) || !strings.Contains(herr.Error(), "timed out") {
		t.Fatalf("health: %v, want degraded naming the drop and the timeout", herr)
	}
	if n := f.counter(t, "microdrop_ledger_commit_timeouts_total"); n < 1 {
		t.Fatalf("commit timeouts counted: %v", n)
	}
	if n := f.counter(t, "microdrop_ledger_commit_failures_total"); n < 1 {
		t.Fatalf("commit failures counted: %v", n)
	}

	sl.release()
	r = within(t, 30*time.Second, "a claim after the ledger recovered", func() result {
		res, err := f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "alice"}})
		return result{res, err}
	})
	if r.err != nil || r.res.Outcome != claims.OutcomeWon {
		t.Fatalf("alice again after recovery: %+v, %v", r.res, r.err)
	}
	if err := f.svc.Health(); err != nil {
		t.Fatalf("health after a successful commit: %v", err)
	}
	es, err := f.sql.Entries(context.Background(), d.ID)
	if err != nil || len(es) != 1 || es[0].Unit != 1 {
		t.Fatalf("ledger entries: %+v, %v; want alice's one unit, the refused claim never written", es, err)
	}
	if got, _ := f.svc.Drop(context.Background(), d.ID); got.Remaining != 4 {
		t.Fatalf("remaining %d after one recorded win, want 4", got.Remaining)
	}

	// Close does not wait on a stalled ledger beyond the bound either.
	sl.stall()
	defer sl.release()
	go func() {
		_, _ = f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "bob"}})
	}()
	<-sl.waiting
	within(t, 30*time.Second, "Close on a stalled ledger", func() error { return f.svc.Close() })
}

// A claim waiting for its decision returns when its ctx ends, saying the
// decision is still on its way; the decision, once the ledger takes it, is
// the viewer's to look up.
func TestClaimWaitingForItsReplyHonoursCtx(t *testing.T) {
	sl := &stallLedger{waiting: make(chan struct{}, 1)}
	f := newLedgerFixture(t, func(l claims.Ledger) claims.Ledger { sl.Ledger = l; return sl }, claims.Options{CommitTimeout: time.Hour})
	d := f.open(t, "streamer")
	sl.stall()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := within(t, 30*time.Second, "a claim whose ctx ended", func() error {
		_, err := f.svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "alice"}})
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) || microdrop.ErrorReason(err) != claims.ReasonUnavailable ||
		!strings.Contains(microdrop.ErrorMessage(err), "still being recorded") {
		t.Fatalf("claim past its ctx: %v; want the deadline, unavailable, still being recorded", err)
	}
	sl.release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := f.svc.Status(context.Background(), d.ID, "alice")
		if err == nil && len(ps) == 1 && ps[0].Outcome == claims.OutcomeWon && ps[0].Token != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's decision never reached the ledger: %+v, %v", ps, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A drop whose final commit fails is not left live in the ledger with no
// decider: it keeps its channel, health says so, and once the ledger takes
// writes again the drop is finished from the ledger as it was closed.
func TestFailedFinalCommitIsRetriedUntilTheDropIsFinal(t *testing.T) {
	fl := &failLedger{}
	f := newLedgerFixture(t, func(l claims.Ledger) claims.Ledger { fl.Ledger = l; return fl }, claims.Options{FinalRetryBackoff: 5 * time.Millisecond})
	d := f.open(t, "streamer")
	if res, err := f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "alice"}}); err != nil || res.Outcome != claims.OutcomeWon {
		t.Fatalf("claim: %+v, %v", res, err)
	}
	fl.setFailing(true)
	if _, err := f.svc.CloseDrop(context.Background(), d.ID, "mod"); err != nil {
		t.Fatal(err)
	}
	// Wait for the final commit and a retry to be refused.
	deadline := time.Now().Add(10 * time.Second)
	for f.counter(t, "microdrop_drop_final_retries_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the failed final commit was never retried")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if herr := f.svc.Health(); !errors.Is(herr, claims.ErrDegraded) || !strings.Contains(herr.Error(), d.ID) {
		t.Fatalf("health while the final state is unrecorded: %v", herr)
	}
	if n := f.counter(t, "microdrop_ledger_commit_failures_total"); n < 1 {
		t.Fatalf("commit failures counted: %v", n)
	}
	if got, err := f.sql.Drop(context.Background(), d.ID); err != nil || got.State.Final() {
		t.Fatalf("ledger drop while commits fail: %+v, %v", got, err)
	}
	if _, err := f.svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: "streamer", SKU: "cap", Stock: 1, Duration: claims.Duration(time.Minute)}); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("a second drop in the channel while the first is unfinished: %v, want conflict", err)
	}

	fl.setFailing(false)
	deadline = time.Now().Add(10 * time.Second)
	for {
		got, err := f.sql.Drop(context.Background(), d.ID)
		if err == nil && got.State == claims.Closed {
			if got.CloseReason != "closed by mod" || got.Remaining != 4 {
				t.Fatalf("final drop in the ledger: %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drop never became final in the ledger: %+v, %v", got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		if _, live := f.svc.Live("streamer"); !live && f.svc.Health() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after recovery: live drop still registered or health %v", f.svc.Health())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "bob"}}); microdrop.ErrorReason(err) != claims.ReasonClosed {
		t.Fatalf("claim on the finished drop: %v, want closed", err)
	}
}

// Close stops the cue-delay follower it did not start itself.
func TestCloseStopsFollowCueDelays(t *testing.T) {
	f := newLedgerFixture(t, func(l claims.Ledger) claims.Ledger { return l }, claims.Options{})
	before, _, _ := f.bus.Stats()
	f.svc.FollowCueDelays(context.Background(), f.bus, time.Second)
	if n, _, _ := f.bus.Stats(); n != before+1 {
		t.Fatalf("subscribers %d after FollowCueDelays, want %d", n, before+1)
	}
	within(t, 30*time.Second, "Close", func() error { return f.svc.Close() })
	if n, _, _ := f.bus.Stats(); n != before {
		t.Fatalf("subscribers %d after Close, want %d: the follower outlived its service", n, before)
	}
}
