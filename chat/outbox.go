package chat

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Reply is one thing the bot says. Public replies with the same Group that
// wait in an Outbox together are sent as one line: "@a, @b, @c " + Tail.
type Reply struct {
	Channel string `json:"channel"`
	// Text is the complete line for this one chatter.
	Text string `json:"text"`
	// ReplyTo threads the reply to the platform message it answers.
	ReplyTo string `json:"reply_to,omitempty"`

	// Group, Mention and Tail let replies coalesce; Group empty means never.
	Group   string `json:"-"`
	Mention string `json:"-"`
	Tail    string `json:"-"`

	// Private replies go to one user only (a whisper): UserID/Login say
	// who; Fallback is what to say in public instead when the whisper
	// cannot be sent (it never carries the secret, not even masked).
	Private  bool   `json:"private,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	Login    string `json:"login,omitempty"`
	Fallback *Reply `json:"-"`
}

// Sender is what a platform adapter implements to deliver replies.
type Sender interface {
	// Say posts a line in the channel's chat, threaded to replyTo if set.
	Say(ctx context.Context, channel, text, replyTo string) error
	// Whisper sends text to one user. ErrNoWhisper when the platform (or
	// this account) cannot; the Outbox then says the reply's Fallback.
	Whisper(ctx context.Context, channel, userID, login, text string) error
}

// ErrNoWhisper is returned by a Sender that cannot whisper.
var ErrNoWhisper = errors.New("chat: whispers are not available")

// ErrRateLimited is what a RetryError wraps.
var ErrRateLimited = errors.New("chat: the platform refused the line for its rate limit")

// RetryError is returned by a Sender whose platform refused a line for its
// rate limit (Twitch: 429): the Outbox sends the line again, first, once
// At has passed, instead of dropping it.
type RetryError struct {
	At time.Time
}

func (e *RetryError) Error() string {
	return ErrRateLimited.Error() + "; retry at " + e.At.UTC().Format(time.RFC3339Nano)
}
func (e *RetryError) Unwrap() error { return ErrRateLimited }

// Limit is a platform's send limit: Messages per Per.
type Limit struct {
	Messages int
	Per      time.Duration
}

// OutboxOptions configure an Outbox. Zero values take Twitch-safe defaults.
type OutboxOptions struct {
	Sender Sender
	// Say limits public lines: 20 per 30 s when zero (a Twitch account
	// that is not a moderator of the channel).
	Say Limit
	// Whisper limits whispers: 3 per second and 100 per minute when empty.
	Whisper []Limit
	// Window is how long a coalescable reply waits for others to join it:
	// 250 ms when zero, so a chatter still hears back within a second.
	Window time.Duration
	// MaxAge drops public lines that waited longer than this behind the
	// send limit (stale answers confuse more than they help): one and a
	// half Say windows, at least 30 s, when zero (45.5 s for Twitch).
	MaxAge time.Duration
	// MaxLen is the platform's line limit in characters: 500 when zero.
	MaxLen int
	// MaxPending bounds the queue; beyond it new lines are dropped: 4096.
	MaxPending int
	// Margin widens the Say window beyond the platform's Per, against
	// clock differences between us and the platform: Per/60 when zero
	// (500 ms of Twitch's 30 s).
	Margin time.Duration
	// Retries bounds how often one line refused for the rate limit is sent
	// again before it is dropped: 5 when zero.
	Retries int
	Now     func() time.Time
	Logger  *slog.Logger
}

// Line is one send the Outbox decided on.
type Line struct {
	Channel  string
	Text     string
	ReplyTo  string
	Private  bool
	UserID   string
	Login    string
	Fallback *Reply

	decided time.Time // when the Say window counted it
	tries   int       // times refused for the rate limit
}

type pending struct {
	channel, group string
	at             time.Time // first reply's arrival
	first          Reply
	mentions       []string
	seen           map[string]struct{}
	tail           string
}

// Outbox queues replies, coalesces the ones that can be, and sends them no
// faster than the platform allows. Due is its deterministic core (tests
// drive it with their own clock); Run sends on a timer.
type Outbox struct {
	opt     OutboxOptions
	log     *slog.Logger
	mu      sync.Mutex
	queue   []*pending          // public lines in arrival order
	open    map[string]*pending // channel/group -> item still taking mentions
	private []Line
	retry   []Line    // public lines refused for the rate limit, sent first
	hold    time.Time // no public line before this (the platform said so)
	say     *Window
	whisper []*Window
	wake    chan struct{}
	dropped int
}

// NewOutbox returns an Outbox; call Run to start sending.
func NewOutbox(o OutboxOptions) *Outbox {
	if o.Say.Messages == 0 {
		o.Say = Limit{Messages: 20, Per: 30 * time.Second}
	}
	if len(o.Whisper) == 0 {
		o.Whisper = []Limit{{3, time.Second}, {100, time.Minute}}
	}
	if o.Window == 0 {
		o.Window = 250 * time.Millisecond
	}
	if o.MaxLen == 0 {
		o.MaxLen = 500
	}
	if o.MaxPending == 0 {
		o.MaxPending = 4096
	}
	if o.Margin == 0 {
		o.Margin = o.Say.Per / 60
	}
	if o.Retries == 0 {
		o.Retries = 5
	}
	if o.MaxAge == 0 {
		// Longer than one full Say window: a line that had to wait for the
		// window to pass must still go out when it passes.
		o.MaxAge = max(30*time.Second, o.Say.Per+o.Margin+o.Say.Per/2)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Outbox{opt: o, log: o.Logger.With("component", "chat.outbox"), open: make(map[string]*pending),
		say: NewWindow(o.Say.Messages, o.Say.Per+o.Margin), wake: make(chan struct{}, 1)}
	for _, l := range o.Whisper {
		b.whisper = append(b.whisper, NewWindow(l.Messages, l.Per))
	}
	return b
}

// Add queues replies. It never blocks.
func (b *Outbox) Add(rs ...Reply) {
	if len(rs) == 0 {
		return
	}
	now := b.opt.Now()
	b.mu.Lock()
	for _, r := range rs {
		if r.Private {
			if len(b.private) >= b.opt.MaxPending {
				b.dropped++
				continue
			}
			b.private = append(b.private, Line{Channel: r.Channel, Text: r.Text, Private: true,
				UserID: r.UserID, Login: r.Login, Fallback: r.Fallback})
			continue
		}
		if r.Group != "" {
			if p, ok := b.open[r.Channel+"\x00"+r.Group]; ok {
				p.add(r.Mention)
				continue
			}
		}
		if len(b.queue) >= b.opt.MaxPending {
			b.dropped++
			continue
		}
		p := &pending{channel: r.Channel, group: r.Group, at: now, first: r, tail: r.Tail}
		if r.Group != "" {
			p.seen = make(map[string]struct{})
			p.add(r.Mention)
			b.open[r.Channel+"\x00"+r.Group] = p
		}
		b.queue = append(b.queue, p)
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (p *pending) add(m string) {
	if _, ok := p.seen[m]; ok || m == "" {
		return
	}
	p.seen[m] = struct{}{}
	p.mentions = append(p.mentions, m)
}

// Dropped counts lines given up: queue full or too stale to send.
func (b *Outbox) Dropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Pending counts lines waiting.
func (b *Outbox) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue) + len(b.private) + len(b.retry)
}

// Hold keeps public lines back until t: the platform said its limit has
// no room before then (Twitch: Ratelimit-Remaining 0 until
// Ratelimit-Reset). A hold never lasts longer than one Say window.
func (b *Outbox) Hold(t time.Time) {
	b.mu.Lock()
	if limit := b.opt.Now().Add(b.opt.Say.Per + b.opt.Margin); t.After(limit) {
		t = limit
	}
	if t.After(b.hold) {
		b.hold = t
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Due takes the lines that may be sent at now, under the send limits, and
// says how long until more may be due (0 when nothing waits).
func (b *Outbox) Due(now time.Time) ([]Line, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Line
	for len(b.private) > 0 && b.allowWhisper(now) {
		out = append(out, b.private[0])
		b.private = b.private[1:]
	}
	var next time.Time
	limited := now.Before(b.hold)
	if limited {
		next = b.hold
	}
	for len(b.retry) > 0 && !limited {
		if !b.say.Allow(now) {
			limited = true
			break
		}
		l := b.retry[0]
		b.retry = b.retry[1:]
		l.decided = now
		out = append(out, l)
	}
	if len(b.retry) > 0 {
		limited = true
	}
	keep := b.queue[:0]
	for _, p := range b.queue {
		if now.Sub(p.at) > b.opt.MaxAge {
			b.close(p)
			b.dropped++
			continue
		}
		ready := p.group == "" || !now.Before(p.at.Add(b.opt.Window))
		if !ready {
			next = earliest(next, p.at.Add(b.opt.Window))
			keep = append(keep, p)
			continue
		}
		if limited || !b.say.Allow(now) {
			limited = true
			keep = append(keep, p)
			continue
		}
		b.close(p)
		l := b.render(p)
		l.decided = now
		out = append(out, l)
	}
	clear(b.queue[len(keep):])
	b.queue = keep
	if limited && !now.Before(b.hold) {
		next = earliest(next, b.say.Next(now))
	}
	if len(b.private) > 0 {
		// A whisper may go when every window allows it: the latest of them.
		at := now
		for _, w := range b.whisper {
			if n := w.Next(now); n.After(at) {
				at = n
			}
		}
		next = earliest(next, at)
	}
	if next.IsZero() {
		return out, 0
	}
	wait := next.Sub(now)
	if wait <= 0 {
		wait = time.Millisecond
	}
	return out, wait
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func (b *Outbox) allowWhisper(now time.Time) bool {
	for _, w := range b.whisper {
		if w.Next(now).After(now) {
			return false
		}
	}
	for _, w := range b.whisper {
		w.Allow(now)
	}
	return true
}

// close stops p taking more mentions: later replies start a new line.
func (b *Outbox) close(p *pending) {
	if p.group != "" {
		k := p.channel + "\x00" + p.group
		if b.open[k] == p {
			delete(b.open, k)
		}
	}
}

// render makes p's line: the reply itself when alone, else the mentions
// that fit the line limit and a count of the rest.
func (b *Outbox) render(p *pending) Line {
	l := Line{Channel: p.channel, Text: p.first.Text, ReplyTo: p.first.ReplyTo}
	if p.group == "" || len(p.mentions) <= 1 {
		l.Text = truncate(l.Text, b.opt.MaxLen)
		return l
	}
	l.ReplyTo = ""
	tail := " " + p.tail
	var sb strings.Builder
	for i, m := range p.mentions {
		part := "@" + m
		if i > 0 {
			part = ", " + part
		}
		rest := len(p.mentions) - i
		more := " and " + strconv.Itoa(rest) + " more"
		if utf8.RuneCountInString(sb.String()+part+tail)+len(" and 99999 more") > b.opt.MaxLen && i > 0 {
			sb.WriteString(more)
			break
		}
		sb.WriteString(part)
	}
	l.Text = truncate(sb.String()+tail, b.opt.MaxLen)
	return l
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Run sends due lines until ctx ends. Sends are one at a time, in order.
func (b *Outbox) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		lines, wait := b.Due(b.opt.Now())
		held := false
		for _, l := range lines {
			if held && !l.Private {
				b.requeue(l) // the platform just said no: do not spend a line finding out again
				continue
			}
			held = b.done(l, b.send(ctx, l)) || held
		}
		if wait == 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-timer.C:
		}
	}
}

func (b *Outbox) send(ctx context.Context, l Line) error {
	if b.opt.Sender == nil {
		return nil
	}
	if l.Private {
		err := b.opt.Sender.Whisper(ctx, l.Channel, l.UserID, l.Login, l.Text)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNoWhisper) {
			b.log.Warn("whisper failed; replying in public instead", "user", l.UserID, "err", err)
		}
		if l.Fallback != nil {
			b.Add(*l.Fallback)
		}
		return nil
	}
	return b.opt.Sender.Say(ctx, l.Channel, l.Text, l.ReplyTo)
}

// done settles a public line's place in the Say window. The platform
// counts a line when it arrives, which is after we decided to send it and
// no later than its answer: the line is counted from the answer, so the
// next line the window lets through can never arrive inside the span of
// the one it replaces. A line refused for the rate limit is not counted
// and goes first again once the platform's reset has passed.
func (b *Outbox) done(l Line, err error) (held bool) {
	if l.Private {
		return false
	}
	now := b.opt.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	var re *RetryError
	if errors.As(err, &re) {
		b.say.Forget(l.decided)
		if l.tries++; l.tries > b.opt.Retries {
			b.dropped++
			b.log.Warn("chat line dropped after repeated rate-limit refusals", "channel", l.Channel, "tries", l.tries)
			return true
		}
		b.retry = append(b.retry, l)
		at := re.At
		if limit := now.Add(b.opt.Say.Per + b.opt.Margin); at.After(limit) {
			at = limit
		}
		if at.After(b.hold) {
			b.hold = at
		}
		b.log.Info("chat line refused for the rate limit; sending it again", "channel", l.Channel, "at", at)
		return true
	}
	b.say.Move(l.decided, now)
	if err != nil {
		b.log.Warn("send chat message", "channel", l.Channel, "err", err)
	}
	return false
}

// requeue puts back a line decided on but not sent.
func (b *Outbox) requeue(l Line) {
	b.mu.Lock()
	b.say.Forget(l.decided)
	b.retry = append(b.retry, l)
	b.mu.Unlock()
}
