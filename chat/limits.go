package chat

import (
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Rule is who may run a command and how often.
type Rule struct {
	Role Role // the least role allowed
	// Global is the least time between two runs in one channel; PerUser the
	// least time between two runs by one chatter. Runs inside a cooldown are
	// ignored without a reply.
	Global  time.Duration
	PerUser time.Duration
}

// Cooldown overrides a command's cooldowns.
type Cooldown struct {
	Global  time.Duration
	PerUser time.Duration
}

// DefaultRules: moderators and the broadcaster control drops, everyone may
// claim. !stock and !clip have channel-wide cooldowns so a crowd typing them
// gets one answer, not hundreds.
func DefaultRules() map[string]Rule {
	return map[string]Rule{
		CmdDrop:    {Role: Moderator},
		CmdClaim:   {Role: Viewer},
		CmdStock:   {Role: Viewer, Global: 5 * time.Second},
		CmdClip:    {Role: Viewer, Global: 10 * time.Second, PerUser: 30 * time.Second},
		CmdMyToken: {Role: Viewer, PerUser: 30 * time.Second},
	}
}

// Window allows at most N events in any span of Per: a sliding window,
// exact at the edges, so a platform limit of "20 per 30 s" is never
// exceeded however the sends bunch up.
type Window struct {
	N    int
	Per  time.Duration
	sent []time.Time // ascending, at most N
}

// NewWindow returns a limiter of n events per span.
func NewWindow(n int, per time.Duration) *Window {
	if n < 1 {
		n = 1
	}
	return &Window{N: n, Per: per, sent: make([]time.Time, 0, n)}
}

func (w *Window) prune(now time.Time) {
	i := 0
	for i < len(w.sent) && !w.sent[i].After(now.Add(-w.Per)) {
		i++
	}
	if i > 0 {
		w.sent = append(w.sent[:0], w.sent[i:]...)
	}
}

// Allow reports whether an event may happen at now, and records it if so.
func (w *Window) Allow(now time.Time) bool {
	w.prune(now)
	if len(w.sent) >= w.N {
		return false
	}
	w.sent = append(w.sent, now)
	return true
}

// Move re-times the latest event recorded at from to to (later): an
// Outbox records a send when it decides on it, then moves it to when the
// platform had certainly received it, since that is when the platform
// counts it.
func (w *Window) Move(from, to time.Time) {
	for i := len(w.sent) - 1; i >= 0; i-- {
		if w.sent[i].Equal(from) {
			w.sent = append(w.sent[:i], w.sent[i+1:]...)
			w.insert(to)
			return
		}
	}
}

// Forget removes the latest event recorded at at: a send the platform
// refused does not count against its limit.
func (w *Window) Forget(at time.Time) {
	for i := len(w.sent) - 1; i >= 0; i-- {
		if w.sent[i].Equal(at) {
			w.sent = append(w.sent[:i], w.sent[i+1:]...)
			return
		}
	}
}

func (w *Window) insert(t time.Time) {
	i := len(w.sent)
	for i > 0 && w.sent[i-1].After(t) {
		i--
	}
	w.sent = append(w.sent, time.Time{})
	copy(w.sent[i+1:], w.sent[i:])
	w.sent[i] = t
}

// Next is the earliest time an event will be allowed (now when it is).
func (w *Window) Next(now time.Time) time.Time {
	w.prune(now)
	if len(w.sent) < w.N {
		return now
	}
	return w.sent[0].Add(w.Per).Add(time.Nanosecond)
}

// gate holds the router's cooldowns and rate limits. Its memory is bounded:
// per-user state lives in LRU caches.
type gate struct {
	mu      sync.Mutex
	global  map[string]time.Time              // channel/cmd -> last run
	perUser *lru.Cache[string, time.Time]     // channel/cmd/user -> last run
	users   *lru.Cache[string, *rate.Limiter] // channel/user -> bucket
	rate    rate.Limit
	burst   int
	help    *lru.Cache[string, time.Time] // help replies: channel and channel/user
}

func newGate(perSecond float64, burst, size int) *gate {
	pu, _ := lru.New[string, time.Time](size)
	us, _ := lru.New[string, *rate.Limiter](size)
	hp, _ := lru.New[string, time.Time](size)
	return &gate{global: make(map[string]time.Time), perUser: pu, users: us, help: hp,
		rate: rate.Limit(perSecond), burst: burst}
}

// allowUser is the per-user rate limit over every command.
func (g *gate) allowUser(channel, user string, now time.Time) bool {
	key := channel + "\x00" + user
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.users.Get(key)
	if !ok {
		l = rate.NewLimiter(g.rate, g.burst)
		g.users.Add(key, l)
	}
	return l.AllowN(now, 1)
}

// cooldown reports whether cmd may run now, and starts its cooldowns if so.
func (g *gate) cooldown(channel, cmd, user string, r Rule, now time.Time) bool {
	if r.Global <= 0 && r.PerUser <= 0 {
		return true
	}
	gk := channel + "\x00" + cmd
	uk := gk + "\x00" + user
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Global > 0 {
		if last, ok := g.global[gk]; ok && now.Sub(last) < r.Global {
			return false
		}
	}
	if r.PerUser > 0 {
		if last, ok := g.perUser.Get(uk); ok && now.Sub(last) < r.PerUser {
			return false
		}
	}
	if r.Global > 0 {
		g.global[gk] = now
	}
	if r.PerUser > 0 {
		g.perUser.Add(uk, now)
	}
	return true
}

// allowHelp rate-limits the bot's help replies to malformed, unknown and
// unauthorised commands: one per channel per every, one per chatter per
// 6*every, so a crowd of typos never makes the bot spam.
func (g *gate) allowHelp(channel, user string, every time.Duration, now time.Time) bool {
	ck := "\x00help\x00" + channel
	uk := ck + "\x00" + user
	g.mu.Lock()
	defer g.mu.Unlock()
	if last, ok := g.help.Get(ck); ok && now.Sub(last) < every {
		return false
	}
	if last, ok := g.help.Get(uk); ok && now.Sub(last) < 6*every {
		return false
	}
	g.help.Add(ck, now)
	g.help.Add(uk, now)
	return true
}
