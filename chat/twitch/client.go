package twitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nicklaw5/helix/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat"
)

// Twitch's endpoints, overridable for tests.
const (
	DefaultEventSubURL = "wss://eventsub.wss.twitch.tv/ws"
	DefaultAPIURL      = helix.DefaultAPIBaseURL
	DefaultAuthURL     = helix.AuthBaseURL
)

// Scopes the user token needs. Required ones fail Start; optional ones
// switch a feature off with a warning.
const (
	ScopeReadChat   = "user:read:chat"           // channel.chat.message over a WebSocket
	ScopeWriteChat  = "user:write:chat"          // Send Chat Message
	ScopeWhispers   = "user:manage:whispers"     // Send Whisper (pickup codes)
	ScopeBroadcast  = "channel:manage:broadcast" // Create Stream Marker
	ScopeClips      = "clips:edit"               // Create Clip (a Twitch clip of each highlight)
	messageTypeChat = "channel.chat.message"
)

// Errors Start reports.
var (
	ErrInvalidToken = errors.New("twitch: the user access token is invalid or expired")
	ErrMissingScope = errors.New("twitch: the user access token lacks a required scope")
	ErrConfig       = errors.New("twitch: incomplete configuration")
)

// Config is what the client needs.
type Config struct {
	ClientID     string
	ClientSecret string // with RefreshToken, to refresh the user token
	UserToken    string
	RefreshToken string
	Channel      string // the broadcaster's login

	EventSubURL string // DefaultEventSubURL when empty
	APIURL      string // DefaultAPIURL when empty
	AuthURL     string // DefaultAuthURL when empty

	Router *chat.Router
	Bus    microdrop.Bus // for stream markers; optional
	Logger *slog.Logger
	Now    func() time.Time
	// HTTP is the base transport (tests may inject); http.DefaultTransport when nil.
	HTTP http.RoundTripper

	// SendLimit overrides Twitch's chat limit: 100 per 30 s when the bot is
	// the broadcaster or Moderator is set, else 20 per 30 s.
	SendLimit chat.Limit
	// Moderator says the bot account is a moderator of the channel.
	Moderator bool
	// Workers bounds messages handled at once: 256 when zero.
	Workers int
	// ClaimWorkers bounds claims waiting for their decision at once, apart
	// from Workers: under the window policy every claim of the window
	// waits until it ends, and a claim held back in the read loop would
	// reach the decider after the window. 65536 when zero.
	ClaimWorkers int
	// Dedupe is how many message ids are remembered: 16384 when zero.
	Dedupe int
	// Backoff caps the wait between reconnect attempts: 30 s when zero.
	Backoff time.Duration
	// OnClip is told of each Twitch clip made for a !clip once Twitch lists
	// it (so the editor can link it when no local highlight does).
	OnClip func(context.Context, PlatformClip)
	// ClipShare: a clip asked for within this long of the last one is the
	// same clip (5 s when zero). ClipPoll and ClipTimeout pace the wait
	// for Twitch to list a new clip: 1 s and 15 s, as Twitch advises.
	ClipShare, ClipPoll, ClipTimeout time.Duration
	// ValidateEvery is how often the token is validated after Start:
	// hourly, as Twitch requires, when zero.
	ValidateEvery time.Duration
	// Registerer gets the client's metrics (revocations, chat up, token
	// validations); none when nil.
	Registerer prometheus.Registerer
	// WhisperLimits override Send Whisper's 3 per second and 100 per minute.
	WhisperLimits []chat.Limit
	// WhisperRecipients overrides Twitch's 40 new whisper recipients per
	// WhisperDay (24 h).
	WhisperRecipients int
	WhisperDay        time.Duration
}

// Stats count what the client has seen.
type Stats struct {
	Connects      int64 // WebSocket sessions opened (welcomes received)
	Reconnects    int64 // session_reconnect hand-overs completed
	DeadLinks     int64 // connections given up for a missed keepalive
	Notifications int64 // chat notifications received
	Duplicates    int64 // notifications ignored as already seen
	Revocations   int64
	// WhisperCapped counts whispers not sent because Twitch's daily cap on
	// new recipients was reached (those winners were sent to the claim page).
	WhisperCapped int64
}

// Client is a running Twitch connection.
type Client struct {
	cfg      Config
	log      *slog.Logger
	api      *helix.Client
	apiMu    sync.Mutex // helix.Client is not safe for concurrent use
	tokenMu  sync.Mutex // guards cfg.UserToken and cfg.RefreshToken after Start
	outbox   *chat.Outbox
	users    *userCache
	seen     *lru.Cache[string, struct{}]
	sem      chan struct{}
	claimSem chan struct{} // claims waiting for their decision
	botID    string
	botLogin string
	chanID   string
	scopes   map[string]bool
	limit    chat.Limit

	whispers *whisperBook
	health   *health
	clipMu   sync.Mutex // one Create Clip at a time, so one moment is one clip
	lastClip madeClip

	connects, reconnects, deadLinks, notifications, duplicates, revocations, whisperCapped atomic.Int64
	revoked                                                                                chan string

	ctx    context.Context // lives until Close: message handling outlives sessions
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the configuration; Start connects.
func New(cfg Config) (*Client, error) {
	if cfg.ClientID == "" || cfg.Channel == "" || cfg.Router == nil {
		return nil, fmt.Errorf("%w: client id, channel and router are required", ErrConfig)
	}
	if cfg.UserToken == "" && (cfg.ClientSecret == "" || cfg.RefreshToken == "") {
		return nil, fmt.Errorf("%w: set TWITCH_USER_TOKEN, or TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN", ErrConfig)
	}
	if cfg.EventSubURL == "" {
		cfg.EventSubURL = DefaultEventSubURL
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if cfg.AuthURL == "" {
		cfg.AuthURL = DefaultAuthURL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultTransport
	}
	if cfg.Workers == 0 {
		cfg.Workers = 256
	}
	if cfg.ClaimWorkers == 0 {
		cfg.ClaimWorkers = 65536
	}
	if cfg.Dedupe == 0 {
		cfg.Dedupe = 16384
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 30 * time.Second
	}
	if cfg.ClipShare == 0 {
		cfg.ClipShare = 5 * time.Second
	}
	if cfg.ClipPoll == 0 {
		cfg.ClipPoll = time.Second
	}
	if cfg.ClipTimeout == 0 {
		cfg.ClipTimeout = 15 * time.Second
	}
	if cfg.ValidateEvery == 0 {
		cfg.ValidateEvery = time.Hour
	}
	if cfg.WhisperRecipients == 0 {
		cfg.WhisperRecipients = 40
	}
	if cfg.WhisperDay == 0 {
		cfg.WhisperDay = 24 * time.Hour
	}
	cfg.Channel = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(cfg.Channel), "#"))
	auth, err := url.Parse(cfg.AuthURL)
	if err != nil || auth.Host == "" {
		return nil, fmt.Errorf("%w: TWITCH_AUTH_URL %q is not a URL", ErrConfig, cfg.AuthURL)
	}
	seen, _ := lru.New[string, struct{}](cfg.Dedupe)
	c := &Client{cfg: cfg, log: cfg.Logger.With("component", "chat.twitch"), seen: seen,
		sem: make(chan struct{}, cfg.Workers), claimSem: make(chan struct{}, cfg.ClaimWorkers), revoked: make(chan string, 4),
		whispers: newWhisperBook(cfg.WhisperRecipients, cfg.WhisperDay, cfg.Now), health: newHealth(cfg.Registerer, cfg.Now)}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &authRewrite{base: cfg.HTTP, auth: auth}}
	c.api, err = helix.NewClient(&helix.Options{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		UserAccessToken: cfg.UserToken, RefreshToken: cfg.RefreshToken, APIBaseURL: strings.TrimRight(cfg.APIURL, "/"), HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return c, nil
}

// authRewrite sends helix's OAuth calls (a constant https://id.twitch.tv/oauth2)
// to the configured auth URL.
type authRewrite struct {
	base http.RoundTripper
	auth *url.URL
}

func (a *authRewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.String(), helix.AuthBaseURL+"/") && a.auth.String() != helix.AuthBaseURL {
		r = r.Clone(r.Context())
		rest := strings.TrimPrefix(r.URL.Path, "/oauth2")
		r.URL.Scheme, r.URL.Host = a.auth.Scheme, a.auth.Host
		r.URL.Path = strings.TrimRight(a.auth.Path, "/") + rest
		r.Host = a.auth.Host
	}
	return a.base.RoundTrip(r)
}

// call serialises helix calls.
func (c *Client) call(fn func(*helix.Client) error) error {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	return fn(c.api)
}

// Start validates the token (failing with the missing scope named),
// resolves the channel, and starts reading chat, sending replies and
// marking streams. It returns once the token is known good; the
// connection itself is kept up in the background.
func (c *Client) Start(ctx context.Context) error {
	if err := c.authenticate(); err != nil {
		return err
	}
	var users *helix.UsersResponse
	err := c.call(func(api *helix.Client) (err error) {
		users, err = api.GetUsers(&helix.UsersParams{Logins: []string{c.cfg.Channel}})
		return err
	})
	if err != nil {
		return fmt.Errorf("twitch: look up channel %q: %w", c.cfg.Channel, err)
	}
	if users.StatusCode != http.StatusOK || len(users.Data.Users) == 0 {
		return fmt.Errorf("%w: no Twitch channel named %q (status %d %s)", ErrConfig, c.cfg.Channel, users.StatusCode, users.ErrorMessage)
	}
	c.chanID = users.Data.Users[0].ID

	limit := c.cfg.SendLimit
	if limit.Messages == 0 {
		limit = chat.Limit{Messages: 20, Per: 30 * time.Second}
		if c.botID == c.chanID || c.cfg.Moderator {
			limit.Messages = 100
		}
	}
	c.limit = limit
	c.outbox = chat.NewOutbox(chat.OutboxOptions{Sender: sender{c}, Say: limit, Whisper: c.cfg.WhisperLimits, Now: c.cfg.Now, Logger: c.cfg.Logger})
	c.users = newUserCache(c, 50000)

	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.ctx = ctx
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.validateLoop(ctx) }()
	go func() { defer c.wg.Done(); c.outbox.Run(ctx) }()
	go func() { defer c.wg.Done(); c.users.run(ctx) }()
	go func() { defer c.wg.Done(); c.connect(ctx) }()
	if c.cfg.Bus != nil {
		// Opens and clip marks only: the bus never drops them.
		sub := c.cfg.Bus.Subscribe(256, microdrop.DropOpened, microdrop.HighlightMarked)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.markers(ctx, sub) }()
	}
	c.log.Info("twitch chat starting", "channel", c.cfg.Channel, "bot", c.botLogin, "send_limit", fmt.Sprintf("%d/%s", limit.Messages, limit.Per),
		"whispers", c.scopes[ScopeWhispers], "markers", c.scopes[ScopeBroadcast], "clips", c.scopes[ScopeClips])
	return nil
}

// authenticate refreshes the token when only a refresh token was given,
// then validates it and checks its scopes.
func (c *Client) authenticate() error {
	if c.cfg.UserToken == "" {
		if err := c.refresh(); err != nil {
			return err
		}
	}
	var ok bool
	var v *helix.ValidateTokenResponse
	err := c.call(func(api *helix.Client) (err error) {
		ok, v, err = api.ValidateToken(c.token())
		return err
	})
	if err != nil {
		return fmt.Errorf("twitch: validate token at %s: %w", c.cfg.AuthURL, err)
	}
	if !ok && c.cfg.RefreshToken != "" && c.cfg.ClientSecret != "" {
		if err := c.refresh(); err != nil {
			return err
		}
		err = c.call(func(api *helix.Client) (err error) {
			ok, v, err = api.ValidateToken(c.token())
			return err
		})
		if err != nil {
			return fmt.Errorf("twitch: validate token: %w", err)
		}
	}
	if !ok {
		return fmt.Errorf("%w (Twitch says: %s); make a new one with the scopes %s", ErrInvalidToken, v.ErrorMessage, strings.Join(AllScopes(), " "))
	}
	if v.Data.ClientID != "" && v.Data.ClientID != c.cfg.ClientID {
		return fmt.Errorf("%w: the token belongs to client id %s, not TWITCH_CLIENT_ID %s", ErrInvalidToken, v.Data.ClientID, c.cfg.ClientID)
	}
	if v.Data.UserID == "" {
		return fmt.Errorf("%w: it is an app token; a user access token for the bot account is needed", ErrInvalidToken)
	}
	c.botID, c.botLogin = v.Data.UserID, v.Data.Login
	c.scopes = make(map[string]bool)
	for _, s := range v.Data.Scopes {
		c.scopes[s] = true
	}
	if err := CheckScopes(v.Data.Login, v.Data.Scopes); err != nil {
		return err
	}
	if !c.scopes[ScopeWhispers] {
		c.log.Warn("whispers off: the token lacks "+ScopeWhispers+"; winners are sent to the claim page for their code", "bot", c.botLogin)
	}
	if !c.scopes[ScopeBroadcast] {
		c.log.Warn("stream markers off: the token lacks "+ScopeBroadcast, "bot", c.botLogin)
	}
	if !c.scopes[ScopeClips] {
		c.log.Info("platform clips off: the token lacks "+ScopeClips+"; highlights are still captured locally", "bot", c.botLogin)
	}
	return nil
}

func (c *Client) refresh() error {
	var r *helix.RefreshTokenResponse
	err := c.call(func(api *helix.Client) (err error) {
		c.tokenMu.Lock()
		refresh := c.cfg.RefreshToken
		c.tokenMu.Unlock()
		r, err = api.RefreshUserAccessToken(refresh)
		return err
	})
	if err != nil {
		return fmt.Errorf("twitch: refresh the user token: %w", err)
	}
	if r.StatusCode != http.StatusOK || r.Data.AccessToken == "" {
		return fmt.Errorf("%w: refreshing it failed (status %d: %s); check TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN", ErrInvalidToken, r.StatusCode, r.ErrorMessage)
	}
	c.tokenMu.Lock()
	c.cfg.UserToken = r.Data.AccessToken
	if r.Data.RefreshToken != "" {
		c.cfg.RefreshToken = r.Data.RefreshToken
	}
	refresh := c.cfg.RefreshToken
	c.tokenMu.Unlock()
	_ = c.call(func(api *helix.Client) error {
		api.SetUserAccessToken(r.Data.AccessToken)
		api.SetRefreshToken(refresh)
		return nil
	})
	return nil
}

// token is the user access token in use.
func (c *Client) token() string {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	return c.cfg.UserToken
}

// AllScopes lists every scope microdrop can use, required first, then the
// optional ones (whispers, stream markers, clips).
func AllScopes() []string {
	return []string{ScopeReadChat, ScopeWriteChat, ScopeWhispers, ScopeBroadcast, ScopeClips}
}

// CheckScopes returns ErrMissingScope naming each required scope the token lacks.
func CheckScopes(login string, have []string) error {
	got := make(map[string]bool, len(have))
	for _, s := range have {
		got[s] = true
	}
	var missing []string
	for _, s := range []string{ScopeReadChat, ScopeWriteChat} {
		if !got[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the token for %q is missing %s (user:read:chat reads chat over EventSub, user:write:chat sends replies); make a new token with: %s",
		ErrMissingScope, login, strings.Join(missing, " and "), strings.Join(AllScopes(), " "))
}

// Close stops the client and waits for its goroutines.
func (c *Client) Close() error {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	return nil
}

// Outbox is the reply queue (for metrics and tests).
func (c *Client) Outbox() *chat.Outbox { return c.outbox }

// SendLimit is the chat send limit in force.
func (c *Client) SendLimit() chat.Limit { return c.limit }

// BotID is the bot account's user id, known after Start.
func (c *Client) BotID() string { return c.botID }

// Revoked reports the reasons subscriptions were revoked.
func (c *Client) Revoked() <-chan string { return c.revoked }

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Connects: c.connects.Load(), Reconnects: c.reconnects.Load(), DeadLinks: c.deadLinks.Load(),
		Notifications: c.notifications.Load(), Duplicates: c.duplicates.Load(), Revocations: c.revocations.Load(),
		WhisperCapped: c.whisperCapped.Load()}
}

// sender delivers the Outbox's lines through helix.
type sender struct{ c *Client }

func (s sender) Say(_ context.Context, _, text, replyTo string) error {
	c := s.c
	var r *helix.ChatMessageResponse
	err := c.call(func(api *helix.Client) (err error) {
		r, err = api.SendChatMessage(&helix.SendChatMessageParams{BroadcasterID: c.chanID, SenderID: c.botID,
			Message: text, ReplyParentMessageID: replyTo})
		return err
	})
	if err != nil {
		return err
	}
	if r.StatusCode == http.StatusTooManyRequests {
		return &chat.RetryError{At: c.resetAt(r.ResponseCommon)}
	}
	if r.StatusCode == http.StatusOK && r.Header.Get("Ratelimit-Remaining") == "0" {
		c.outbox.Hold(c.resetAt(r.ResponseCommon))
	}
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("send chat message: status %d: %s", r.StatusCode, r.ErrorMessage)
	}
	if len(r.Data.Messages) > 0 && !r.Data.Messages[0].IsSent {
		return fmt.Errorf("send chat message: dropped: %s", r.Data.Messages[0].DropReasons.Data.Message)
	}
	return nil
}

// resetAt reads Ratelimit-Reset (Unix seconds); without one, a second
// from now.
func (c *Client) resetAt(r helix.ResponseCommon) time.Time {
	if n := r.GetRateLimitReset(); n > 0 {
		return time.Unix(int64(n), 0)
	}
	return c.cfg.Now().Add(time.Second)
}

func (s sender) Whisper(_ context.Context, _, userID, _, text string) error {
	c := s.c
	if !c.scopes[ScopeWhispers] {
		return chat.ErrNoWhisper
	}
	if c.reserveWhisper(userID) != chat.WhisperAvailable {
		return fmt.Errorf("%w: the daily cap on new whisper recipients is reached", chat.ErrNoWhisper)
	}
	var r *helix.SendUserWhisperResponse
	err := c.call(func(api *helix.Client) (err error) {
		r, err = api.SendUserWhisper(&helix.SendUserWhisperParams{FromUserID: c.botID, ToUserID: userID, Message: text})
		return err
	})
	if err != nil {
		c.whispers.forget(userID)
		return fmt.Errorf("%w: %v", chat.ErrNoWhisper, err)
	}
	if r.StatusCode == http.StatusTooManyRequests {
		// Our own pacing keeps under 3/s and 100/min, so Twitch counts
		// recipients we did not see (another app on the same account).
		c.whispers.fill(userID)
		c.whisperCapped.Add(1)
		return fmt.Errorf("%w: status 429: %s", chat.ErrNoWhisper, r.ErrorMessage)
	}
	if r.StatusCode != http.StatusNoContent && r.StatusCode != http.StatusOK {
		// No verified phone, or whispers blocked by the recipient.
		c.whispers.forget(userID)
		return fmt.Errorf("%w: status %d: %s", chat.ErrNoWhisper, r.StatusCode, r.ErrorMessage)
	}
	c.whispers.delivered(userID)
	return nil
}

// reserveWhisper takes userID's place under the daily recipient cap (a
// recipient already whispered today keeps theirs).
func (c *Client) reserveWhisper(userID string) chat.WhisperState {
	if !c.scopes[ScopeWhispers] {
		return chat.WhisperOff
	}
	ok, first := c.whispers.take(userID)
	if ok {
		return chat.WhisperAvailable
	}
	c.whisperCapped.Add(1)
	if first {
		c.log.Warn("Twitch's whisper cap is reached (40 new recipients a day): further winners are sent to the claim page", "bot", c.botLogin)
	}
	return chat.WhisperCapped
}

// whisperState is whether whispers can go at all; the daily cap is
// asked (and a place taken) only for a winner, by reserveWhisper.
func (c *Client) whisperState() chat.WhisperState {
	if !c.scopes[ScopeWhispers] {
		return chat.WhisperOff
	}
	return chat.WhisperAvailable
}

// markers creates a stream marker when a drop opens and on !clip. A
// failure is logged: it never holds up the drop.
func (c *Client) markers(ctx context.Context, sub *microdrop.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			if e.Channel != c.cfg.Channel {
				continue
			}
			if e.Kind == microdrop.HighlightMarked && e.Highlight != nil && e.Highlight.Reason == "clip" && c.scopes[ScopeClips] {
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.chatClip(ctx, e) }()
			}
			if !c.scopes[ScopeBroadcast] {
				continue
			}
			var desc string
			switch {
			case e.Kind == microdrop.DropOpened && e.Drop != nil:
				desc = "microdrop: " + e.Drop.Title + " drop opened"
			case e.Kind == microdrop.HighlightMarked && e.Highlight != nil && e.Highlight.Reason == "clip":
				desc = "microdrop clip"
				if e.Highlight.Label != "" {
					desc += ": " + e.Highlight.Label
				}
				if e.Highlight.By != "" {
					desc += " (by " + e.Highlight.By + ")"
				}
			default:
				continue
			}
			if r := []rune(desc); len(r) > 140 {
				desc = string(r[:140])
			}
			if err := c.createMarker(ctx, desc); err != nil {
				c.log.Warn("stream marker", "err", err)
			}
		}
	}
}

// envelope is an EventSub WebSocket message.
type envelope struct {
	Metadata struct {
		MessageID        string `json:"message_id"`
		MessageType      string `json:"message_type"`
		MessageTimestamp string `json:"message_timestamp"`
		SubscriptionType string `json:"subscription_type"`
	} `json:"metadata"`
	Payload struct {
		Session *struct {
			ID                      string `json:"id"`
			KeepaliveTimeoutSeconds int    `json:"keepalive_timeout_seconds"`
			ReconnectURL            string `json:"reconnect_url"`
		} `json:"session"`
		Subscription *struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Type   string `json:"type"`
		} `json:"subscription"`
		Event json.RawMessage `json:"event"`
	} `json:"payload"`
}

// chatEvent is the part of channel.chat.message we use.
type chatEvent struct {
	BroadcasterUserLogin string `json:"broadcaster_user_login"`
	ChatterUserID        string `json:"chatter_user_id"`
	ChatterUserLogin     string `json:"chatter_user_login"`
	ChatterUserName      string `json:"chatter_user_name"`
	MessageID            string `json:"message_id"`
	Message              struct {
		Text string `json:"text"`
	} `json:"message"`
	Badges []struct {
		SetID string `json:"set_id"`
	} `json:"badges"`
	SourceBroadcasterID *string `json:"source_broadcaster_user_id"`
}
