package chat

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a test clock: time moves only when the test says.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestWindowNeverExceedsLimit(t *testing.T) {
	clk := newClock()
	w := NewWindow(20, 30*time.Second)
	var sent []time.Time
	// Try to send every 100 ms for five minutes of test time.
	for i := 0; i < 3000; i++ {
		if w.Allow(clk.Now()) {
			sent = append(sent, clk.Now())
		}
		clk.Add(100 * time.Millisecond)
	}
	for i := range sent {
		n := 0
		for j := i; j < len(sent) && sent[j].Sub(sent[i]) < 30*time.Second; j++ {
			n++
		}
		if n > 20 {
			t.Fatalf("%d sends in the 30 s from %v", n, sent[i])
		}
	}
	if len(sent) < 20*10 {
		t.Fatalf("only %d sends in 5 minutes; the limit allows 200", len(sent))
	}
}

func TestOutboxCoalescesClaims(t *testing.T) {
	clk := newClock()
	b := NewOutbox(OutboxOptions{Now: clk.Now})
	for _, name := range []string{"a", "b", "c", "b"} {
		b.Add(Reply{Channel: "ch", Text: "@" + name + " won hoodie", Group: "won:d1", Mention: name, Tail: "won hoodie — check your whispers"})
	}
	b.Add(Reply{Channel: "ch", Text: "@x sorry, sold out", Group: "reject:sold_out", Mention: "x", Tail: "sorry, sold out"})
	lines, wait := b.Due(clk.Now())
	if len(lines) != 0 || wait != 250*time.Millisecond {
		t.Fatalf("lines sent before the window: %v, wait %v", lines, wait)
	}
	clk.Add(250 * time.Millisecond)
	lines, wait = b.Due(clk.Now())
	if len(lines) != 2 || wait != 0 {
		t.Fatalf("want 2 lines, got %+v (wait %v)", lines, wait)
	}
	if lines[0].Text != "@a, @b, @c won hoodie — check your whispers" {
		t.Errorf("coalesced line %q", lines[0].Text)
	}
	if lines[1].Text != "@x sorry, sold out" {
		t.Errorf("single reply %q", lines[1].Text)
	}
}

func TestOutboxLongGroupFitsOneLine(t *testing.T) {
	clk := newClock()
	b := NewOutbox(OutboxOptions{Now: clk.Now})
	for i := 0; i < 1000; i++ {
		n := fmt.Sprintf("viewer%04d", i)
		b.Add(Reply{Channel: "ch", Text: "@" + n + " sold out", Group: "g", Mention: n, Tail: "sorry, sold out"})
	}
	clk.Add(time.Second)
	lines, _ := b.Due(clk.Now())
	if len(lines) != 1 {
		t.Fatalf("want one line for 1000 mentions, got %d", len(lines))
	}
	l := lines[0].Text
	if len([]rune(l)) > 500 || !strings.HasSuffix(l, "more sorry, sold out") || !strings.HasPrefix(l, "@viewer0000, @viewer0001") {
		t.Fatalf("line %d chars: %q", len([]rune(l)), l)
	}
}

// TestOutboxRespectsSendLimit: however many replies pile up, no 30 s span
// sees more than the limit, and stale lines are dropped rather than sent late.
func TestOutboxRespectsSendLimit(t *testing.T) {
	for _, lim := range []int{20, 100} {
		t.Run(fmt.Sprint(lim), func(t *testing.T) {
			clk := newClock()
			b := NewOutbox(OutboxOptions{Now: clk.Now, Say: Limit{lim, 30 * time.Second}, MaxAge: time.Hour})
			for i := 0; i < 3*lim; i++ {
				b.Add(Reply{Channel: "ch", Text: fmt.Sprintf("line %d", i)})
			}
			var sent []time.Time
			for step := 0; step < 1000 && b.Pending() > 0; step++ {
				lines, wait := b.Due(clk.Now())
				for range lines {
					sent = append(sent, clk.Now())
				}
				if wait == 0 {
					wait = time.Second
				}
				clk.Add(wait)
			}
			if len(sent) != 3*lim {
				t.Fatalf("sent %d of %d", len(sent), 3*lim)
			}
			for i := range sent {
				n := 0
				for j := i; j < len(sent) && sent[j].Sub(sent[i]) < 30*time.Second; j++ {
					n++
				}
				if n > lim {
					t.Fatalf("%d lines within 30 s, limit %d", n, lim)
				}
			}
			if got := sent[len(sent)-1].Sub(sent[0]); got < 60*time.Second {
				t.Fatalf("3×limit lines went out in %v; the limit needs at least 60 s", got)
			}
		})
	}
}

func TestOutboxDropsStaleLines(t *testing.T) {
	clk := newClock()
	b := NewOutbox(OutboxOptions{Now: clk.Now, Say: Limit{1, 30 * time.Second}, MaxAge: 10 * time.Second})
	b.Add(Reply{Channel: "ch", Text: "one"}, Reply{Channel: "ch", Text: "two"})
	lines, _ := b.Due(clk.Now())
	if len(lines) != 1 {
		t.Fatalf("got %d lines", len(lines))
	}
	clk.Add(31 * time.Second)
	lines, _ = b.Due(clk.Now())
	if len(lines) != 0 || b.Dropped() != 1 {
		t.Fatalf("stale line sent (%v) or not counted (%d)", lines, b.Dropped())
	}
}

func TestOutboxWhisperLimits(t *testing.T) {
	clk := newClock()
	b := NewOutbox(OutboxOptions{Now: clk.Now})
	for i := 0; i < 10; i++ {
		b.Add(Reply{Channel: "ch", Private: true, UserID: fmt.Sprint(i), Text: "code"})
	}
	lines, wait := b.Due(clk.Now())
	if len(lines) != 3 || wait != time.Second+time.Nanosecond {
		t.Fatalf("first second: %d whispers, wait %v; want 3 per second", len(lines), wait)
	}
}

type recSender struct {
	mu       sync.Mutex
	said     []string
	whispers []string
	noWhisp  bool
}

func (s *recSender) Say(_ context.Context, _, text, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.said = append(s.said, text)
	return nil
}

func (s *recSender) Whisper(_ context.Context, _, _, _, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.noWhisp {
		return ErrNoWhisper
	}
	s.whispers = append(s.whispers, text)
	return nil
}

func (s *recSender) snapshot() (said, whispers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.said...), append([]string(nil), s.whispers...)
}

func TestOutboxWhisperFallback(t *testing.T) {
	clk := newClock()
	s := &recSender{noWhisp: true}
	b := NewOutbox(OutboxOptions{Now: clk.Now, Sender: s})
	b.Add(Reply{Channel: "ch", Private: true, UserID: "1", Text: "code ABCD-1234", Fallback: &Reply{Channel: "ch", Text: "@a your code is on the claim page"}})
	lines, _ := b.Due(clk.Now())
	for _, l := range lines {
		b.send(context.Background(), l)
	}
	lines, _ = b.Due(clk.Now())
	for _, l := range lines {
		b.send(context.Background(), l)
	}
	said, _ := s.snapshot()
	if len(said) != 1 || said[0] != "@a your code is on the claim page" {
		t.Fatalf("said %q", said)
	}
}

// arrivalLimit is a platform that counts a line when it arrives, over a
// sliding window, and refuses one over the limit with a RetryError.
type arrivalLimit struct {
	n   int
	per time.Duration
	at  []time.Time
}

func (a *arrivalLimit) arrive(t time.Time) error {
	keep := a.at[:0]
	for _, x := range a.at {
		if x.After(t.Add(-a.per)) {
			keep = append(keep, x)
		}
	}
	a.at = keep
	if len(a.at) >= a.n {
		return &RetryError{At: a.at[0].Add(a.per)}
	}
	a.at = append(a.at, t)
	return nil
}

// TestOutboxCountsLikeThePlatform drives the Outbox's core with a clock
// that moves while each line travels: a line arrives some time after the
// Outbox decided on it (more for some lines than others), and the
// platform counts it then. The Outbox never sends a line the platform
// refuses, and a refused line (here forced once) is sent again, not lost.
func TestOutboxCountsLikeThePlatform(t *testing.T) {
	clk := newClock()
	lim := Limit{Messages: 20, Per: 30 * time.Second}
	b := NewOutbox(OutboxOptions{Now: clk.Now, Say: lim, MaxAge: time.Hour})
	p := &arrivalLimit{n: lim.Messages, per: lim.Per}
	const n = 200
	for i := 0; i < n; i++ {
		b.Add(Reply{Channel: "ch", Text: fmt.Sprintf("line %d", i)})
	}
	latency := []time.Duration{40 * time.Millisecond, 2 * time.Millisecond, 15 * time.Millisecond, 1 * time.Millisecond}
	var got []string
	refused, forced := 0, false
	for step := 0; len(got) < n && step < 100000; step++ {
		lines, wait := b.Due(clk.Now())
		for i, l := range lines {
			lat := latency[(len(got)+i)%len(latency)]
			clk.Add(lat / 2)
			err := p.arrive(clk.Now())
			if err == nil && !forced && len(got) == 50 {
				// The platform refuses a line anyway (its count and ours
				// differ): it must come back.
				p.at = p.at[:len(p.at)-1]
				err, forced = &RetryError{At: clk.Now().Add(time.Second)}, true
			} else if err != nil {
				refused++
			}
			clk.Add(lat / 2)
			if err == nil {
				got = append(got, l.Text)
			}
			b.done(l, err)
		}
		if len(lines) == 0 {
			if wait == 0 {
				wait = time.Millisecond
			}
			clk.Add(wait)
		}
	}
	if refused != 0 {
		t.Fatalf("the platform refused %d lines the Outbox sent", refused)
	}
	if len(got) != n || b.Dropped() != 0 {
		t.Fatalf("%d of %d lines arrived, %d dropped", len(got), n, b.Dropped())
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct lines of %d", len(seen), n)
	}
}
