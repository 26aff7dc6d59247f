package twitch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nicklaw5/helix/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Health is whether Twitch chat works, and when not, why and what fixes it.
type Health struct {
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"` // what is wrong, for /healthz and logs
	Fix    string    `json:"fix,omitempty"`    // what the streamer should do, for the dashboard
	Since  time.Time `json:"since"`
	// Retrying says microdrop resubscribes by itself once the cause is gone.
	Retrying bool `json:"retrying"`
}

// errRevoked ends a session whose subscription Twitch revoked for a reason
// that a new subscription can outlive.
var errRevoked = errors.New("twitch: the chat subscription was revoked")

// revocation is what a revocation reason means for microdrop. Twitch's
// EventSub reference: authorization_revoked (the user took back the app's
// authorization: a new or refreshed token can subscribe again),
// user_removed (the user in the condition no longer exists: no token
// helps), version_removed (the subscription type and version are no
// longer supported: only a microdrop upgrade helps).
func revocation(reason string) (fix string, resubscribe bool) {
	switch reason {
	case "authorization_revoked":
		return "the bot account's authorization was revoked on Twitch: create a new user token with " +
			strings.Join(AllScopes(), " ") + " (or give TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN) and restart microdrop; it resubscribes by itself once the token works", true
	case "user_removed":
		return "the Twitch account of the channel or the bot no longer exists: set TWITCH_CHANNEL and the token to existing accounts and restart microdrop", false
	case "version_removed":
		return "Twitch no longer supports the channel.chat.message version microdrop uses: upgrade microdrop", false
	}
	return "Twitch ended the chat subscription (" + reason + "); microdrop resubscribes with backoff", true
}

// health holds the Client's Health and its metrics.
type health struct {
	mu  sync.Mutex
	h   Health
	now func() time.Time

	up          prometheus.Gauge
	revocations *prometheus.CounterVec
	validations *prometheus.CounterVec
}

func newHealth(reg prometheus.Registerer, now func() time.Time) *health {
	h := &health{now: now, h: Health{OK: true, Since: now()},
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "microdrop_twitch_chat_up",
			Help: "1 while the Twitch chat subscription works, 0 while it is revoked or the token does not validate."}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "microdrop_twitch_revocations_total",
			Help: "EventSub revocations of the chat subscription, by reason."}, []string{"reason"}),
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "microdrop_twitch_token_validations_total",
			Help: "Token validations (at start and hourly), by result."}, []string{"result"}),
	}
	h.up.Set(1)
	if reg != nil {
		reg.MustRegister(h.up, h.revocations, h.validations)
	}
	return h
}

func (h *health) get() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h
}

func (h *health) degrade(reason, fix string, retrying bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.OK || h.h.Reason != reason {
		h.h.Since = h.now()
	}
	h.h = Health{Reason: reason, Fix: fix, Since: h.h.Since, Retrying: retrying}
	h.up.Set(0)
}

// ok clears a degradation; only when its reason starts with prefix, if set.
func (h *health) ok(prefix string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.OK || (prefix != "" && !strings.HasPrefix(h.h.Reason, prefix)) {
		return
	}
	h.h = Health{OK: true, Since: h.now()}
	h.up.Set(1)
}

// Health reports whether chat works.
func (c *Client) Health() Health { return c.health.get() }

// revoked handles a revocation message: health, metric, log, and whether
// to end the session so connect resubscribes.
func (c *Client) onRevocation(reason string) bool {
	c.revocations.Add(1)
	c.health.revocations.WithLabelValues(reason).Inc()
	fix, again := revocation(reason)
	c.health.degrade("twitch chat subscription revoked: "+reason, fix, again)
	c.log.Error("twitch revoked the chat subscription: chat commands stop", "reason", reason, "channel", c.cfg.Channel,
		"fix", fix, "resubscribe", again)
	select {
	case c.revoked <- reason:
	default:
	}
	return again
}

// checkToken validates the token (refreshing it once when it fails and
// refresh credentials are given): Twitch requires apps that keep user
// tokens to validate them at start and hourly, and to stop using one that
// no longer validates.
func (c *Client) checkToken() error {
	valid := func() (bool, *helix.ValidateTokenResponse, error) {
		var ok bool
		var v *helix.ValidateTokenResponse
		err := c.call(func(api *helix.Client) (err error) {
			ok, v, err = api.ValidateToken(c.token())
			return err
		})
		return ok, v, err
	}
	ok, v, err := valid()
	if err != nil {
		c.health.validations.WithLabelValues("error").Inc()
		return fmt.Errorf("twitch: validate token: %w", err)
	}
	c.tokenMu.Lock()
	canRefresh := c.cfg.RefreshToken != "" && c.cfg.ClientSecret != ""
	c.tokenMu.Unlock()
	if !ok && canRefresh {
		if err := c.refresh(); err != nil {
			c.health.validations.WithLabelValues("invalid").Inc()
			return err
		}
		if ok, v, err = valid(); err != nil {
			c.health.validations.WithLabelValues("error").Inc()
			return fmt.Errorf("twitch: validate token: %w", err)
		}
	}
	if !ok {
		c.health.validations.WithLabelValues("invalid").Inc()
		return fmt.Errorf("%w (Twitch says: %s)", ErrInvalidToken, v.ErrorMessage)
	}
	if v.Data.UserID != c.botID {
		c.health.validations.WithLabelValues("invalid").Inc()
		return fmt.Errorf("%w: the token now belongs to user %s, not the bot %s", ErrInvalidToken, v.Data.UserID, c.botID)
	}
	if err := CheckScopes(v.Data.Login, v.Data.Scopes); err != nil {
		c.health.validations.WithLabelValues("invalid").Inc()
		return err
	}
	c.health.validations.WithLabelValues("valid").Inc()
	return nil
}

const tokenReason = "twitch token does not validate"

// validateLoop validates the token every ValidateEvery (an hour).
func (c *Client) validateLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.ValidateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.checkToken(); err != nil {
			c.log.Error("the Twitch token no longer validates", "err", err)
			c.health.degrade(tokenReason+": "+err.Error(),
				"create a new user token with "+strings.Join(AllScopes(), " ")+" and restart microdrop", false)
			continue
		}
		c.health.ok(tokenReason)
	}
}

// recoverToken waits, with backoff, until the token validates again after
// a revocation, so the next session can subscribe.
func (c *Client) recoverToken(ctx context.Context) {
	wait := time.Second
	if c.cfg.Backoff < wait {
		wait = c.cfg.Backoff
	}
	for ctx.Err() == nil {
		err := c.checkToken()
		if err == nil {
			return
		}
		c.log.Warn("after the revocation the token still does not work; trying again", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, c.cfg.Backoff)
	}
}
