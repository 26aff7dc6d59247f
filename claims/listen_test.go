package claims_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

func (f *fixture) heard(id, user, code string) (claims.ClaimResult, error) {
	return f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: id, Viewer: claims.Viewer{UserID: user, Login: user}, Code: code})
}

func openListen(t *testing.T, f *fixture, stock int, grace time.Duration) *claims.Drop {
	t.Helper()
	g := claims.Duration(grace)
	d := f.open(t, claims.OpenRequest{Stock: stock, Policy: claims.FCFS, Listen: true, Grace: &g, Duration: claims.Duration(60 * time.Second)})
	if d.ListenStep != claims.DefaultListenStep || d.CueCode != d.CueCodeAt(1) || d.View().ListenStepMS != 8000 {
		t.Fatalf("listen drop: step %s, cue %08x (step 1 %08x)", d.ListenStep, d.CueCode, d.CueCodeAt(1))
	}
	return d
}

// The SPEC's worked example (ingest/cue/SPEC.md section 10) pins the
// derivation, so the SPEC and the server cannot drift apart.
func TestListenCodeMatchesSpec(t *testing.T) {
	secret := claims.ListenSecret([]byte("0123456789abcdef0123456789abcdef"))
	if got := claims.FormatCueCode(claims.ListenCode(secret, "abcdefgh", 1)); got != specStep1 {
		t.Fatalf("step 1 code %s, SPEC says %s", got, specStep1)
	}
	if got := claims.FormatCueCode(claims.ListenCode(secret, "abcdefgh", 2)); got != specStep2 {
		t.Fatalf("step 2 code %s, SPEC says %s", got, specStep2)
	}
}

func TestListenDropAcceptsCurrentAndGraceSteps(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := openListen(t, f, 100, 6*time.Second)
	code := func(n int64) string { return claims.FormatCueCode(d.CueCodeAt(n)) }

	if _, err := f.heard(d.ID, "typist", ""); microdrop.ErrorReason(err) != claims.ReasonWrongCode ||
		!strings.Contains(microdrop.ErrorMessage(err), "Listen") {
		t.Fatalf("claim without a code: %v", err)
	}
	f.clock.Advance(3 * time.Second) // step 1
	if res, err := f.heard(d.ID, "alice", code(1)); err != nil || res.Outcome != claims.OutcomeWon {
		t.Fatalf("current step: %v %v", res, err)
	}
	if _, err := f.heard(d.ID, "early", code(2)); microdrop.ErrorReason(err) != claims.ReasonWrongCode {
		t.Fatalf("a code from a step that has not played: %v", err)
	}
	f.clock.Advance(10 * time.Second) // t = 13 s: step 2; step 1 ended at 8 s, counts until 14 s
	if _, err := f.heard(d.ID, "bob", strings.ToLower(code(1))); err != nil {
		t.Fatalf("a viewer 6 s behind, inside the grace: %v", err)
	}
	f.clock.Advance(2 * time.Second) // t = 15 s
	_, err := f.heard(d.ID, "carol", code(1))
	if microdrop.ErrorReason(err) != claims.ReasonLateCode || !strings.Contains(microdrop.ErrorMessage(err), "too late") {
		t.Fatalf("step 1 after its grace: %v", err)
	}
	f.clock.Advance(10 * time.Second) // t = 25 s: step 4; step 2 ended 16 s + 6 s grace
	if _, err := f.heard(d.ID, "dave", code(2)); microdrop.ErrorReason(err) != claims.ReasonLateCode {
		t.Fatalf("two steps stale beyond the grace: %v", err)
	}
	// The same fresh code proves presence, not identity: many viewers may use it.
	for i := range 50 {
		if _, err := f.heard(d.ID, "viewer"+string(rune('a'+i%26))+string(rune('a'+i/26)), code(4)); err != nil {
			t.Fatalf("viewer %d with the fresh code: %v", i, err)
		}
	}
	if _, err := f.heard(d.ID, "alice", code(4)); microdrop.ErrorReason(err) != claims.ReasonDuplicate {
		t.Fatalf("second claim by alice: %v", err)
	}

	// The entries say which step each claim heard.
	es, err := f.ledger.Entries(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]int64{}
	for _, e := range es {
		steps[e.UserID] = e.CueStep
	}
	if steps["alice"] != 1 || steps["bob"] != 1 || steps["viewerba"] != 4 || len(es) != 52 {
		t.Fatalf("entry steps %v (%d entries)", steps, len(es))
	}
	if got := claims.HeardSteps(es); got != "step 1: 2, step 4: 50" {
		t.Fatalf("audit summary %q", got)
	}
}

func TestListenCodesOutsideTheDropAreRefused(t *testing.T) {
	f := newFixture(t, claims.Options{})
	opens := f.clock.Now().Add(30 * time.Second)
	g := claims.Duration(4 * time.Second)
	d, err := f.svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: "streamer", SKU: "cap", Stock: 10, Policy: claims.FCFS,
		Listen: true, ListenStep: claims.Duration(5 * time.Second), Grace: &g, OpensAt: opens, Duration: claims.Duration(20 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	code := func(n int64) string { return claims.FormatCueCode(d.CueCodeAt(n)) }
	if _, err := f.heard(d.ID, "eager", code(1)); microdrop.ErrorReason(err) != claims.ReasonNotOpen {
		t.Fatalf("before the open: %v", err)
	}
	f.clock.Advance(30*time.Second + 21*time.Second) // 1 s after the close: step 4 (15-20 s) counts until 24 s
	f.waitState(t, d.ID, claims.Grace)
	if _, err := f.heard(d.ID, "late", code(4)); err != nil {
		t.Fatalf("last step inside the grace: %v", err)
	}
	if _, err := f.heard(d.ID, "later", code(5)); microdrop.ErrorReason(err) != claims.ReasonWrongCode {
		t.Fatalf("a step after the close never plays: %v", err)
	}
	f.clock.Advance(4 * time.Second) // close + grace
	f.waitEnded(t, d)
	if _, err := f.heard(d.ID, "last", code(4)); microdrop.ErrorReason(err) != claims.ReasonClosed {
		t.Fatalf("after close plus grace: %v", err)
	}
	// A code of another drop is not this drop's code.
	other := openListen(t, f, 5, 0)
	if _, err := f.heard(other.ID, "mixer", code(1)); microdrop.ErrorReason(err) != claims.ReasonWrongCode {
		t.Fatalf("another drop's code: %v", err)
	}
}

func TestListenDropAnnouncesEachStep(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := openListen(t, f, 5, 2*time.Second)
	var got []microdrop.CueStepView
	deadline := time.After(5 * time.Second)
	for n := int64(2); n <= 4; n++ {
		f.clock.Advance(8 * time.Second)
	wait:
		for {
			select {
			case e := <-f.events.C():
				if e.Kind == microdrop.CueStep && e.DropID == d.ID {
					got = append(got, *e.Step)
					break wait
				}
			case <-deadline:
				t.Fatalf("no cue.step for step %d (got %+v)", n, got)
			}
		}
	}
	for i, s := range got {
		n := int64(i + 2)
		if s.Step != n || s.Code != d.CueCodeAt(n) || s.StepMS != 8000 || s.GraceMS != 2000 || !s.StartsAt.Equal(d.StepStart(n)) {
			t.Fatalf("step event %d: %+v", n, s)
		}
	}
}

func TestListenOpenValidation(t *testing.T) {
	f := newFixture(t, claims.Options{})
	for _, req := range []claims.OpenRequest{
		{Listen: true, ListenStep: claims.Duration(time.Second)},
		{Listen: true, ListenStep: claims.Duration(2 * time.Minute)},
		{Listen: true, ClaimCode: "MOON42"},
		{ListenStep: claims.Duration(8 * time.Second)},
	} {
		req.Channel, req.SKU, req.Stock, req.Duration = "streamer", "hoodie", 1, claims.Duration(time.Minute)
		if _, err := f.svc.OpenDrop(context.Background(), req); microdrop.ErrorCode(err) != microdrop.EINVALID {
			t.Fatalf("%+v: %v, want invalid", req, err)
		}
	}
}

// The worked example of ingest/cue/SPEC.md section 10.
const (
	specStep1 = "028771A4"
	specStep2 = "32AAFAFD"
)

// Guessers behind one address are held to its wrong-code budget whatever
// accounts they use; viewers elsewhere are not affected, and the budget
// refills.
func TestListenWrongCodesAreLimitedPerAddress(t *testing.T) {
	f := newFixture(t, claims.Options{})
	d := openListen(t, f, 1000, 2*time.Second)
	guess := func(user, ip, code string) error {
		_, err := f.svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: user}, Code: code, RemoteIP: ip})
		return err
	}
	wrong, limited := 0, 0
	for i := range 1000 {
		code := claims.FormatCueCode(d.CueCodeAt(1) ^ uint32(i+1))
		switch microdrop.ErrorReason(guess("bot"+strconv.Itoa(i), "203.0.113.7", code)) {
		case claims.ReasonWrongCode:
			wrong++
		case claims.ReasonRateLimited:
			limited++
		}
	}
	if wrong != 10 || limited != 990 {
		t.Fatalf("1000 guesses from one address: %d checked, %d limited; want 10 and 990", wrong, limited)
	}
	right := claims.FormatCueCode(d.CueCodeAt(1))
	if err := guess("neighbour", "198.51.100.2", right); err != nil {
		t.Fatalf("a viewer on another address: %v", err)
	}
	if err := guess("chatfan", "", right); err != nil {
		t.Fatalf("a claim from chat (no address): %v", err)
	}
	f.clock.Advance(time.Second)
	if err := guess("housemate", "203.0.113.7", right); err != nil {
		t.Fatalf("the right code from the guessers' address a second later: %v", err)
	}
}

// A listen drop under the window policy: the window's draw decides every
// claim inside it, and each entry it writes, won or lost, keeps the step of
// the code its viewer heard, for the audit.
func TestListenWindowEntriesKeepTheirStep(t *testing.T) {
	f := windowFixture(t, claims.Options{})
	budget, grace := claims.Duration(3*time.Second), claims.Duration(0)
	d := f.open(t, claims.OpenRequest{Stock: 1, Policy: claims.Window, Budget: &budget, Grace: &grace, Listen: true,
		Duration: claims.Duration(60 * time.Second)})
	if !d.Listening() || d.Budget != 3*time.Second {
		t.Fatalf("listen window drop: %+v", d)
	}
	code := claims.FormatCueCode(d.CueCodeAt(1))
	f.clock.Advance(time.Second)
	inWindow := make([]claims.QueuedClaim, 3)
	for i := range inWindow {
		inWindow[i] = f.svc.QueueClaim(claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "w" + strconv.Itoa(i)}, Code: code})
	}
	// Answered after the queued ones, so they are all inside the window.
	if _, err := f.heard(d.ID, "w0", code); microdrop.ErrorReason(err) != claims.ReasonDuplicate {
		t.Fatalf("duplicate inside the window: %v", err)
	}
	f.clock.Advance(3 * time.Second)
	// The first claim after the window: the window's draw comes first.
	if _, err := f.heard(d.ID, "after", code); microdrop.ErrorCode(err) != microdrop.ESOLDOUT {
		t.Fatalf("claim after the window took the last unit: %v", err)
	}
	won := 0
	for i, q := range inWindow {
		res, err := q.Wait()
		switch {
		case err == nil && res.Outcome == claims.OutcomeWon:
			won++
		case microdrop.ErrorReason(err) != claims.ReasonLostDraw:
			t.Fatalf("window claim %d: %+v %v", i, res, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d won the window's one unit", won)
	}
	f.waitEnded(t, f.waitState(t, d.ID, claims.SoldOut))
	es, err := f.ledger.Entries(context.Background(), d.ID)
	if err != nil || len(es) != 3 {
		t.Fatalf("entries %+v, %v", es, err)
	}
	for _, e := range es {
		if e.CueStep != 1 {
			t.Fatalf("entry of %s (%s) lost its step: cue step %d, want 1", e.UserID, e.Outcome, e.CueStep)
		}
	}
	if heard := claims.HeardSteps(es); !strings.Contains(heard, "1") {
		t.Fatalf("heard steps %q", heard)
	}
}
