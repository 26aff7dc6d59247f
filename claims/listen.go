package claims

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// A "listen to claim" drop proves presence, not identity: the overlay and
// the relay play the audio cue at the start of every step of the window,
// each time with a fresh code derived from a secret that never leaves the
// server (ingest/cue/SPEC.md section 10), and a claim counts only with a
// code from the current step or from an earlier one still inside the drop's
// grace. A code copied out of a viewer's room into a bot network is stale
// within seconds.
const (
	// DefaultListenStep is how long one code lasts when the drop does not say.
	DefaultListenStep = 8 * time.Second
	// MinListenStep leaves room for the 0.96 s cue, the phone's detector and
	// the claim's round trip inside one step.
	MinListenStep = 2 * time.Second
	// MaxListenStep keeps a copied code useful for at most a minute.
	MaxListenStep = time.Minute
	// listenLookback is how many steps older than the grace are still
	// recognised, only to tell a late viewer "too late" instead of "wrong".
	listenLookback = 16
)

// ReasonLateCode is a rejection for a heard code whose step and grace have passed.
const ReasonLateCode = "late_code"

// listenLabel separates the listen secret from every other use of the seed.
const listenLabel = "microdrop listen secret v1"

// ListenSecret is the drop's key for its rotating codes: HMAC-SHA256 keyed
// with the drop's fairness seed over a fixed label. The seed is secret until
// the drop is final, and no code counts after that, so nothing new is kept.
func ListenSecret(seed []byte) []byte {
	m := hmac.New(sha256.New, seed)
	m.Write([]byte(listenLabel))
	return m.Sum(nil)
}

// ListenCode is the cue code of one step (SPEC.md section 10): the first 4
// bytes, big-endian, of HMAC-SHA256(secret, drop id || uint64 big-endian step).
func ListenCode(secret []byte, dropID string, step int64) uint32 {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(dropID))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(step))
	m.Write(b[:])
	return binary.BigEndian.Uint32(m.Sum(nil))
}

// FormatCueCode writes a heard code the way claims carry it: 8 hex digits.
func FormatCueCode(code uint32) string { return fmt.Sprintf("%08X", code) }

// parseCueCode reads a claim's code as 8 hex digits.
func parseCueCode(s string) (uint32, bool) {
	s = strings.TrimSpace(s)
	if len(s) != 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err == nil
}

// Listening reports whether the drop is claimed with heard rotating codes.
func (d *Drop) Listening() bool { return d.ListenStep > 0 }

// StepAt is the number of the step in force at t: 1 from the open for one
// ListenStep, then 2, and so on; 0 before the open or for a drop that is
// not a listen drop.
func (d *Drop) StepAt(t time.Time) int64 {
	if !d.Listening() || t.Before(d.OpensAt) {
		return 0
	}
	return int64(t.Sub(d.OpensAt)/d.ListenStep) + 1
}

// StepStart is when step n begins, and its cue is played.
func (d *Drop) StepStart(n int64) time.Time {
	return d.OpensAt.Add(time.Duration(n-1) * d.ListenStep)
}

// lastStep is the last step that starts inside the window: no cue plays
// after the close, though its code still counts during the grace.
func (d *Drop) lastStep() int64 {
	if !d.ClosesAt.After(d.OpensAt) {
		return 0
	}
	return d.StepAt(d.ClosesAt.Add(-time.Nanosecond))
}

// CueCodeAt is the code the cue carries during step n.
func (d *Drop) CueCodeAt(n int64) uint32 { return ListenCode(ListenSecret(d.Seed), d.ID, n) }

// heardStep finds the step of a heard code at t. A code counts from its
// step's start until its step's end plus the drop's grace; an older code is
// recognised for a while only to say so.
func (d *Drop) heardStep(text string, at time.Time, codeAt func(int64) uint32) (int64, error) {
	if text == "" {
		return 0, reject(microdrop.EINVALID, ReasonWrongCode, "this drop is claimed by listening: tap Listen on the claim page and hold your phone near the stream")
	}
	code, ok := parseCueCode(text)
	if !ok {
		return 0, reject(microdrop.EINVALID, ReasonWrongCode, "that is not a code this drop played")
	}
	cur := min(d.StepAt(at), d.lastStep())
	fresh := int64(d.Grace/d.ListenStep) + 1 // steps whose end plus grace can still be ahead
	for n := cur; n >= 1 && n >= cur-fresh-listenLookback; n-- {
		if codeAt(n) != code {
			continue
		}
		until := d.StepStart(n + 1).Add(d.Grace)
		if at.Before(until) {
			return n, nil
		}
		return 0, reject(microdrop.ECONFLICT, ReasonLateCode, fmt.Sprintf(
			"that code was heard too late: it played %s ago and counted for %s; keep listening for the next one",
			at.Sub(d.StepStart(n)).Round(time.Second), until.Sub(d.StepStart(n)).Round(time.Second)))
	}
	return 0, reject(microdrop.EINVALID, ReasonWrongCode, "that is not a code this drop played")
}

// stepCue announces a new step's code, at most once per step and only
// inside the window, so the overlay and the relay play it. Only the
// decider's goroutine calls it.
func (dc *decider) stepCue(now time.Time) {
	d := dc.d
	if !d.Listening() || d.State != Open || !now.Before(d.ClosesAt) {
		return
	}
	n := d.StepAt(now)
	if n <= dc.cueStep {
		return
	}
	dc.cueStep = n
	if n == 1 {
		return // announced by drop.opened, whose cue_code is step 1's code
	}
	dc.s.publish(microdrop.Event{Kind: microdrop.CueStep, Channel: d.Channel, DropID: d.ID, At: now,
		Step: &microdrop.CueStepView{Code: dc.codeAt(n), Step: n, StepMS: d.ListenStep.Milliseconds(),
			StartsAt: d.StepStart(n), GraceMS: d.Grace.Milliseconds()}})
}

// validateListen checks a listen request and gives the drop its first code.
func validateListen(r *OpenRequest, d *Drop) error {
	if !r.Listen {
		if r.ListenStep != 0 {
			return microdrop.Errorf(microdrop.EINVALID, "listen_step needs listen: true")
		}
		return nil
	}
	if r.ClaimCode != "" {
		return microdrop.Errorf(microdrop.EINVALID, "a listen drop has no typed claim code: its codes come from the audio cue")
	}
	step := time.Duration(r.ListenStep)
	if step == 0 {
		step = DefaultListenStep
	}
	if step < MinListenStep || step > MaxListenStep {
		return microdrop.Errorf(microdrop.EINVALID, "listen_step must be between %s and %s", MinListenStep, MaxListenStep)
	}
	d.ListenStep = step
	d.CueCode = d.CueCodeAt(1)
	return nil
}

// stepCodes remembers the codes of the steps a decider has checked, so a
// flood of claims costs map lookups, not HMACs. Only the decider's
// goroutine uses it.
type stepCodes struct {
	secret []byte
	m      map[int64]uint32
}

func (dc *decider) codeAt(n int64) uint32 {
	c := &dc.codes
	if c.m == nil || len(c.m) > 1024 {
		c.secret, c.m = ListenSecret(dc.d.Seed), make(map[int64]uint32, 64)
	}
	v, ok := c.m[n]
	if !ok {
		v = ListenCode(c.secret, dc.d.ID, n)
		c.m[n] = v
	}
	return v
}

// Wrong codes on listen drops, per remote address: a burst of
// guessBurst, then guessRate a second. A household or a venue behind one
// address sends right codes and is never held back; a guesser is, however
// many accounts it uses.
const (
	guessRate  = 1
	guessBurst = 10
)

func newGuessLimiter() *userLimiter { return newUserLimiter(guessRate, guessBurst, 1<<16) }

// exhausted reports whether key's bucket has no attempt left at now,
// without taking one.
func (l *userLimiter) exhausted(channel, key string, now time.Time) bool {
	k := channel + "\x00" + key
	sh := &l.shards[maphash.String(l.seed, k)%uint64(len(l.shards))]
	sh.mu.Lock()
	lim, ok := sh.cache.Get(k)
	sh.mu.Unlock()
	return ok && lim.TokensAt(now) < 1
}

// heard checks a listen claim's code: an address that has spent its wrong
// codes is refused before its code is looked at, and every wrong or late
// code spends one.
func (dc *decider) heard(cr *claimReq) (int64, error) {
	ip := cr.req.RemoteIP
	if ip != "" && dc.s.guesses.exhausted(dc.channel, ip, cr.at) {
		return 0, reject(microdrop.ERATELIMIT, ReasonRateLimited, "too many wrong codes from your network: listen again in a few seconds")
	}
	step, err := dc.d.heardStep(cr.req.Code, cr.at, dc.codeAt)
	if err != nil && ip != "" {
		dc.s.guesses.allow(dc.channel, ip, cr.at)
	}
	return step, err
}

// RemoteIP is the address of a web claim's connection. Forwarded headers
// are not trusted: anyone can write them.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// HeardSteps summarises a listen drop's entries by the step of the code
// each was claimed with, for the audit: "step 1: 3, step 2: 5".
func HeardSteps(es []Entry) string {
	count := map[int64]int{}
	var steps []int64
	for _, e := range es {
		if count[e.CueStep] == 0 {
			steps = append(steps, e.CueStep)
		}
		count[e.CueStep]++
	}
	slices.Sort(steps)
	parts := make([]string, 0, len(steps))
	for _, n := range steps {
		parts = append(parts, fmt.Sprintf("step %d: %d", n, count[n]))
	}
	return strings.Join(parts, ", ")
}
