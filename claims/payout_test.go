package claims_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

func TestFeeMath(t *testing.T) {
	for _, c := range []struct {
		fee    claims.Fee
		amount int64
		want   int64
	}{
		{claims.Fee{}, 4500, 0},
		{claims.Fee{BasisPoints: 500}, 4500, 225},
		{claims.Fee{BasisPoints: 250}, 99, 2},    // 2.475 rounds down
		{claims.Fee{BasisPoints: 250}, 100, 3},   // 2.5 rounds half up
		{claims.Fee{BasisPoints: 333}, 1000, 33}, // 33.3
		{claims.Fee{FixedMinor: 30}, 4500, 30},
		{claims.Fee{BasisPoints: 290, FixedMinor: 30}, 4500, 161}, // 130.5 -> 131, + 30
		{claims.Fee{FixedMinor: 500}, 300, 300},                   // never more than the amount
		{claims.Fee{BasisPoints: 5000}, 1, 1},                     // 0.5 rounds up
		{claims.Fee{BasisPoints: 100}, 0, 0},
	} {
		if got := c.fee.Of(c.amount); got != c.want {
			t.Errorf("%+v of %d = %d, want %d", c.fee, c.amount, got, c.want)
		}
	}
	for _, bad := range []claims.Fee{{BasisPoints: -1}, {BasisPoints: 5001}, {FixedMinor: -1}} {
		if bad.Validate() == nil {
			t.Errorf("fee %+v validated", bad)
		}
	}
}

// paidHold opens a one-unit priced drop for creator, lets user win it and
// pay it from the wallet.
func (f *fixture) paidHold(t *testing.T, creator, run, user string, price int64) (*claims.Drop, claims.Hold) {
	t.Helper()
	ctx := context.Background()
	d := f.open(t, claims.OpenRequest{Stock: 1, Policy: claims.FCFS, PriceMinor: price, Currency: "EUR", Pay: []string{"wallet"},
		PayWindow: claims.Duration(5 * time.Minute), CreatorID: creator, LimitedRunID: run, SKU: "sku-" + user, Channel: "ch" + user})
	res, err := f.claim(d.ID, user)
	if err != nil || res.HoldID == "" {
		t.Fatalf("claim: %+v %v", res, err)
	}
	if _, err := f.svc.TopUp(ctx, "top-"+res.HoldID, user, "admin", price, "EUR", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	h, err := f.svc.PayFromWallet(ctx, res.HoldID, user)
	if err != nil {
		t.Fatal(err)
	}
	return d, h
}

func (f *fixture) balance(t *testing.T, account string) int64 {
	t.Helper()
	n, err := f.svc.Books().Balance(context.Background(), account, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) balanced(t *testing.T) claims.MoneyReport {
	t.Helper()
	rep, err := f.svc.AuditMoney(context.Background())
	if err != nil || !rep.Balanced {
		t.Fatalf("books: %+v %v", rep, err)
	}
	return rep
}

// Per-creator fees: a creator's own fee (percentage and fixed), the
// default for the others; a refund reverses creator credit and fee in
// proportion, and partial refunds that add up to the whole reverse
// exactly what was credited.
func TestCreatorFeesAndRefunds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, claims.Options{FeeBasisPoints: 1000, Fees: map[string]claims.Fee{"crea": {BasisPoints: 290, FixedMinor: 30}}})
	_, h := f.paidHold(t, "crea", "run1", "ann", 4500)
	f.paidHold(t, "other", "", "ben", 4500)
	if c, o, fee := f.balance(t, claims.CreatorAccount("crea")), f.balance(t, claims.CreatorAccount("other")), f.balance(t, claims.AccountPlatformFee); c != 4500-161 || o != 4050 || fee != 161+450 {
		t.Fatalf("creator %d, other %d, fee %d", c, o, fee)
	}
	// A third of it back, then another third, then the rest.
	for i, amount := range []int64{1500, 1500, 0} {
		m, applied, err := f.svc.RefundHold(ctx, claims.Refund{Key: fmt.Sprintf("r%d", i), HoldID: h.ID, AmountMinor: amount, At: f.clock.Now()})
		if err != nil || !applied {
			t.Fatalf("refund %d: %v", i, err)
		}
		if m.Kind != claims.MoveRefund || m.HoldID != h.ID {
			t.Fatalf("refund movement %+v", m)
		}
	}
	if c, fee, w := f.balance(t, claims.CreatorAccount("crea")), f.balance(t, claims.AccountPlatformFee), f.balance(t, claims.WalletAccount("ann")); c != 0 || fee != 450 || w != 4500 {
		t.Fatalf("after a full refund in thirds: creator %d, fee %d, ann's wallet %d", c, fee, w)
	}
	// The first refund reversed a third of the fee, rounded half up.
	ms, _ := f.svc.Books().Movements(ctx, h.ID)
	var feeBack []int64
	for _, m := range ms {
		for _, p := range m.Postings {
			if m.Kind == claims.MoveRefund && p.Account == claims.AccountPlatformFee {
				feeBack = append(feeBack, -p.Amount)
			}
		}
	}
	if fmt.Sprint(feeBack) != "[54 53 54]" {
		t.Fatalf("fee reversed per refund %v, want [54 53 54] (161 in thirds)", feeBack)
	}
	// Replays change nothing; more than was paid, or an unpaid hold, is refused.
	if _, applied, err := f.svc.RefundHold(ctx, claims.Refund{Key: "r0", HoldID: h.ID, AmountMinor: 1500}); err != nil || applied {
		t.Fatalf("replayed refund: applied %v, %v", applied, err)
	}
	if _, _, err := f.svc.RefundHold(ctx, claims.Refund{Key: "r9", HoldID: h.ID, AmountMinor: 1}); !errors.Is(err, claims.ErrRefundTooLarge) {
		t.Fatalf("refund past the payment: %v", err)
	}
	for _, bad := range []claims.Refund{{Key: "", HoldID: h.ID}, {Key: "x y", HoldID: h.ID}, {Key: "k", HoldID: h.ID, AmountMinor: -5}} {
		if _, _, err := f.svc.RefundHold(ctx, bad); microdrop.ErrorCode(err) != microdrop.EINVALID {
			t.Fatalf("bad refund %+v: %v", bad, err)
		}
	}
	if _, _, err := f.svc.RefundHold(ctx, claims.Refund{Key: "k", HoldID: "nope-1"}); microdrop.ErrorCode(err) != microdrop.ENOTFOUND {
		t.Fatalf("refund of no hold: %v", err)
	}
	f.balanced(t)
}

// recordingRail is a rail under the test's control: it records every call
// and fails as told.
type recordingRail struct {
	calls []string
	fail  error
}

func (r *recordingRail) Pay(_ context.Context, p claims.Payout) (string, error) {
	r.calls = append(r.calls, p.ID)
	if r.fail != nil {
		return "", r.fail
	}
	return "ref-" + p.ID, nil
}

func countKind(t *testing.T, f *fixture, kind string) int {
	t.Helper()
	ms, err := f.svc.Books().Movements(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

// Schedules driven by the simulated clock: daily pays once per UTC day,
// weekly once a week from its weekday, threshold whenever the balance
// reaches it, and none pays less than the minimum.
func TestPayoutSchedules(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, claims.Options{FeeBasisPoints: 1000})
	// The clock starts on Thursday 2026-11-26 20:00 UTC.
	f.paidHold(t, "day", "", "ann", 1000)  // 900 net
	f.paidHold(t, "week", "", "ben", 1000) // 900 net
	f.paidHold(t, "thr", "", "cat", 1000)  // 900 net
	f.paidHold(t, "min", "", "dan", 1000)  // 900 net
	rail := &recordingRail{}
	p, err := claims.NewPayouts(claims.PayoutsDeps{Service: f.svc, Files: rail, Now: f.clock.Now, Plans: map[string]claims.PayoutPlan{
		"day":  {Schedule: claims.ScheduleDaily, Currency: "EUR"},
		"week": {Schedule: claims.ScheduleWeekly, Weekday: time.Monday, Currency: "EUR"},
		"thr":  {Schedule: claims.ScheduleThreshold, ThresholdMinor: 1500, Currency: "EUR"},
		"min":  {Schedule: claims.ScheduleDaily, MinimumMinor: 1000, Currency: "EUR"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	run := func(want ...string) {
		t.Helper()
		rail.calls = nil
		rep, err := p.Run(ctx)
		if err != nil || len(rep.Errors) > 0 {
			t.Fatalf("run at %s: %+v %v", f.clock.Now(), rep, err)
		}
		var got []string
		for _, po := range rep.Paid {
			got = append(got, po.CreatorID)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(rail.calls) != len(want) {
			t.Fatalf("run at %s paid %v (rail calls %v), want %v", f.clock.Now().Format(time.RFC3339), got, rail.calls, want)
		}
	}
	// Thursday: the weekly creator's last Monday is behind it with no
	// payout yet, so it catches up; threshold and minimum wait.
	run("day", "week")
	run()                          // again the same day: nothing
	f.clock.Advance(3 * time.Hour) // Thursday 23:00
	run()
	f.paidHold(t, "day", "", "eve", 1000)
	f.paidHold(t, "thr", "", "fay", 1000) // thr: 1800 >= 1500
	f.paidHold(t, "min", "", "gus", 1000) // min: 1800 >= 1000
	f.paidHold(t, "week", "", "hal", 1000)
	// Threshold pays at once; min, never paid, has reached its minimum;
	// day was paid today and waits for tomorrow.
	run("min", "thr")
	f.clock.Advance(2 * time.Hour) // Friday 01:00
	run("day")
	f.clock.Advance(72 * time.Hour) // Monday 01:00: the week turned
	run("week")
	if c := f.balance(t, claims.CreatorAccount("week")); c != 0 {
		t.Fatalf("weekly creator left with %d", c)
	}
	if n := countKind(t, f, claims.MovePayoutPaid); n != 6 {
		t.Fatalf("%d paid movements, want 6", n)
	}
	f.balanced(t)
	// Paid out 900+900+1800+1800+900+900.
	if out := f.balance(t, claims.PaidOutAccount(claims.ProviderFile)); out != 7200 {
		t.Fatalf("paid out %d", out)
	}
	bad := claims.PayoutsDeps{Service: f.svc, Plans: map[string]claims.PayoutPlan{"x": {Schedule: "hourly", Currency: "EUR"}}}
	if _, err := claims.NewPayouts(bad); err == nil || !strings.Contains(err.Error(), "daily, weekly or threshold") {
		t.Fatalf("bad schedule: %v", err)
	}
}

func TestPlanDue(t *testing.T) {
	mon := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	weekly := claims.PayoutPlan{Schedule: claims.ScheduleWeekly, Weekday: time.Wednesday, Currency: "EUR"}
	if weekly.Due(mon, mon.AddDate(0, 0, -4), 100) {
		t.Error("weekly (Wednesday): paid last Thursday, due again on Monday")
	}
	if !weekly.Due(mon, mon.AddDate(0, 0, -6), 100) {
		t.Error("weekly (Wednesday): paid last Tuesday, not due on Monday")
	}
	if !weekly.Due(mon.AddDate(0, 0, 2), mon, 100) || weekly.Due(mon.AddDate(0, 0, 1), mon, 100) {
		t.Error("weekly: the week turns on Wednesday")
	}
	if weekly.Due(mon, time.Time{}, 0) {
		t.Error("due with nothing to pay")
	}
	for _, bad := range []claims.PayoutPlan{
		{Schedule: claims.ScheduleDaily},
		{Schedule: claims.ScheduleThreshold, Currency: "EUR"},
		{Schedule: claims.ScheduleDaily, Currency: "EUR", ConnectAccount: "ba_123"},
		{Schedule: claims.ScheduleDaily, Currency: "EUR", MinimumMinor: -1},
	} {
		if bad.Validate() == nil {
			t.Errorf("plan %+v validated", bad)
		}
	}
}

// Payout files: one CSV per payout with a row per drop, a total per
// limited run and the creator's total; a refused payout goes back to the
// balance; a failing rail leaves the payout in transit for the next run,
// which pays it once.
func TestPayoutFileAndRetries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, claims.Options{FeeBasisPoints: 1000})
	d1, _ := f.paidHold(t, "crea", "run-a", "ann", 2000) // 1800
	d2, _ := f.paidHold(t, "crea", "run-a", "ben", 1000) // 900
	d3, h3 := f.paidHold(t, "crea", "run-b", "cat", 500) // 450
	if _, _, err := f.svc.RefundHold(ctx, claims.Refund{Key: "r1", HoldID: h3.ID, AmountMinor: 100, At: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "payouts")
	flaky := &recordingRail{fail: errors.New("provider unreachable")}
	plans := map[string]claims.PayoutPlan{"crea": {Schedule: claims.ScheduleDaily, Currency: "EUR"}}
	p, err := claims.NewPayouts(claims.PayoutsDeps{Service: f.svc, Files: flaky, Now: f.clock.Now, Plans: plans})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Run(ctx)
	if err != nil || len(rep.Waiting) != 1 || rep.Waiting[0].State != claims.PayoutInTransit || len(rep.Errors) != 1 {
		t.Fatalf("run with a failing rail: %+v %v", rep, err)
	}
	want := int64(1800 + 900 + 450 - 90)
	if tr := f.balance(t, claims.CreatorTransitAccount("crea")); tr != want {
		t.Fatalf("in transit %d, want %d", tr, want)
	}
	bal, err := f.svc.CreatorBalances(ctx, p.Store(), nil)
	if err != nil || len(bal) != 1 || bal[0].InTransit != want || bal[0].Available != 0 || bal[0].PaidOut != 0 {
		t.Fatalf("balances in transit: %+v %v", bal, err)
	}
	// The next run (a new runner, as after a restart) resumes it with the files rail.
	p2, err := claims.NewPayouts(claims.PayoutsDeps{Service: f.svc, Files: claims.PayoutFiles{Dir: dir}, Now: f.clock.Now, Plans: plans})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = p2.Run(ctx)
	if err != nil || rep.Resumed != 1 || rep.Created != 0 || len(rep.Paid) != 1 {
		t.Fatalf("resumed run: %+v %v", rep, err)
	}
	po := rep.Paid[0]
	if po.Reference != claims.PayoutFileName(po.ID) || po.AmountMinor != want || po.Provider != claims.ProviderFile {
		t.Fatalf("paid %+v", po)
	}
	raw, err := os.ReadFile(filepath.Join(dir, po.Reference))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows[1:] {
		got[r[1]+"/"+r[3]+"/"+r[4]] = r[7]
	}
	wantRows := map[string]string{
		"drop/run-a/" + d1.ID: "1800", "drop/run-a/" + d2.ID: "900", "drop/run-b/" + d3.ID: "360",
		"limited_run/run-a/": "2700", "limited_run/run-b/": "360", "creator//": fmt.Sprint(want),
	}
	if strings.Join(rows[0], ",") != strings.Join(claims.PayoutFileHeader, ",") || fmt.Sprint(got) != fmt.Sprint(wantRows) {
		t.Fatalf("payout file:\n%s\nwant %v", raw, wantRows)
	}
	if n := countKind(t, f, claims.MovePayoutPaid); n != 1 {
		t.Fatalf("%d paid movements", n)
	}
	// A refused payout returns its money.
	f.paidHold(t, "crea", "run-a", "dan", 1000)
	f.clock.Advance(24 * time.Hour)
	no := &recordingRail{fail: fmt.Errorf("account closed: %w", claims.ErrPayoutRefused)}
	p3, _ := claims.NewPayouts(claims.PayoutsDeps{Service: f.svc, Files: no, Now: f.clock.Now, Plans: plans})
	rep, err = p3.Run(ctx)
	if err != nil || len(rep.Returned) != 1 || rep.Returned[0].Note == "" {
		t.Fatalf("refused run: %+v %v", rep, err)
	}
	if c, tr := f.balance(t, claims.CreatorAccount("crea")), f.balance(t, claims.CreatorTransitAccount("crea")); c != 900 || tr != 0 {
		t.Fatalf("after a refused payout: available %d, in transit %d", c, tr)
	}
	// The statement itemises it all.
	st, err := f.svc.Statement(ctx, p.Store(), "crea", "EUR", f.clock.Now().Add(-48*time.Hour), f.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tot := st.Totals
	if len(st.Drops) != 4 || tot.PaidHolds != 4 || tot.GrossMinor != 4500 || tot.FeesMinor != 450 || tot.RefundsMinor != 100 ||
		tot.FeesBackMinor != 10 || tot.Net != 4500-450-90 || tot.PayoutsMinor != want || len(st.Payouts) != 2 {
		t.Fatalf("statement %+v", st)
	}
	f.balanced(t)
}
