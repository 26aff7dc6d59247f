package twitch

import (
	"sync"
	"time"
)

// whisperBook keeps Twitch's cap on whisper recipients: 40 distinct users
// per day (Send Whisper reference). Over it Twitch refuses the whisper, so
// the bot knows before asking and points the winner to the claim page.
type whisperBook struct {
	mu    sync.Mutex
	cap   int
	day   time.Duration
	now   func() time.Time
	first map[string]time.Time // recipient -> first whisper (or reservation) within the day
	sent  map[string]struct{}  // recipients Twitch took a whisper for
	full  time.Time            // when the cap was last found reached (logged once per day)
	// capUntil: Twitch said the cap is reached; no new recipient before.
	capUntil time.Time
}

func newWhisperBook(limit int, day time.Duration, now func() time.Time) *whisperBook {
	return &whisperBook{cap: limit, day: day, now: now, first: make(map[string]time.Time), sent: make(map[string]struct{})}
}

func (b *whisperBook) pruneLocked(now time.Time) {
	for id, t := range b.first {
		if now.Sub(t) >= b.day {
			delete(b.first, id)
			delete(b.sent, id)
		}
	}
}

// take records a whisper to user; false when user would be a new recipient
// past the cap. first reports that this is the first refusal of the day.
func (b *whisperBook) take(user string) (ok, first bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.pruneLocked(now)
	if _, known := b.first[user]; known {
		return true, false
	}
	if len(b.first) >= b.cap || now.Before(b.capUntil) {
		first = b.full.IsZero() || now.Sub(b.full) >= b.day
		if first {
			b.full = now
		}
		return false, first
	}
	b.first[user] = now
	return true, false
}

// delivered records that Twitch took a whisper to user: the place is
// used for the day.
func (b *whisperBook) delivered(user string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent[user] = struct{}{}
}

// forget gives back a place reserved for a whisper Twitch did not take
// (unless an earlier whisper to the same user today went through).
func (b *whisperBook) forget(user string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[user]; !ok {
		delete(b.first, user)
	}
}

// fill marks the cap reached (Twitch said so with a 429 for a new
// recipient), so later winners are pointed to the claim page at once.
func (b *whisperBook) fill(user string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.first, user)
	b.capUntil = b.now().Add(b.day)
}
