package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// Deps is what a Router needs.
type Deps struct {
	Claims *claims.Service
	Bus    microdrop.Bus
	Logger *slog.Logger
	Now    func() time.Time
	// Prefix starts every command: "!" when empty.
	Prefix string
	// Permissions override the least role per command word (CmdDrop, ...).
	Permissions map[string]Role
	// Cooldowns override per-command cooldowns.
	Cooldowns map[string]Cooldown
	// UserRate and UserBurst limit each chatter's commands of any kind:
	// 1 per second with a burst of 3 when zero. Commands over the limit are
	// ignored without a reply.
	UserRate  float64
	UserBurst int
	// HelpEvery spaces the bot's help replies to bad commands: at most one
	// per channel per HelpEvery (and one per chatter per 6×): 10 s when zero.
	HelpEvery time.Duration
	// Users bounds the per-user state kept (LRU): 100 000 when zero.
	Users int
	// ClaimURL is the claim page of a drop (the public URL's /c/{drop}),
	// where a winner who cannot be whispered signs in to see the pickup
	// code: a relative /c/{drop} when nil.
	ClaimURL func(dropID string) string
}

// Router turns chat commands into calls on the claims service and replies.
// It is safe for concurrent use: adapters call Handle from many goroutines.
type Router struct {
	claims    *claims.Service
	bus       microdrop.Bus
	log       *slog.Logger
	now       func() time.Time
	prefix    string
	rules     map[string]Rule
	gate      *gate
	helpEvery time.Duration
	claimURL  func(dropID string) string

	mu    sync.Mutex
	ended map[string]endedDrop // channel -> its last drop, looked up at
}

type endedDrop struct {
	d  *claims.Drop
	at time.Time
}

// recentlyEnded is how long after its end a drop is named in replies to late claims.
const recentlyEnded = 2 * time.Minute

// recent returns the channel's last drop if it ended recently. The answer
// is cached for a second: after a sell-out a flood of late claims would
// otherwise each read the ledger.
func (r *Router) recent(ctx context.Context, channel string) *claims.Drop {
	now := r.now()
	r.mu.Lock()
	e, ok := r.ended[channel]
	r.mu.Unlock()
	if !ok || now.Sub(e.at) > time.Second || now.Before(e.at) {
		d, err := r.claims.Current(ctx, channel)
		if err != nil {
			d = nil
		}
		e = endedDrop{d: d, at: now}
		r.mu.Lock()
		r.ended[channel] = e
		r.mu.Unlock()
	}
	if e.d == nil || !e.d.State.Final() {
		return nil
	}
	end := e.d.ClosedAt
	if end.IsZero() {
		end = e.d.EndsAt()
	}
	if now.Sub(end) > recentlyEnded {
		return nil
	}
	return e.d
}

// NewRouter returns a Router.
func NewRouter(d Deps) (*Router, error) {
	if d.Claims == nil || d.Bus == nil {
		return nil, errors.New("chat: router needs the claims service and the bus")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Prefix == "" {
		d.Prefix = "!"
	}
	if d.UserRate == 0 {
		d.UserRate = 1
	}
	if d.UserBurst == 0 {
		d.UserBurst = 3
	}
	if d.HelpEvery == 0 {
		d.HelpEvery = 10 * time.Second
	}
	if d.Users == 0 {
		d.Users = 100_000
	}
	if d.ClaimURL == nil {
		d.ClaimURL = func(id string) string { return "/c/" + id }
	}
	rules := DefaultRules()
	for cmd, role := range d.Permissions {
		r, ok := rules[cmd]
		if !ok {
			return nil, fmt.Errorf("chat: permission for unknown command %q", cmd)
		}
		r.Role = role
		rules[cmd] = r
	}
	for cmd, cd := range d.Cooldowns {
		r, ok := rules[cmd]
		if !ok {
			return nil, fmt.Errorf("chat: cooldown for unknown command %q", cmd)
		}
		if cd.Global < 0 || cd.PerUser < 0 {
			return nil, fmt.Errorf("chat: cooldown for %q is negative", cmd)
		}
		r.Global, r.PerUser = cd.Global, cd.PerUser
		rules[cmd] = r
	}
	return &Router{claims: d.Claims, bus: d.Bus, log: d.Logger.With("component", "chat"), now: d.Now,
		prefix: d.Prefix, rules: rules, ended: make(map[string]endedDrop), gate: newGate(d.UserRate, d.UserBurst, d.Users), helpEvery: d.HelpEvery, claimURL: d.ClaimURL}, nil
}

// Prefix is the command prefix.
func (r *Router) Prefix() string { return r.prefix }

// IsClaim reports whether text is a !claim command, so an adapter can look
// up what the claim needs (account age) only when it matters.
func (r *Router) IsClaim(text string) bool {
	c, err := Parse(r.prefix, text)
	return err == nil && c.Name == CmdClaim
}

// Handle runs one chat message and returns the replies to send (none for
// ordinary chat, ignored and rate-limited commands). Every reply is safe to
// show in chat. Bad input changes nothing.
func (r *Router) Handle(ctx context.Context, m Message) []Reply {
	// Platforms vouch for who spoke, not for what their names contain:
	// control, bidi and invisible characters are stripped here, once for
	// every platform, so they never reach a reply or the overlay.
	m.Login = microdrop.DisplayText(m.Login, 64)
	m.DisplayName = microdrop.DisplayText(m.DisplayName, 64)
	m.Text = microdrop.DisplayText(m.Text, 0)
	cmd, err := Parse(r.prefix, m.Text)
	if errors.Is(err, ErrNotCommand) {
		return nil
	}
	m.Channel = claims.NormalizeChannel(m.Channel)
	if m.UserID == "" || m.Channel == "" {
		return nil
	}
	now := r.now()
	if !r.gate.allowUser(m.Channel, m.UserID, now) {
		return nil
	}
	if pe := (*ParseError)(nil); errors.As(err, &pe) {
		return r.help(m, now, pe.Msg)
	}
	rule := r.rules[cmd.Name]
	if m.Role < rule.Role {
		return r.help(m, now, fmt.Sprintf("%s%s is for %ss and up", r.prefix, cmd.Name, rule.Role))
	}
	if !r.gate.cooldown(m.Channel, cmd.Name, m.UserID, rule, now) {
		return nil
	}
	switch cmd.Name {
	case CmdDrop:
		return r.drop(ctx, m, cmd)
	case CmdClaim:
		return r.claim(ctx, m, cmd)
	case CmdStock:
		return r.stock(m, now)
	case CmdClip:
		return r.clip(ctx, m, cmd, now)
	case CmdMyToken:
		return r.myToken(ctx, m)
	}
	return nil
}

func (r *Router) help(m Message, now time.Time, msg string) []Reply {
	if !r.gate.allowHelp(m.Channel, m.UserID, r.helpEvery, now) {
		return nil
	}
	return []Reply{r.to(m, msg)}
}

// to is a reply addressed to the chatter.
func (r *Router) to(m Message, text string) Reply {
	return Reply{Channel: m.Channel, Text: "@" + m.Name() + " " + text, ReplyTo: m.ID}
}

// grouped is a reply that coalesces with others of the same group.
func (r *Router) grouped(m Message, group, tail string) Reply {
	rep := r.to(m, tail)
	rep.Group, rep.Mention, rep.Tail = group, m.Name(), tail
	return rep
}

func (r *Router) drop(ctx context.Context, m Message, c Command) []Reply {
	by := m.Login
	switch c.Action {
	case ActionOpen:
		req := claims.OpenRequest{
			Channel: m.Channel, SKU: c.SKU, Stock: c.Stock, Duration: claims.Duration(c.Duration),
			PriceMinor: c.PriceMinor, Currency: c.Currency, Policy: c.Policy, ClaimCode: c.Code, Listen: c.Listen, By: by,
		}
		if c.Budget != nil {
			b := claims.Duration(*c.Budget)
			req.Budget = &b
		}
		d, err := r.claims.OpenDrop(ctx, req)
		if err != nil {
			return []Reply{r.failed(m, "couldn't open the drop", err)}
		}
		how := "type " + r.prefix + "claim"
		if d.ClaimCode != "" {
			how = "type " + r.prefix + "claim with the code shown on stream"
		}
		if d.Listening() {
			how = "open the claim page and tap Listen near the stream"
		}
		if d.Policy == claims.Raffle {
			how += " to enter the raffle, drawn at close"
		}
		if note := d.View().WindowNote(); note != "" {
			how += "; " + note
		}
		return []Reply{{Channel: m.Channel, Text: fmt.Sprintf("%s drop is open: %d available for %s — %s",
			d.Title, d.Stock, roundDur(d.ClosesAt.Sub(d.OpensAt)), how)}}
	case ActionClose, ActionExtend:
		live, ok := r.claims.Live(m.Channel)
		if !ok {
			return []Reply{r.to(m, "no drop is open right now")}
		}
		if c.Action == ActionClose {
			d, err := r.claims.CloseDrop(ctx, live.ID, by)
			if err != nil {
				return []Reply{r.failed(m, "couldn't close the drop", err)}
			}
			text := fmt.Sprintf("%s drop closed: %d of %d claimed", d.Title, d.Stock-d.Remaining, d.Stock)
			if d.State == claims.Grace {
				text += fmt.Sprintf(" (claims already sent count for %s more)", roundDur(d.Grace))
			}
			return []Reply{{Channel: m.Channel, Text: text}}
		}
		d, err := r.claims.ExtendDrop(ctx, live.ID, c.Duration, by)
		if err != nil {
			return []Reply{r.failed(m, "couldn't extend the drop", err)}
		}
		return []Reply{{Channel: m.Channel, Text: fmt.Sprintf("%s drop extended by %s: %d left, closes in %s",
			d.Title, roundDur(c.Duration), d.Remaining, roundDur(d.ClosesAt.Sub(r.now())))}}
	}
	return nil
}

// failed words a claims error for chat: the domain message, never internal text.
func (r *Router) failed(m Message, what string, err error) Reply {
	if microdrop.ErrorCode(err) == microdrop.EINTERNAL {
		r.log.Error(what, "channel", m.Channel, "user", m.UserID, "err", err)
	}
	return r.to(m, what+": "+microdrop.ErrorMessage(err))
}

func (r *Router) claim(ctx context.Context, m Message, c Command) []Reply {
	// Right after a drop ends the channel has no live drop, and a claim by
	// channel would be decided (and counted in /api/stats and /metrics) as
	// not_open; naming the drop that just ended lets the service say
	// sold_out or closed, as it does for a claim sent to the API.
	dropID := ""
	if _, live := r.claims.Live(m.Channel); !live {
		if d := r.recent(ctx, m.Channel); d != nil {
			dropID = d.ID
		}
	}
	res, err := r.claims.Claim(ctx, claims.ClaimRequest{
		Channel: m.Channel, DropID: dropID,
		Viewer: claims.Viewer{UserID: m.UserID, Login: m.Login, Subscriber: m.Role >= Subscriber,
			AccountCreated: m.AccountCreated},
		Code: c.Code,
	})
	if err != nil {
		reason := microdrop.ErrorReason(err)
		switch {
		case reason == claims.ReasonRateLimited:
			return nil
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return nil
		case microdrop.ErrorCode(err) == microdrop.EINTERNAL:
			r.log.Error("claim", "channel", m.Channel, "user", m.UserID, "err", err)
			return []Reply{r.grouped(m, "claim-error", "couldn't record your claim, please try again")}
		}
		msg := microdrop.ErrorMessage(err)
		switch reason {
		case claims.ReasonLostDraw:
			msg = "not this time — others in your moment got the last ones"
			if d := r.recent(ctx, m.Channel); d != nil && d.Policy == claims.Window {
				msg = "not this time — everyone who claimed in the first " +
					strconv.FormatFloat(d.Budget.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + " s had the same chance, and the draw went to others"
			}
		case claims.ReasonWaitlisted:
			msg = "sold out for now — you're in line if a winner doesn't pay in time"
		case claims.ReasonSoldOut:
			if d := r.recent(ctx, m.Channel); d != nil {
				msg = "sorry, " + d.Title + " sold out"
			}
		case claims.ReasonClosed:
			if d := r.recent(ctx, m.Channel); d != nil {
				msg = "the " + d.Title + " drop has closed"
			}
		case claims.ReasonNotOpen:
			// Right after a drop ends, say how it ended rather than "no drop".
			if d := r.recent(ctx, m.Channel); d != nil {
				if d.State == claims.SoldOut {
					reason, msg = claims.ReasonSoldOut, "sorry, "+d.Title+" sold out"
				} else {
					reason, msg = claims.ReasonClosed, "the "+d.Title+" drop has closed"
				}
			}
		}
		return []Reply{r.grouped(m, "reject:"+reason+":"+msg, msg)}
	}
	title := res.DropID
	if d, ok := r.claims.Live(m.Channel); ok && d.ID == res.DropID {
		title = d.Title
	} else if d, err := r.claims.Drop(ctx, res.DropID); err == nil {
		title = d.Title
	}
	switch res.Outcome {
	case claims.OutcomeWon:
		if res.HoldID != "" {
			// A paid drop: the win is a hold, paid on the claim page.
			mins := int((res.PayBy.Sub(r.now()) + time.Minute - 1) / time.Minute)
			return []Reply{r.grouped(m, "won-hold:"+res.DropID, fmt.Sprintf("won %s — pay within %d min on the claim page", title, mins))}
		}
		if ws := m.whisperState(); ws != WhisperAvailable {
			// No whisper, so no code in chat either (not even masked): the
			// claim page shows it to the signed-in winner.
			return []Reply{r.onClaimPage(m, res.DropID, "won "+title, ws)}
		}
		return []Reply{
			r.grouped(m, "won:"+res.DropID, "won "+title+" — check your whispers for the pickup code"),
			r.pickup(m, res.DropID, title, res.Token, res.ExpiresAt),
		}
	case claims.OutcomeEntered:
		return []Reply{r.grouped(m, "entered:"+res.DropID, "you're in the "+title+" raffle — winners are drawn at close")}
	}
	return []Reply{r.grouped(m, "outcome:"+res.Outcome, res.Outcome)}
}

// pickup is the private reply carrying a pickup token. When the whisper
// cannot be sent after all (the platform's daily cap, a bot account
// without a verified phone), the winner is pointed to the claim page.
func (r *Router) pickup(m Message, dropID, title, token string, expires time.Time) Reply {
	text := fmt.Sprintf("You won %s! Your pickup code: %s", title, token)
	if !expires.IsZero() {
		text += " (valid until " + expires.UTC().Format("2006-01-02") + ")"
	}
	fb := r.onClaimPage(m, dropID, "won "+title, WhisperOff)
	return Reply{Channel: m.Channel, Private: true, UserID: m.UserID, Login: m.Login, Text: text, Fallback: &fb}
}

// onClaimPage is the public line for a winner the bot cannot whisper:
// where the code is, and, when the platform's cap is why, that it is.
func (r *Router) onClaimPage(m Message, dropID, what string, why WhisperState) Reply {
	tail := what + " — get your pickup code on the claim page: " + r.claimURL(dropID)
	if why == WhisperCapped {
		tail = what + " — today's whisper limit is reached, so get your pickup code on the claim page: " + r.claimURL(dropID)
	}
	return r.grouped(m, fmt.Sprintf("page:%d:%s:%s", why, dropID, what), tail)
}

// Mask shows only the last four characters of a secret.
func Mask(s string) string {
	if len(s) <= 4 {
		return "…"
	}
	return "…" + s[len(s)-4:]
}

func (r *Router) stock(m Message, now time.Time) []Reply {
	d, ok := r.claims.Live(m.Channel)
	if !ok {
		return []Reply{{Channel: m.Channel, Text: "no drop is open right now", ReplyTo: m.ID}}
	}
	var when string
	switch d.StateAt(now) {
	case claims.Scheduled:
		when = "opens in " + roundDur(d.OpensAt.Sub(now))
	case claims.Open:
		when = "closes in " + roundDur(d.ClosesAt.Sub(now))
	default:
		when = "closed, last claims being counted"
	}
	return []Reply{{Channel: m.Channel, Text: fmt.Sprintf("%s: %d of %d left, %s", d.Title, d.Remaining, d.Stock, when), ReplyTo: m.ID}}
}

func (r *Router) clip(ctx context.Context, m Message, c Command, now time.Time) []Reply {
	e := microdrop.Event{Kind: microdrop.HighlightMarked, Channel: m.Channel, At: now,
		Highlight: &microdrop.HighlightView{Reason: "clip", Label: c.Label, By: m.Login}}
	if d, ok := r.claims.Live(m.Channel); ok {
		e.DropID = d.ID
	}
	if _, err := r.bus.Publish(ctx, e); err != nil {
		r.log.Warn("publish clip", "channel", m.Channel, "err", err)
		return []Reply{r.to(m, "couldn't mark the clip, please try again")}
	}
	text := "clip marked"
	if c.Label != "" {
		text += ": " + c.Label
	}
	return []Reply{r.to(m, text)}
}

func (r *Router) myToken(ctx context.Context, m Message) []Reply {
	d, ok := r.claims.Live(m.Channel)
	if !ok {
		var err error
		if d, err = r.claims.Current(ctx, m.Channel); err != nil {
			return []Reply{r.to(m, "there has been no drop here yet")}
		}
	}
	ps, err := r.claims.Status(ctx, d.ID, m.UserID)
	if err != nil {
		return []Reply{r.failed(m, "couldn't look up your code", err)}
	}
	var out []Reply
	entered := false
	for _, p := range ps {
		switch {
		case p.Outcome == claims.OutcomeWon && p.Token != "" && !p.Redeemed:
			out = append(out, r.pickup(m, d.ID, p.Title, p.Token, p.ExpiresAt))
		case p.Outcome == claims.OutcomeEntered:
			entered = true
		}
	}
	ws := WhisperAvailable
	if len(out) > 0 {
		ws = m.whisperState()
	}
	switch {
	case len(out) > 0 && ws != WhisperAvailable:
		out = []Reply{r.onClaimPage(m, d.ID, "your "+d.Title+" pickup code can't be whispered", ws)}
	case len(out) > 0:
		out = append([]Reply{r.grouped(m, "mytoken:"+d.ID, "sending your "+d.Title+" pickup code by whisper")}, out...)
	case entered:
		out = append(out, r.to(m, "you're in the "+d.Title+" raffle; winners are drawn at close"))
	default:
		out = append(out, r.to(m, "you have no unused pickup code for "+d.Title))
	}
	return out
}

func roundDur(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// HoldNotice tells the viewer a passed-on unit now waits for in chat: the
// unit another viewer did not pay for is theirs to pay on the claim page.
func (r *Router) HoldNotice(ctx context.Context, e microdrop.Event) []Reply {
	if e.Kind != microdrop.HoldPassed || e.Hold == nil || e.Hold.Login == "" {
		return nil
	}
	title := e.DropID
	if d, err := r.claims.Drop(ctx, e.DropID); err == nil {
		title = d.Title
	}
	mins := max(int((e.Hold.Deadline.Sub(r.now())+time.Minute-1)/time.Minute), 1)
	return []Reply{{Channel: e.Channel, Text: fmt.Sprintf("@%s a %s came back to you — pay within %d min on the claim page", e.Hold.Login, title, mins)}}
}
