package twitch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat"
	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

const wait = 10 * time.Second // upper bound for anything to happen; never a speed assertion

type fixture struct {
	srv    *twitchtest.Server
	client *Client
	svc    *claims.Service
	bus    *microdrop.MemoryBus
	ledger *sqlite.Ledger
}

func setup(t *testing.T, opt twitchtest.Options, mutate func(*Config)) (*fixture, error) {
	t.Helper()
	srv := twitchtest.New(t, opt)
	bus := microdrop.NewMemoryBus()
	signer, _ := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	ledger := sqlite.MustOpen(t)
	svc, err := claims.New(claims.Deps{Ledger: ledger, Bus: bus, Signer: signer,
		Options: claims.Options{DefaultPolicy: claims.FCFS}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	router, err := chat.NewRouter(chat.Deps{Claims: svc, Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	o := srv.Options()
	cfg := Config{ClientID: o.ClientID, UserToken: o.Token, Channel: o.Broadcaster.Login,
		EventSubURL: srv.EventSubURL(), APIURL: srv.APIURL(), AuthURL: srv.AuthURL(), Router: router, Bus: bus,
		Backoff: 200 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	f := &fixture{srv: srv, client: c, svc: svc, bus: bus, ledger: ledger}
	if _, err := srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Subscriptions) == 1 && st.ActiveSession != "" }); err != nil {
		t.Fatalf("no subscription created on welcome: %v", err)
	}
	return f, nil
}

func mustSetup(t *testing.T, opt twitchtest.Options) *fixture {
	t.Helper()
	f, err := setup(t, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) chat(t *testing.T, m twitchtest.ChatMessage) {
	t.Helper()
	for i := 0; i < 3; i++ {
		if _, err := f.srv.Chat(m); err == nil {
			return
		}
		// Between connections (a reconnect switching over): try the new one.
		_, _ = f.srv.WaitFor(time.Second, func(st twitchtest.State) bool { return st.ActiveSession != "" })
	}
	t.Fatalf("could not deliver %q", m.Text)
}

func (f *fixture) waitSent(t *testing.T, contains string) twitchtest.State {
	t.Helper()
	st, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool {
		for _, m := range st.Sent {
			if strings.Contains(m.Message, contains) {
				return true
			}
		}
		return false
	})
	if err != nil {
		var got []string
		for _, m := range st.Sent {
			got = append(got, m.Message)
		}
		t.Fatalf("no reply containing %q; sent: %q", contains, got)
	}
	return st
}

func (f *fixture) openDrop(t *testing.T, stock int) {
	t.Helper()
	f.chat(t, twitchtest.ChatMessage{UserID: "3003", Login: "amod", Text: fmt.Sprintf("!drop hoodie %d 5m", stock), Badges: []string{"moderator"}})
	f.waitSent(t, "hoodie drop is open")
}

func winners(t *testing.T, svc *claims.Service, users int) int {
	t.Helper()
	d, err := svc.Current(context.Background(), "streamer")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; i < users; i++ {
		ps, err := svc.Status(context.Background(), d.ID, fmt.Sprintf("9%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		n += len(ps)
	}
	return n
}

func TestChatRoundTrip(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{})
	f.srv.AddUser(twitchtest.User{ID: "4004", Login: "viewer", CreatedAt: time.Date(2019, 5, 1, 0, 0, 0, 0, time.UTC)})
	f.openDrop(t, 5)
	f.chat(t, twitchtest.ChatMessage{UserID: "4004", Login: "viewer", Text: "!claim"})
	f.waitSent(t, "@viewer won hoodie")
	st, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Whispers) == 1 && len(st.Markers) == 1 })
	if err != nil {
		t.Fatalf("whispers %+v markers %+v", st.Whispers, st.Markers)
	}
	if w := st.Whispers[0]; w.To != "4004" || w.From != "1001" || !strings.Contains(w.Message, "pickup code: ") {
		t.Fatalf("whisper %+v", w)
	}
	if m := st.Markers[0]; m.UserID != "2002" || !strings.Contains(m.Description, "hoodie drop opened") {
		t.Fatalf("marker %+v", m)
	}
	if st.UserLookups < 2 { // the channel at start, then the claimer's account age
		t.Fatalf("account age not looked up (%d Get Users calls)", st.UserLookups)
	}
	// A viewer cannot open drops; the bot ignores its own messages.
	f.chat(t, twitchtest.ChatMessage{UserID: "5005", Login: "rando", Text: "!drop close"})
	f.waitSent(t, "@rando !drop is for moderators")
	if _, ok := f.svc.Live("streamer"); !ok {
		t.Fatal("a viewer closed the drop")
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "1001", Login: "dropbot", Text: "!claim"})
	f.chat(t, twitchtest.ChatMessage{UserID: "3003", Login: "amod", Text: "!clip big moment", Badges: []string{"moderator"}})
	f.waitSent(t, "clip marked: big moment")
	if ps, _ := f.svc.Status(context.Background(), mustLive(t, f.svc).ID, "1001"); len(ps) != 0 {
		t.Fatal("the bot acted on its own message")
	}
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Markers) == 2 }); err != nil {
		t.Fatal("no stream marker for !clip")
	}
}

func mustLive(t *testing.T, svc *claims.Service) *claims.Drop {
	d, ok := svc.Live("streamer")
	if !ok {
		t.Fatal("no live drop")
	}
	return d
}

func TestMarkerFailureDoesNotBlockDrop(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{})
	f.srv.FailMarkers(true)
	f.openDrop(t, 5)
	f.chat(t, twitchtest.ChatMessage{UserID: "90000", Login: "v", Text: "!claim"})
	f.waitSent(t, "@v won hoodie")
}

// TestReconnectLosesNothing: messages sent before, during and after a
// session_reconnect are each acted on exactly once, and the subscription is
// carried over, not created again.
func TestReconnectLosesNothing(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{})
	f.openDrop(t, 1000)
	const n = 30
	for i := 0; i < n; i++ {
		if i == 10 {
			if err := f.srv.Reconnect(); err != nil {
				t.Fatal(err)
			}
		}
		f.chat(t, twitchtest.ChatMessage{UserID: fmt.Sprintf("9%04d", i), Login: fmt.Sprintf("v%d", i), Text: "!claim"})
	}
	deadline := time.Now().Add(wait)
	for winners(t, f.svc, n) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := winners(t, f.svc, n); got != n {
		t.Fatalf("%d of %d claims acted on across the reconnect", got, n)
	}
	st := f.srv.State()
	if len(st.Subscriptions) != 1 {
		t.Fatalf("%d subscriptions: the reconnect re-subscribed", len(st.Subscriptions))
	}
	if s := f.client.Stats(); s.Reconnects != 1 || s.Notifications < n {
		t.Fatalf("stats %+v", s)
	}
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return st.Open == 1 }); err != nil {
		t.Fatalf("old connection not closed after the hand-over: %d open", f.srv.State().Open)
	}
}

// TestDuplicateActsOnce: Twitch resends a notification with the same
// message id; the same chat message may also arrive under a new one.
func TestDuplicateActsOnce(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{})
	f.openDrop(t, 1000)
	ev := f.srv.Event(twitchtest.ChatMessage{UserID: "90001", Login: "dup", Text: "!clip once", MessageID: "chat-msg-1"})
	for _, id := range []string{"n-1", "n-1", "n-2"} {
		if err := f.srv.Notify(id, ev); err != nil {
			t.Fatal(err)
		}
	}
	f.waitSent(t, "clip marked: once")
	f.chat(t, twitchtest.ChatMessage{UserID: "90002", Login: "after", Text: "!claim"})
	st := f.waitSent(t, "@after won")
	n := 0
	for _, m := range st.Sent {
		if strings.Contains(m.Message, "clip marked") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("duplicate acted on %d times", n)
	}
	if d := f.client.Stats().Duplicates; d != 2 {
		t.Fatalf("%d duplicates counted, want 2", d)
	}
}

// TestDeadConnectionNoticed: keepalives stop without the socket closing;
// the client gives the connection up, reconnects and subscribes again.
func TestDeadConnectionNoticed(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{})
	f.openDrop(t, 10)
	if err := f.srv.Silence(); err != nil {
		t.Fatal(err)
	}
	st, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool {
		return st.Connects == 2 && st.ActiveSession != "" && len(st.Subscriptions) == 2
	})
	if err != nil {
		t.Fatalf("dead connection not replaced: %+v", st)
	}
	if s := f.client.Stats(); s.DeadLinks != 1 {
		t.Fatalf("stats %+v", s)
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "90003", Login: "late", Text: "!claim"})
	f.waitSent(t, "@late won")
}

func waitHealth(t *testing.T, c *Client, cond func(Health) bool) Health {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if h := c.Health(); cond(h) {
			return h
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("health never changed as expected: %+v", c.Health())
	return Health{}
}

// TestRevocationResubscribes: authorization_revoked (which also voids the
// token) degrades health with the reason and the fix; once the token is
// refreshed the client subscribes again and chat works.
func TestRevocationResubscribes(t *testing.T) {
	f, err := setup(t, twitchtest.Options{RefreshToken: "refresh-me"}, func(c *Config) { c.ClientSecret, c.RefreshToken = "secret", "refresh-me" })
	if err != nil {
		t.Fatal(err)
	}
	if h := f.client.Health(); !h.OK {
		t.Fatalf("health before %+v", h)
	}
	if err := f.srv.Revoke("authorization_revoked"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-f.client.Revoked():
		if r != "authorization_revoked" {
			t.Fatalf("reason %q", r)
		}
	case <-time.After(wait):
		t.Fatal("revocation not noticed")
	}
	h := f.client.Health()
	if h.OK || !strings.Contains(h.Reason, "authorization_revoked") || !strings.Contains(h.Fix, "new user token") || !h.Retrying {
		t.Fatalf("health after the revocation %+v", h)
	}
	st, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool {
		n := 0
		for _, s := range st.Subscriptions {
			if s.Status == "enabled" {
				n++
			}
		}
		return n == 1 && len(st.Subscriptions) == 2
	})
	if err != nil {
		t.Fatalf("no new subscription after the revocation: %+v", st.Subscriptions)
	}
	waitHealth(t, f.client, func(h Health) bool { return h.OK })
	f.openDrop(t, 3)
}

// TestRevocationWithoutRemedy: user_removed and version_removed cannot be
// fixed by subscribing again: health says so and what to do, and the
// client does not resubscribe.
func TestRevocationWithoutRemedy(t *testing.T) {
	for reason, fix := range map[string]string{"user_removed": "no longer exists", "version_removed": "upgrade microdrop"} {
		t.Run(reason, func(t *testing.T) {
			f := mustSetup(t, twitchtest.Options{})
			if err := f.srv.Revoke(reason); err != nil {
				t.Fatal(err)
			}
			h := waitHealth(t, f.client, func(h Health) bool { return !h.OK })
			if !strings.Contains(h.Reason, reason) || !strings.Contains(h.Fix, fix) || h.Retrying {
				t.Fatalf("health %+v", h)
			}
			// The session goes on (keepalives), but no subscription is asked for.
			st := f.srv.State()
			if len(st.Subscriptions) != 1 || st.Open != 1 {
				t.Fatalf("subscriptions %+v, %d open", st.Subscriptions, st.Open)
			}
		})
	}
}

// TestTokenValidatedPeriodically: the token is validated again on the
// interval (hourly in production); one that stops validating degrades
// health until it validates again.
func TestTokenValidatedPeriodically(t *testing.T) {
	f, err := setup(t, twitchtest.Options{}, func(c *Config) { c.ValidateEvery = 20 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return st.Validations >= 3 }); err != nil {
		t.Fatalf("%d validations", f.srv.State().Validations)
	}
	f.srv.InvalidateToken()
	h := waitHealth(t, f.client, func(h Health) bool { return !h.OK })
	if !strings.Contains(h.Reason, "does not validate") || !strings.Contains(h.Fix, "new user token") {
		t.Fatalf("health %+v", h)
	}
}

func TestStartChecksToken(t *testing.T) {
	_, err := setup(t, twitchtest.Options{Scopes: []string{"user:read:chat", "channel:manage:broadcast"}}, nil)
	if !errors.Is(err, ErrMissingScope) || !strings.Contains(err.Error(), "user:write:chat") || strings.Contains(err.Error(), "missing user:read:chat") {
		t.Fatalf("missing scope: %v", err)
	}
	_, err = setup(t, twitchtest.Options{}, func(c *Config) { c.UserToken = "wrong" })
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("bad token: %v", err)
	}
	_, err = setup(t, twitchtest.Options{}, func(c *Config) { c.Channel = "nosuchchannel" })
	if err == nil || !strings.Contains(err.Error(), "nosuchchannel") {
		t.Fatalf("unknown channel: %v", err)
	}
}

func TestRefreshToken(t *testing.T) {
	f, err := setup(t, twitchtest.Options{RefreshToken: "refresh-me"}, func(c *Config) {
		c.UserToken, c.ClientSecret, c.RefreshToken = "", "secret", "refresh-me"
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.client.BotID() != "1001" {
		t.Fatalf("bot id %q", f.client.BotID())
	}
}

func TestWhispersOffPointsToClaimPage(t *testing.T) {
	f, err := setup(t, twitchtest.Options{Scopes: []string{"user:read:chat", "user:write:chat"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.openDrop(t, 5)
	f.chat(t, twitchtest.ChatMessage{UserID: "90004", Login: "nowhisper", Text: "!claim"})
	st := f.waitSent(t, "@nowhisper won hoodie — get your pickup code on the claim page: /c/")
	if len(st.Whispers) != 0 || len(st.Markers) != 0 {
		t.Fatalf("whispers %v markers %v without their scopes", st.Whispers, st.Markers)
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "90004", Login: "nowhisper", Text: "!mytoken"})
	st = f.waitSent(t, "@nowhisper your hoodie pickup code can't be whispered")
	for _, m := range st.Sent {
		if strings.Contains(m.Message, "…") || strings.Contains(m.Message, "by whisper") || strings.Contains(m.Message, "check your whispers") {
			t.Fatalf("said %q without whispers", m.Message)
		}
	}
}

// TestWhisperRecipientCap: Twitch lets a bot whisper 40 new recipients a
// day. The 41st winner is not whispered (no 429 asked for) and is told,
// in the coalesced winner line, that the limit is reached and where the
// code is; a winner already whispered today still gets whispers.
func TestWhisperRecipientCap(t *testing.T) {
	fast := []twitchtest.Limit{{Messages: 1000, Per: time.Second}}
	f, err := setup(t, twitchtest.Options{WhisperLimits: fast}, func(c *Config) {
		c.WhisperLimits = []chat.Limit{{Messages: 1000, Per: time.Second}}
	})
	if err != nil {
		t.Fatal(err)
	}
	f.openDrop(t, 100)
	for i := 0; i < 40; i++ {
		f.chat(t, twitchtest.ChatMessage{UserID: fmt.Sprintf("9%04d", i), Login: fmt.Sprintf("w%d", i), Text: "!claim"})
	}
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Whispers) == 40 }); err != nil {
		t.Fatalf("%d whispers, want 40", len(f.srv.State().Whispers))
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "95000", Login: "late", Text: "!claim"})
	st := f.waitSent(t, "@late won hoodie — today's whisper limit is reached, so get your pickup code on the claim page")
	if st.WhisperCapped != 0 || len(st.Whispers) != 40 {
		t.Fatalf("asked Twitch past the cap: %d refused, %d whispers", st.WhisperCapped, len(st.Whispers))
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "90000", Login: "w0", Text: "!mytoken"})
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Whispers) == 41 }); err != nil {
		t.Fatal("a recipient already whispered today got no whisper")
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestRepliesRespectRateLimit: with the clock stopped, exactly the limit
// goes out; the rest waits until the clock passes the window.
func TestRepliesRespectRateLimit(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)}
	f, err := setup(t, twitchtest.Options{Now: clk.Now}, func(c *Config) { c.Now = clk.Now })
	if err != nil {
		t.Fatal(err)
	}
	if l := f.client.SendLimit(); l.Messages != 20 || l.Per != 30*time.Second {
		t.Fatalf("limit %+v for a bot that is not the broadcaster", l)
	}
	for i := 0; i < 25; i++ {
		f.client.Outbox().Add(chat.Reply{Channel: "streamer", Text: fmt.Sprintf("line %d", i)})
	}
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Sent) == 20 }); err != nil {
		t.Fatalf("sent %d, want the limit of 20", len(f.srv.State().Sent))
	}
	if p := f.client.Outbox().Pending(); p != 5 {
		t.Fatalf("%d pending after the limit, want 5", p)
	}
	if n := len(f.srv.State().Sent); n != 20 {
		t.Fatalf("sent %d within one window", n)
	}
	clk.Add(31 * time.Second) // the window and the outbox's margin
	f.client.Outbox().Add()   // nudge is a no-op; add one more line to wake the sender
	f.client.Outbox().Add(chat.Reply{Channel: "streamer", Text: "line 25"})
	if _, err := f.srv.WaitFor(wait, func(st twitchtest.State) bool { return len(st.Sent) == 26 }); err != nil {
		t.Fatalf("sent %d after the window passed, want 26", len(f.srv.State().Sent))
	}

	// A bot that is the broadcaster gets the moderator limit.
	g, err := setup(t, twitchtest.Options{Bot: twitchtest.User{ID: "2002", Login: "streamer"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := g.client.SendLimit(); l.Messages != 100 {
		t.Fatalf("broadcaster limit %+v", l)
	}
}

// Claims waiting for a window's draw do not hold the workers that read
// chat: with two workers, six claims inside a window still reach the
// decider inside it, and other commands are answered meanwhile.
func TestWindowClaimsDoNotStallChat(t *testing.T) {
	f, err := setup(t, twitchtest.Options{}, func(c *Config) { c.Workers = 2 })
	if err != nil {
		t.Fatal(err)
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "3003", Login: "amod", Text: "!drop hoodie 10 5m window=3s", Badges: []string{"moderator"}})
	f.waitSent(t, "everyone who claims in the first 3 s has the same chance")
	d := mustLive(t, f.svc)
	for i := 0; i < 6; i++ {
		f.chat(t, twitchtest.ChatMessage{UserID: fmt.Sprintf("9%04d", i), Login: fmt.Sprintf("viewer%d", i), Text: "!claim"})
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "5005", Login: "rando", Text: "!stock"})
	f.waitSent(t, "hoodie: 10 of 10 left")
	if n := winners(t, f.svc, 6); n != 0 {
		t.Fatalf("%d claims decided before the window ended", n)
	}
	f.waitSent(t, "won hoodie")
	if _, err := f.srv.WaitFor(wait, func(twitchtest.State) bool { return winners(t, f.svc, 6) == 6 }); err != nil {
		t.Fatalf("%d of 6 window claims won", winners(t, f.svc, 6))
	}
	es, err := f.ledger.Entries(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Bucket != 0 || !e.ArrivedAt.Before(d.WindowEndsAt()) {
			t.Fatalf("claim of %s arrived at %s, after the window (ends %s)", e.UserID, e.ArrivedAt, d.WindowEndsAt())
		}
	}
}
