package twitch

import (
	"sync"
	"time"

	"github.com/microdrop/microdrop/chat"
)

// whisperBook keeps Twitch's cap on whisper recipients: 40 distinct users
// per day (Send Whisper reference). Over it Twitch refuses the whisper, so
// the bot knows before asking and points the winner to the claim page.
type whisperBook struct {
	mu    sync.Mutex
	cap   int
	day   time.Duration
	now   func() time.Time
	first map[string]time.Time // recipient -> first whisper within the day
	full  time.Time            // when the cap was last found reached (logged once per day)
	// capUntil: Twitch said the cap is reached; no new recipient before.
	capUntil time.Time
}

func newWhisperBook(limit int, day time.Duration, now func() time.Time) *whisperBook {
	return &whisperBook{cap: limit, day: day, now: now, first: make(map[string]time.Time)}
}

func (b *whisperBook) pruneLocked(now time.Time) {
	for id, t := range b.first {
		if now.Sub(t) >= b.day {
			delete(b.first, id)
		}
	}
}

// state says whether user can be whispered now, without taking a place.
func (b *whisperBook) state(user string) chat.WhisperState {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.pruneLocked(now)
	if _, ok := b.first[user]; ok || (len(b.first) < b.cap && !now.Before(b.capUntil)) {
		return chat.WhisperAvailable
	}
	return chat.WhisperCapped
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

// forget gives back a place taken for a whisper Twitch did not deliver.
func (b *whisperBook) forget(user string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.first[user]; ok && t.Equal(at) {
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
