package claims

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

// A million random guesses at a listen drop's code, each checked as the
// decider checks a claim, across the whole window: the accepted set is a
// handful of 32-bit codes, so none wins. The PRNG is seeded, so the test
// is the same every run.
func TestListenGuessingNeverWins(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	d := &Drop{ID: "guessme", OpensAt: t0, ClosesAt: t0.Add(10 * time.Minute), Grace: 30 * time.Second,
		ListenStep: DefaultListenStep, Seed: []byte("a seed nobody outside the server knows")}
	dc := &decider{d: d}
	rng := rand.New(rand.NewPCG(16, 0xC0DE))
	wins, late := 0, 0
	const guesses = 1_000_000
	window := d.EndsAt().Sub(d.OpensAt)
	for range guesses {
		at := d.OpensAt.Add(time.Duration(rng.Int64N(int64(window))))
		_, err := d.heardStep(FormatCueCode(rng.Uint32()), at, dc.codeAt)
		switch {
		case err == nil:
			wins++
		case microdrop.ErrorReason(err) == ReasonLateCode:
			late++
		}
	}
	if wins != 0 {
		t.Fatalf("%d of %d random guesses won", wins, guesses)
	}
	// The check is the real one: the true code at the same moments wins.
	at := d.OpensAt.Add(20 * time.Second)
	if n, err := d.heardStep(FormatCueCode(d.CueCodeAt(3)), at, dc.codeAt); err != nil || n != 3 {
		t.Fatalf("the true code: step %d, %v", n, err)
	}
	t.Logf("%d guesses: 0 wins, %d recognised as late", guesses, late)
}

// One viewer guessing is held to the per-user claim rate before the code is
// even checked: a burst of 10 000 attempts at one instant gets 3 checked.
func TestListenGuessesAreRateLimitedPerUser(t *testing.T) {
	l := newUserLimiter(2, 3, 1<<10)
	now := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	allowed := 0
	for range 10_000 {
		if l.allow("streamer", "guesser", now) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("%d attempts allowed in one instant, want the burst of 3", allowed)
	}
}
