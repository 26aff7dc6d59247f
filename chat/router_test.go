package chat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// newService starts a real claims service on a temporary SQLite ledger.
func newService(tb testing.TB, now func() time.Time) (*claims.Service, *microdrop.MemoryBus) {
	tb.Helper()
	bus := microdrop.NewMemoryBus()
	signer, err := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := claims.New(claims.Deps{Ledger: sqlite.MustOpen(tb), Bus: bus, Signer: signer, Now: now,
		Options: claims.Options{DefaultPolicy: claims.FCFS, ClaimRate: 1000, ClaimBurst: 1000}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = svc.Close() })
	return svc, bus
}

func newRouter(tb testing.TB, d Deps) (*Router, *clock, *microdrop.MemoryBus) {
	tb.Helper()
	clk := newClock()
	svc, bus := newService(tb, clk.Now)
	d.Claims, d.Bus, d.Now = svc, bus, clk.Now
	r, err := NewRouter(d)
	if err != nil {
		tb.Fatal(err)
	}
	return r, clk, bus
}

func mod(text string) Message {
	return Message{Platform: "test", Channel: "chan", UserID: "m1", Login: "mod", Role: Moderator, Text: text, ID: "x"}
}

func viewer(n int, text string) Message {
	return Message{Platform: "test", Channel: "chan", UserID: fmt.Sprintf("u%d", n), Login: fmt.Sprintf("viewer%d", n), Text: text, ID: fmt.Sprintf("m%d", n)}
}

func texts(rs []Reply) string {
	var s []string
	for _, r := range rs {
		p := ""
		if r.Private {
			p = "(private) "
		}
		s = append(s, p+r.Text)
	}
	return strings.Join(s, " | ")
}

func TestRouterDropLifecycle(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{})
	got := r.Handle(ctx, mod("!drop hoodie 2 90s"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "hoodie drop is open: 2 available for 1m30s") {
		t.Fatalf("open: %s", texts(got))
	}
	d, ok := r.claims.Live("chan")
	if !ok || d.Stock != 2 || d.Policy != claims.FCFS {
		t.Fatalf("drop not live: %+v", d)
	}

	got = r.Handle(ctx, viewer(1, "!claim"))
	if len(got) != 2 || got[0].Group != "won:"+d.ID || !got[1].Private || !strings.Contains(got[1].Text, "pickup code: ") {
		t.Fatalf("win: %s", texts(got))
	}
	token := strings.Fields(strings.SplitN(got[1].Text, "pickup code: ", 2)[1])[0]
	if fb := got[1].Fallback; fb == nil || strings.Contains(fb.Text, Mask(token)) || !strings.Contains(fb.Text, "/c/"+d.ID) {
		t.Fatalf("whisper fallback %+v shows (part of) the code or lacks the claim page", fb)
	}

	got = r.Handle(ctx, viewer(1, "!claim"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "already claimed") {
		t.Fatalf("duplicate: %s", texts(got))
	}

	got = r.Handle(ctx, viewer(2, "!stock"))
	if len(got) != 1 || got[0].Text != "hoodie: 1 of 2 left, closes in 1m30s" {
		t.Fatalf("stock: %s", texts(got))
	}

	got = r.Handle(ctx, viewer(1, "!mytoken"))
	if len(got) != 2 || !got[1].Private || !strings.Contains(got[1].Text, token) {
		t.Fatalf("mytoken: %s", texts(got))
	}

	got = r.Handle(ctx, mod("!drop extend 30s"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "extended by 30s") || !strings.Contains(got[0].Text, "closes in 2m") {
		t.Fatalf("extend: %s", texts(got))
	}

	clk.Add(time.Second)
	got = r.Handle(ctx, mod("!drop close"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "hoodie drop closed: 1 of 2 claimed") {
		t.Fatalf("close: %s", texts(got))
	}
	got = r.Handle(ctx, mod("!drop close"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "no drop is open") && !strings.Contains(got[0].Text, "just ended") {
		t.Fatalf("second close: %s", texts(got))
	}
	got = r.Handle(ctx, viewer(3, "!claim"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "the hoodie drop has closed") {
		t.Fatalf("claim after close: %s", texts(got))
	}
}

func TestRouterSoldOutCoalesces(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{})
	r.Handle(ctx, mod("!drop open cap 2 1m"))
	b := NewOutbox(OutboxOptions{Now: clk.Now})
	won, soldOut := 0, 0
	for i := 1; i <= 6; i++ {
		rs := r.Handle(ctx, viewer(i, "!claim"))
		for _, rep := range rs {
			switch {
			case strings.HasPrefix(rep.Group, "won:"):
				won++
			case strings.Contains(rep.Text, "sold out"):
				soldOut++
			}
		}
		b.Add(rs...)
	}
	if won != 2 || soldOut != 4 {
		t.Fatalf("won %d sold out %d", won, soldOut)
	}
	clk.Add(time.Second)
	lines, _ := b.Due(clk.Now())
	var public []string
	for _, l := range lines {
		if !l.Private {
			public = append(public, l.Text)
		}
	}
	want := []string{"@viewer1, @viewer2 won cap — check your whispers for the pickup code", "@viewer3, @viewer4, @viewer5, @viewer6 sorry, cap sold out"}
	if strings.Join(public, "\n") != strings.Join(want, "\n") {
		t.Fatalf("public lines:\n%s\nwant:\n%s", strings.Join(public, "\n"), strings.Join(want, "\n"))
	}
}

func TestRouterPermissions(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{Permissions: map[string]Role{CmdClip: Subscriber}})
	got := r.Handle(ctx, viewer(1, "!drop hoodie 5 1m"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "!drop is for moderators") {
		t.Fatalf("viewer drop: %s", texts(got))
	}
	if _, ok := r.claims.Live("chan"); ok {
		t.Fatal("a viewer opened a drop")
	}
	// The refusal is itself rate-limited: the next one in the channel is silent.
	if got := r.Handle(ctx, viewer(2, "!drop hoodie 5 1m")); len(got) != 0 {
		t.Fatalf("second refusal within the help window: %s", texts(got))
	}
	clk.Add(11 * time.Second)
	if got := r.Handle(ctx, viewer(3, "!clip")); len(got) != 1 || !strings.Contains(got[0].Text, "subscribers") {
		t.Fatalf("clip by viewer with clip=subscriber: %s", texts(got))
	}
	sub := viewer(4, "!clip nice")
	sub.Role = Subscriber
	if got := r.Handle(ctx, sub); len(got) != 1 || !strings.Contains(got[0].Text, "clip marked: nice") {
		t.Fatalf("clip by subscriber: %s", texts(got))
	}
	b := mod("!drop hoodie 5 1m")
	b.Role = Broadcaster
	if got := r.Handle(ctx, b); len(got) != 1 || !strings.Contains(got[0].Text, "is open") {
		t.Fatalf("broadcaster drop: %s", texts(got))
	}
	if _, err := NewRouter(Deps{Claims: r.claims, Bus: r.bus, Permissions: map[string]Role{"dance": Viewer}}); err == nil {
		t.Fatal("permission for an unknown command accepted")
	}
}

func TestRouterHelpIsRateLimited(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{})
	got := r.Handle(ctx, mod("!drop hoodie fifty 90s"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "quantity must be") {
		t.Fatalf("malformed: %s", texts(got))
	}
	if _, ok := r.claims.Live("chan"); ok {
		t.Fatal("a malformed command opened a drop")
	}
	// A crowd of typos: at most one help reply per channel per 10 s.
	replies := 0
	for i := 0; i < 200; i++ {
		replies += len(r.Handle(ctx, viewer(i, "!clam")))
		clk.Add(100 * time.Millisecond)
	}
	if replies > 2 || replies < 1 {
		t.Fatalf("%d help replies in 20 s of typos; want 1 or 2", replies)
	}
	// And one chatter at most once per minute.
	clk.Add(time.Minute)
	if n := len(r.Handle(ctx, viewer(1000, "!clam"))); n != 1 {
		t.Fatalf("first typo after a quiet minute got %d replies", n)
	}
	clk.Add(11 * time.Second)
	if n := len(r.Handle(ctx, viewer(1000, "!clam"))); n != 0 {
		t.Fatalf("same chatter helped twice within a minute")
	}
	if n := len(r.Handle(ctx, Message{Channel: "chan", UserID: "u1", Text: "just chatting"})); n != 0 {
		t.Fatal("replied to plain chat")
	}
}

func TestRouterCooldownsAndUserRate(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{Cooldowns: map[string]Cooldown{CmdMyToken: {PerUser: time.Minute}}})
	if n := len(r.Handle(ctx, viewer(1, "!stock"))); n != 1 {
		t.Fatal("first !stock unanswered")
	}
	if n := len(r.Handle(ctx, viewer(2, "!stock"))); n != 0 {
		t.Fatal("!stock answered twice within its 5 s channel cooldown")
	}
	clk.Add(5 * time.Second)
	if n := len(r.Handle(ctx, viewer(2, "!stock"))); n != 1 {
		t.Fatal("!stock unanswered after its cooldown")
	}
	// mytoken: per-user cooldown overridden to a minute.
	if n := len(r.Handle(ctx, viewer(3, "!mytoken"))); n != 1 {
		t.Fatal("first !mytoken unanswered")
	}
	clk.Add(45 * time.Second)
	if n := len(r.Handle(ctx, viewer(3, "!mytoken"))); n != 0 {
		t.Fatal("!mytoken answered within the per-user cooldown")
	}
	if n := len(r.Handle(ctx, viewer(4, "!mytoken"))); n != 1 {
		t.Fatal("per-user cooldown held back another user")
	}
	// Per-user rate limit: a burst of 3 commands, then 1 per second.
	r.Handle(ctx, mod("!drop hoodie 100 1h"))
	answered := 0
	for i := 0; i < 10; i++ {
		if len(r.Handle(ctx, viewer(5, "!claim"))) > 0 {
			answered++
		}
	}
	if answered != 3 {
		t.Fatalf("%d of 10 rapid commands answered, want the burst of 3", answered)
	}
	clk.Add(time.Second)
	if len(r.Handle(ctx, viewer(5, "!claim"))) != 1 {
		t.Fatal("rate limit did not refill after a second")
	}
}

func TestRouterClipPublishesHighlight(t *testing.T) {
	ctx := context.Background()
	r, _, bus := newRouter(t, Deps{})
	sub := bus.Subscribe(16)
	defer sub.Close()
	r.Handle(ctx, mod("!drop hoodie 5 1m"))
	d, _ := r.claims.Live("chan")
	got := r.Handle(ctx, viewer(1, "!clip what a save"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "clip marked: what a save") {
		t.Fatalf("clip reply: %s", texts(got))
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-sub.C():
			if e.Kind != microdrop.HighlightMarked {
				continue
			}
			if e.Channel != "chan" || e.DropID != d.ID || e.Highlight == nil ||
				*e.Highlight != (microdrop.HighlightView{Reason: "clip", Label: "what a save", By: "viewer1"}) {
				t.Fatalf("event %+v %+v", e, e.Highlight)
			}
			return
		case <-deadline:
			t.Fatal("no HighlightMarked event")
		}
	}
}

func TestRouterClaimCodeAndErrors(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newRouter(t, Deps{})
	if got := r.Handle(ctx, mod("!drop open tee 5 1m 10 fcfs MOON42")); len(got) != 1 || !strings.Contains(got[0].Text, "code shown on stream") {
		t.Fatalf("open with code: %s", texts(got))
	}
	if got := r.Handle(ctx, viewer(1, "!claim")); len(got) != 1 || !strings.Contains(got[0].Text, "!claim CODE") {
		t.Fatalf("claim without code: %s", texts(got))
	}
	if got := r.Handle(ctx, viewer(2, "!claim NOPE1")); len(got) != 1 || !strings.Contains(got[0].Text, "not this drop's code") {
		t.Fatalf("wrong code: %s", texts(got))
	}
	if got := r.Handle(ctx, viewer(3, "!claim moon42")); len(got) != 2 || !strings.Contains(got[0].Text, "won tee") {
		t.Fatalf("right code: %s", texts(got))
	}
	if got := r.Handle(ctx, mod("!drop hat 5 1m")); len(got) != 1 || !strings.Contains(got[0].Text, "couldn't open the drop: channel chan already has a live drop") {
		t.Fatalf("second open: %s", texts(got))
	}
}

func TestRouterRaffle(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newRouter(t, Deps{})
	if got := r.Handle(ctx, mod("!drop open tee 1 1m raffle")); len(got) != 1 || !strings.Contains(got[0].Text, "raffle") {
		t.Fatalf("open raffle: %s", texts(got))
	}
	if got := r.Handle(ctx, viewer(1, "!claim")); len(got) != 1 || !strings.Contains(got[0].Text, "you're in the tee raffle") {
		t.Fatalf("enter: %s", texts(got))
	}
	if got := r.Handle(ctx, viewer(1, "!mytoken")); len(got) != 1 || !strings.Contains(got[0].Text, "raffle") {
		t.Fatalf("mytoken while entered: %s", texts(got))
	}
}

func rejections(svc *claims.Service) map[string]int64 {
	out := map[string]int64{}
	for _, c := range svc.Metrics().Rejections() {
		out[c.Name] = int64(c.Count)
	}
	return out
}

// TestRouterClaimAfterSellOutCountsSoldOut: a !claim after the last unit
// went is counted as sold_out, as the API path counts it, not not_open.
func TestRouterClaimAfterSellOutCountsSoldOut(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{})
	r.Handle(ctx, mod("!drop open mug 1 1m"))
	r.Handle(ctx, viewer(1, "!claim"))
	clk.Add(2 * time.Second)
	if _, ok := r.claims.Live("chan"); ok {
		// The runner retires a sold-out drop; wait for it as a viewer would.
		deadline := time.Now().Add(5 * time.Second)
		for ok && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			_, ok = r.claims.Live("chan")
		}
	}
	got := r.Handle(ctx, viewer(2, "!claim"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "sold out") {
		t.Fatalf("late claim: %s", texts(got))
	}
	rej := rejections(r.claims)
	if rej[claims.ReasonSoldOut] != 1 || rej[claims.ReasonNotOpen] != 0 {
		t.Fatalf("rejections %v, want one sold_out and no not_open", rej)
	}
}

// TestRouterStageMessageNamesOnlyWhoIsAdmitted: a stage for old accounts
// only does not tell a young account it is for subscribers.
func TestRouterStageMessageNamesOnlyWhoIsAdmitted(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{})
	_, err := r.claims.OpenDrop(ctx, claims.OpenRequest{Channel: "chan", SKU: "tee", Stock: 5, Duration: claims.Duration(time.Minute),
		Stages: []claims.Stage{{Offset: 0, Cap: 1, Eligible: claims.Eligibility{MinAccountAgeDays: 30}},
			{Offset: claims.Duration(10 * time.Second), Cap: 1, Eligible: claims.Eligibility{Everyone: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	m := viewer(1, "!claim")
	m.Role = Subscriber
	m.AccountCreated = clk.Now().Add(-2 * 24 * time.Hour)
	got := r.Handle(ctx, m)
	if len(got) != 1 || !strings.Contains(got[0].Text, "for accounts older than 30 days") || strings.Contains(got[0].Text, "subscribers") {
		t.Fatalf("young account in an age-only stage: %s", texts(got))
	}
}

// TestRouterWinnerWithoutWhispers: where whispers are unavailable the
// winner line points to the claim page, no code (masked or not) is said
// in chat, and !mytoken does not claim to have whispered.
func TestRouterWinnerWithoutWhispers(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{ClaimURL: func(id string) string { return "https://drops.example/c/" + id }})
	r.Handle(ctx, mod("!drop hoodie 5 90s"))
	d, _ := r.claims.Live("chan")
	b := NewOutbox(OutboxOptions{Now: clk.Now})
	for i := 1; i <= 3; i++ {
		m := viewer(i, "!claim")
		m.Whisper = WhisperOff
		if i == 3 {
			m.Whisper = WhisperCapped
		}
		rs := r.Handle(ctx, m)
		for _, rep := range rs {
			if rep.Private || strings.Contains(rep.Text, "…") || strings.Contains(rep.Text, "whispers for") {
				t.Fatalf("reply %+v without whispers", rep)
			}
		}
		b.Add(rs...)
	}
	clk.Add(time.Second)
	lines, _ := b.Due(clk.Now())
	var public []string
	for _, l := range lines {
		public = append(public, l.Text)
	}
	want := []string{
		"@viewer1, @viewer2 won hoodie — get your pickup code on the claim page: https://drops.example/c/" + d.ID,
		"@viewer3 won hoodie — today's whisper limit is reached, so get your pickup code on the claim page: https://drops.example/c/" + d.ID,
	}
	if strings.Join(public, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(public, "\n"), strings.Join(want, "\n"))
	}
	clk.Add(time.Minute)
	m := viewer(1, "!mytoken")
	m.Whisper = WhisperOff
	got := r.Handle(ctx, m)
	if len(got) != 1 || got[0].Private || strings.Contains(got[0].Text, "by whisper") || !strings.Contains(got[0].Text, "/c/"+d.ID) {
		t.Fatalf("mytoken without whispers: %s", texts(got))
	}
}

// TestRouterReservesWhisperForWinnersOnly: the platform's recipient cap is
// asked only when a whisper is to be promised, and its answer decides the
// public line.
func TestRouterReservesWhisperForWinnersOnly(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newRouter(t, Deps{})
	r.Handle(ctx, mod("!drop mug 1 90s"))
	asked := 0
	reserve := func() WhisperState { asked++; return WhisperCapped }
	m := viewer(1, "!claim")
	m.ReserveWhisper = reserve
	got := r.Handle(ctx, m)
	if len(got) != 1 || got[0].Private || !strings.Contains(got[0].Text, "today's whisper limit is reached") || asked != 1 {
		t.Fatalf("capped winner: %s (asked %d)", texts(got), asked)
	}
	m = viewer(2, "!claim")
	m.ReserveWhisper = reserve
	r.Handle(ctx, m) // sold out: no whisper to promise
	if asked != 1 {
		t.Fatalf("the cap was asked for a loser (%d times)", asked)
	}
}

// A moderator opens a listen drop from chat; viewers are told to listen, and
// a code typed from chat counts like one heard on the claim page.
func TestRouterOpensListenDrop(t *testing.T) {
	r, _, _ := newRouter(t, Deps{})
	ctx := context.Background()
	got := r.Handle(ctx, mod("!drop open hoodie 2 90s fcfs listen"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "tap Listen") {
		t.Fatalf("open reply: %s", texts(got))
	}
	d, ok := r.claims.Live("chan")
	if !ok || !d.Listening() || d.ClaimCode != "" {
		t.Fatalf("live drop %+v", d)
	}
	if got := r.Handle(ctx, viewer(1, "!claim 00000000")); len(got) != 1 || !strings.Contains(got[0].Text, "not a code this drop played") {
		t.Fatalf("wrong code from chat: %s", texts(got))
	}
}

// The open announcement of a window drop says plainly what viewers get.
func TestRouterAnnouncesTheWindow(t *testing.T) {
	r, _, _ := newRouter(t, Deps{})
	got := r.Handle(context.Background(), mod("!drop hoodie 2 90s window=6s"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "everyone who claims in the first 6 s has the same chance — results at 0:06") {
		t.Fatalf("open: %s", texts(got))
	}
	d, ok := r.claims.Live("chan")
	if !ok || d.Policy != claims.Window || d.Budget != 6*time.Second || d.BudgetBasis != "set by mod" {
		t.Fatalf("live drop: %+v", d)
	}
}

// A viewer who loses a window's draw is told that everyone in the window
// had the same chance.
func TestRouterWindowLoserIsToldTheWindow(t *testing.T) {
	ctx := context.Background()
	r, clk, _ := newRouter(t, Deps{})
	r.Handle(ctx, mod("!drop hoodie 1 90s window=2s"))
	replies := make(chan string, 4)
	for i := 1; i <= 2; i++ {
		for range 2 { // one of each pair is a duplicate, answered at once
			go func() { replies <- texts(r.Handle(ctx, viewer(i, "!claim"))) }()
		}
	}
	for range 2 {
		if got := <-replies; !strings.Contains(got, "already claimed") {
			t.Fatalf("inside the window, before the draw: %s", got)
		}
	}
	clk.Add(2 * time.Second)
	got := []string{<-replies, <-replies}
	won, lost := 0, 0
	for _, g := range got {
		switch {
		case strings.Contains(g, "won hoodie"):
			won++
		case strings.Contains(g, "not this time — everyone who claimed in the first 2 s had the same chance"):
			lost++
		}
	}
	if won != 1 || lost != 1 {
		t.Fatalf("after the window: %q", got)
	}
}

// On a drop that takes payment a win is a hold: chat says where and how
// long to pay, and a claim past the stock is told it waits in line.
func TestRouterPaidDropWin(t *testing.T) {
	ctx := context.Background()
	r, _, bus := newRouter(t, Deps{})
	d, err := r.claims.OpenDrop(ctx, claims.OpenRequest{Channel: "chan", SKU: "hoodie", Stock: 1, PriceMinor: 4500, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"wallet"}})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Handle(ctx, viewer(1, "!claim"))
	if len(got) != 1 || got[0].Private || !strings.Contains(got[0].Text, "won hoodie — pay within 10 min on the claim page") {
		t.Fatalf("win of a paid drop: %s", texts(got))
	}
	got = r.Handle(ctx, viewer(2, "!claim"))
	if len(got) != 1 || !strings.Contains(got[0].Text, "you're in line if a winner doesn't pay") {
		t.Fatalf("claim past the stock: %s", texts(got))
	}
	// viewer1 gives it up: viewer2, next in line, is told in chat.
	sub := bus.Subscribe(64)
	defer sub.Close()
	hold := claims.HoldID(d.ID, 1)
	if _, err := r.claims.ReleaseHold(ctx, hold, "u1"); err != nil {
		t.Fatal(err)
	}
	for {
		e := <-sub.C()
		if e.Kind != microdrop.HoldPassed {
			continue
		}
		got = r.HoldNotice(ctx, e)
		if len(got) != 1 || got[0].Channel != "chan" || got[0].Text != "@viewer2 a hoodie came back to you — pay within 10 min on the claim page" {
			t.Fatalf("hold notice: %s", texts(got))
		}
		return
	}
}
