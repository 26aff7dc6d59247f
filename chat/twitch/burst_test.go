package twitch

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/chat"
	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
)

// TestClaimBurstStaysUnderChatLimit: 500 claims at once through a server
// that counts Send Chat Message at arrival over a sliding window, as
// Twitch does, and refuses the line over the limit with 429. The window
// is short (5 per 400 ms) so the test takes seconds, not minutes; the
// bunching that made Twitch refuse lines (a line timed when decided,
// counted by Twitch when it arrives) is the same at any scale. No line
// is refused and every claimer is answered.
func TestClaimBurstStaysUnderChatLimit(t *testing.T) {
	limit := twitchtest.Limit{Messages: 5, Per: 400 * time.Millisecond}
	f, err := setup(t, twitchtest.Options{ChatLimit: limit,
		Scopes: []string{"user:read:chat", "user:write:chat", "channel:manage:broadcast", "clips:edit"}},
		func(c *Config) { c.SendLimit = chat.Limit{Messages: limit.Messages, Per: limit.Per} })
	if err != nil {
		t.Fatal(err)
	}
	f.openDrop(t, 100)
	const n = 500
	for i := 0; i < n; i++ {
		f.chat(t, twitchtest.ChatMessage{UserID: fmt.Sprintf("9%04d", i), Login: fmt.Sprintf("v%d", i), Text: "!claim"})
	}
	answered := func(st twitchtest.State) int {
		seen := 0
		more := regexp.MustCompile(` and (\d+) more`)
		for _, m := range st.Sent {
			for _, w := range strings.Fields(m.Message) {
				if strings.HasPrefix(w, "@v") {
					seen++
				}
			}
			if mm := more.FindStringSubmatch(m.Message); mm != nil {
				k, _ := strconv.Atoi(mm[1])
				seen += k
			}
		}
		return seen
	}
	st, err := f.srv.WaitFor(15*time.Second, func(st twitchtest.State) bool {
		return len(st.Refused) > 0 || answered(st) >= n && f.client.Outbox().Pending() == 0
	})
	if len(st.Refused) > 0 {
		t.Fatalf("Twitch refused %d lines (429); first: %q", len(st.Refused), st.Refused[0].Message)
	}
	if err != nil {
		for _, m := range st.Sent {
			t.Log(m.Message)
		}
		t.Fatalf("%d of %d claimers answered, %d pending, %d dropped", answered(st), n, f.client.Outbox().Pending(), f.client.Outbox().Dropped())
	}
	if d := f.client.Outbox().Dropped(); d != 0 {
		t.Fatalf("%d lines dropped", d)
	}
	t.Logf("%d lines sent", len(st.Sent))
	if w := winners(t, f.svc, n); w != 100 {
		t.Fatalf("%d winners of 100", w)
	}
}

// TestRepliesNeverDrawA429: 60 lines as fast as the limit lets them go,
// through a server that counts at arrival, with some lines slower on the
// wire than others. Every line arrives, in order, and none is refused.
func TestRepliesNeverDrawA429(t *testing.T) {
	limit := twitchtest.Limit{Messages: 5, Per: 250 * time.Millisecond}
	// Some lines spend longer on the wire than others.
	wire := func(n int) time.Duration {
		if n%7 == 0 {
			return 40 * time.Millisecond
		}
		return 0
	}
	f, err := setup(t, twitchtest.Options{ChatLimit: limit, ChatLatency: wire},
		func(c *Config) { c.SendLimit = chat.Limit{Messages: limit.Messages, Per: limit.Per} })
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	for i := 0; i < n; i++ {
		f.client.Outbox().Add(chat.Reply{Channel: "streamer", Text: fmt.Sprintf("line %d", i)})
	}
	st, err := f.srv.WaitFor(time.Minute, func(st twitchtest.State) bool { return len(st.Sent) == n || len(st.Refused) > 0 })
	if len(st.Refused) > 0 {
		t.Fatalf("Twitch refused %q (429) after %d lines", st.Refused[0].Message, len(st.Sent))
	}
	if err != nil {
		t.Fatalf("%d of %d lines sent", len(st.Sent), n)
	}
	for i, m := range st.Sent {
		if m.Message != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, m.Message)
		}
	}
}

// TestClaimBurstWithWhisperCap: the same burst with whispers on. Twitch
// lets the bot whisper 40 new recipients a day: 40 winners are whispered,
// the other 60 are told in coalesced lines that the limit is reached and
// where their code is, and still no chat line is refused or lost.
func TestClaimBurstWithWhisperCap(t *testing.T) {
	limit := twitchtest.Limit{Messages: 5, Per: 400 * time.Millisecond}
	fast := []twitchtest.Limit{{Messages: 1000, Per: time.Second}} // whisper pacing is not what this test is about
	f, err := setup(t, twitchtest.Options{ChatLimit: limit, WhisperLimits: fast},
		func(c *Config) {
			c.SendLimit = chat.Limit{Messages: limit.Messages, Per: limit.Per}
			c.WhisperLimits = []chat.Limit{{Messages: 1000, Per: time.Second}}
		})
	if err != nil {
		t.Fatal(err)
	}
	f.openDrop(t, 100)
	const n = 500
	for i := 0; i < n; i++ {
		f.chat(t, twitchtest.ChatMessage{UserID: fmt.Sprintf("9%04d", i), Login: fmt.Sprintf("v%d", i), Text: "!claim"})
	}
	mention := regexp.MustCompile(`@(v\d+)`)
	more := regexp.MustCompile(` and (\d+) more`)
	count := func(st twitchtest.State) (answered, capped int) {
		for _, m := range st.Sent {
			k := len(mention.FindAllString(m.Message, -1))
			if mm := more.FindStringSubmatch(m.Message); mm != nil {
				x, _ := strconv.Atoi(mm[1])
				k += x
			}
			answered += k
			if strings.Contains(m.Message, "today's whisper limit is reached") {
				capped += k
			}
		}
		return
	}
	st, err := f.srv.WaitFor(time.Minute, func(st twitchtest.State) bool {
		a, _ := count(st)
		return len(st.Refused) > 0 || a >= n && len(st.Whispers) >= 40 && f.client.Outbox().Pending() == 0
	})
	a, capped := count(st)
	if len(st.Refused) > 0 {
		t.Fatalf("Twitch refused %d lines (429)", len(st.Refused))
	}
	if err != nil || a != n || len(st.Whispers) != 40 || capped != 60 || st.WhisperCapped != 0 {
		t.Fatalf("answered %d of %d, %d whispers, %d told of the cap, %d whispers refused by Twitch; %v", a, n, len(st.Whispers), capped, st.WhisperCapped, err)
	}
	for _, m := range st.Sent {
		if strings.Contains(m.Message, "…") {
			t.Fatalf("a masked code in chat: %q", m.Message)
		}
	}
	if s := f.client.Stats(); s.WhisperCapped != 60 {
		t.Fatalf("stats count %d capped whispers, want 60", s.WhisperCapped)
	}
}

// TestRefusedLineIsRetried: when Twitch refuses a line anyway (its limit is
// tighter than the one the client was given), the line is sent again once
// Ratelimit-Reset passes, in order, and nothing is dropped.
func TestRefusedLineIsRetried(t *testing.T) {
	f, err := setup(t, twitchtest.Options{ChatLimit: twitchtest.Limit{Messages: 3, Per: 300 * time.Millisecond}},
		func(c *Config) { c.SendLimit = chat.Limit{Messages: 5, Per: 300 * time.Millisecond} })
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	for i := 0; i < n; i++ {
		f.client.Outbox().Add(chat.Reply{Channel: "streamer", Text: fmt.Sprintf("line %d", i)})
	}
	st, err := f.srv.WaitFor(30*time.Second, func(st twitchtest.State) bool { return len(st.Sent) == n })
	if err != nil {
		t.Fatalf("%d of %d lines arrived (%d refused, %d dropped)", len(st.Sent), n, len(st.Refused), f.client.Outbox().Dropped())
	}
	for i, m := range st.Sent {
		if m.Message != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, m.Message)
		}
	}
	if f.client.Outbox().Dropped() != 0 {
		t.Fatalf("%d lines dropped", f.client.Outbox().Dropped())
	}
	if len(st.Refused) == 0 {
		t.Fatal("Twitch refused nothing: the test did not exercise the retry")
	}
}
