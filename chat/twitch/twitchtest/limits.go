package twitchtest

import (
	"net/http"
	"strconv"
	"time"
)

// Limit is a count per sliding span, counted when a request arrives, as
// Twitch counts chat messages.
type Limit struct {
	Messages int
	Per      time.Duration
}

// arrivals is a sliding window of accepted requests.
type arrivals struct {
	l  Limit
	at []time.Time // ascending
}

func (a *arrivals) prune(now time.Time) {
	i := 0
	for i < len(a.at) && !a.at[i].After(now.Add(-a.l.Per)) {
		i++
	}
	a.at = append(a.at[:0], a.at[i:]...)
}

// take records an arrival at now if the window has room.
func (a *arrivals) take(now time.Time) bool {
	a.prune(now)
	if len(a.at) >= a.l.Messages {
		return false
	}
	a.at = append(a.at, now)
	return true
}

// reset is when the window next has room (now when it has).
func (a *arrivals) reset(now time.Time) time.Time {
	a.prune(now)
	if len(a.at) < a.l.Messages {
		return now
	}
	return a.at[0].Add(a.l.Per)
}

// headers sets Ratelimit-Limit, Ratelimit-Remaining and Ratelimit-Reset
// (Unix seconds, rounded up so a client waiting for it is never early).
func (a *arrivals) headers(w http.ResponseWriter, now time.Time) {
	a.prune(now)
	reset := now
	if len(a.at) > 0 {
		reset = a.at[0].Add(a.l.Per)
	}
	sec := reset.Unix()
	if reset.Nanosecond() > 0 {
		sec++
	}
	h := w.Header()
	h.Set("Ratelimit-Limit", strconv.Itoa(a.l.Messages))
	h.Set("Ratelimit-Remaining", strconv.Itoa(max(0, a.l.Messages-len(a.at))))
	h.Set("Ratelimit-Reset", strconv.FormatInt(sec, 10))
}
