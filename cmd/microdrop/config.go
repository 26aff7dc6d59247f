package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/microdrop/microdrop/claims"
)

// Config is every setting, in one place: defaults, then the file, then
// MICRODROP_* environment, then flags, then Validate.
type Config struct {
	Data       string `yaml:"data" env:"DATA"`
	HTTP       string `yaml:"http" env:"HTTP"`
	PublicURL  string `yaml:"public_url" env:"PUBLIC_URL"`
	AdminToken string `yaml:"admin_token" env:"ADMIN_TOKEN"`
	// Ledger is empty for SQLite in the data dir, or a postgres:// URL.
	Ledger string `yaml:"ledger" env:"LEDGER"`
	// Bus is empty for in-process, or a nats:// URL.
	Bus      string `yaml:"bus" env:"BUS"`
	LogLevel string `yaml:"log_level" env:"LOG_LEVEL"`

	Claims     ClaimsConfig             `yaml:"claims"`
	Channels   map[string]ChannelConfig `yaml:"channels"`
	Ingest     IngestConfig             `yaml:"ingest"`
	Twitch     TwitchConfig             `yaml:"twitch"`
	Highlights HighlightsConfig         `yaml:"highlights"`
	Chat       ChatConfig               `yaml:"chat"`
	SignIn     SignInConfig             `yaml:"signin"`
	Front      FrontConfig              `yaml:"front"`
	Payments   PaymentsConfig           `yaml:"payments"`
	// Creators brand offer pages and vertical clips, by creator id (a
	// drop's creator_id, else its channel).
	Creators map[string]CreatorConfig `yaml:"creators"`
}

// PaymentsConfig is for drops that take payment.
type PaymentsConfig struct {
	// ReceiptKeys are secrets whose SHA-256 seeds the Ed25519 receipt
	// keys: the first signs, all verify (rotation). Empty: one is
	// generated in the data dir on first start.
	ReceiptKeys []string `yaml:"receipt_keys" env:"RECEIPT_KEYS"`
	// HolderSecret keys the pseudonymous holder ids on receipts; generated
	// in the data dir when empty. Changing it changes every holder id.
	HolderSecret string `yaml:"holder_secret" env:"HOLDER_SECRET"`
	// FeeBasisPoints is the platform's fee per paid hold, in 1/100 %.
	FeeBasisPoints int          `yaml:"fee_basis_points" env:"FEE_BASIS_POINTS"`
	Stripe         StripeConfig `yaml:"stripe"`
}

// StripeConfig switches card payments on.
type StripeConfig struct {
	SecretKey     string `yaml:"secret_key" env:"SECRET_KEY"`
	WebhookSecret string `yaml:"webhook_secret" env:"WEBHOOK_SECRET"`
	// APIBase overrides the Stripe API URL (tests point it at stripe-mock).
	APIBase string `yaml:"api_base" env:"API_BASE"`
}

// CreatorConfig is how a creator appears on offer pages.
type CreatorConfig struct {
	// Name is shown instead of the id.
	Name string `yaml:"name"`
	// Color is the accent, #rrggbb.
	Color string `yaml:"color"`
	// Avatar is an image file (PNG, JPEG or WebP; it is validated,
	// stripped of metadata and copied into bundles) or an https:// URL.
	Avatar string `yaml:"avatar"`
	// ShopURL, when set, is where offer pages send buyers (with the drop,
	// SKU and run as query parameters); else microdrop's own claim page.
	ShopURL string `yaml:"shop_url"`
	// FeeBasisPoints and FeeFixedMinor are this creator's platform fee
	// per paid hold (percentage in 1/100 %, plus a fixed amount in minor
	// units); unset: payments.fee_basis_points.
	FeeBasisPoints *int   `yaml:"fee_basis_points"`
	FeeFixedMinor  int64  `yaml:"fee_fixed_minor"`
	Payout         Payout `yaml:"payout"`
}

// Payout is when and how a creator's balance is paid out.
type Payout struct {
	// Schedule is daily, weekly (on Weekday) or threshold (when the
	// balance reaches ThresholdMinor); empty: never.
	Schedule       string `yaml:"schedule"`
	Weekday        string `yaml:"weekday"`
	ThresholdMinor int64  `yaml:"threshold_minor"`
	MinimumMinor   int64  `yaml:"minimum_minor"`
	Currency       string `yaml:"currency"`
	// ConnectAccount is the creator's Stripe Connect account (acct_...);
	// empty: payout files in the data dir's payouts/.
	ConnectAccount string `yaml:"connect_account"`
}

// Fees are the creators' own platform fees.
func (c *Config) Fees() map[string]claims.Fee {
	out := map[string]claims.Fee{}
	for id, cr := range c.Creators {
		if cr.FeeBasisPoints == nil && cr.FeeFixedMinor == 0 {
			continue
		}
		f := claims.Fee{BasisPoints: c.Payments.FeeBasisPoints, FixedMinor: cr.FeeFixedMinor}
		if cr.FeeBasisPoints != nil {
			f.BasisPoints = *cr.FeeBasisPoints
		}
		out[id] = f
	}
	return out
}

// PayoutPlans are the creators' payout settings.
func (c *Config) PayoutPlans() (map[string]claims.PayoutPlan, error) {
	out := map[string]claims.PayoutPlan{}
	var errs []error
	for id, cr := range c.Creators {
		p := cr.Payout
		if p.Schedule == "" && p.Weekday == "" && p.ThresholdMinor == 0 && p.MinimumMinor == 0 && p.Currency == "" && p.ConnectAccount == "" {
			continue
		}
		plan := claims.PayoutPlan{Schedule: p.Schedule, ThresholdMinor: p.ThresholdMinor, MinimumMinor: p.MinimumMinor,
			Currency: strings.ToUpper(p.Currency), ConnectAccount: p.ConnectAccount}
		if p.Schedule == "" {
			errs = append(errs, fmt.Errorf("creators.%s.payout.schedule: daily, weekly or threshold", id))
			continue
		}
		if p.Schedule == claims.ScheduleWeekly {
			wd, ok := weekdays[strings.ToLower(p.Weekday)]
			if !ok {
				errs = append(errs, fmt.Errorf("creators.%s.payout.weekday: %q must be a day of the week, like monday", id, p.Weekday))
				continue
			}
			plan.Weekday = wd
		} else if p.Weekday != "" {
			errs = append(errs, fmt.Errorf("creators.%s.payout.weekday: only for schedule weekly", id))
			continue
		}
		if err := plan.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("creators.%s.payout: %w", id, err))
			continue
		}
		if plan.ConnectAccount != "" && c.Payments.Stripe.SecretKey == "" {
			errs = append(errs, fmt.Errorf("creators.%s.payout.connect_account: needs payments.stripe.secret_key", id))
			continue
		}
		out[id] = plan
	}
	return out, errors.Join(errs...)
}

var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday,
	"wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}

// ClaimsConfig tunes drops and claims.
type ClaimsConfig struct {
	// TokenKeys sign pickup tokens: the first signs, all verify (rotation).
	// Empty: a key is generated in the data dir on first start.
	TokenKeys   []string        `yaml:"token_keys" env:"TOKEN_KEYS"`
	TokenTTL    claims.Duration `yaml:"token_ttl" env:"TOKEN_TTL"`
	Grace       claims.Duration `yaml:"grace" env:"GRACE"`
	BucketWidth claims.Duration `yaml:"bucket_width" env:"BUCKET_WIDTH"`
	Policy      string          `yaml:"policy" env:"POLICY"`
	ClaimRate   float64         `yaml:"claim_rate" env:"CLAIM_RATE"`
	ClaimBurst  int             `yaml:"claim_burst" env:"CLAIM_BURST"`
	// CommitTimeout bounds a ledger commit: past it the claims in it fail
	// with a retryable error and /healthz reports degraded.
	CommitTimeout claims.Duration `yaml:"commit_timeout" env:"COMMIT_TIMEOUT"`
	// GraceFromCue takes a drop's grace from the measured cue-to-air delay.
	GraceFromCue bool `yaml:"grace_from_cue" env:"GRACE_FROM_CUE"`
	// Budget sizes the window of the window policy.
	Budget BudgetConfig `yaml:"budget"`
}

// BudgetConfig is the latency budget of window drops: programme delay
// (measured from the cue, else ProgrammeDelay) + the spread of the
// platforms' latency modes + Reaction.
type BudgetConfig struct {
	ProgrammeDelay claims.Duration `yaml:"programme_delay" env:"BUDGET_PROGRAMME_DELAY"`
	Reaction       claims.Duration `yaml:"reaction" env:"BUDGET_REACTION"`
	// Platforms are "platform/mode": twitch/low_latency, twitch/normal,
	// youtube/ultra_low, youtube/low, youtube/normal.
	Platforms []string `yaml:"platforms" env:"BUDGET_PLATFORMS"`
}

// Options turns the config into the claims budget options.
func (b BudgetConfig) Options() (claims.BudgetOptions, error) {
	o := claims.BudgetOptions{ProgrammeDelay: time.Duration(b.ProgrammeDelay), Reaction: time.Duration(b.Reaction),
		Platforms: []claims.PlatformLatency{}}
	for _, p := range b.Platforms {
		platform, mode, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok {
			return o, fmt.Errorf("platform %q must be platform/mode, like twitch/low_latency", p)
		}
		o.Platforms = append(o.Platforms, claims.PlatformLatency{Platform: platform, Mode: mode})
	}
	return o, o.Validate()
}

// ChannelConfig is per streamer channel.
type ChannelConfig struct {
	// OverlayKey is the read-only key in the overlay URL; generated when empty.
	OverlayKey string `yaml:"overlay_key"`
	// Streams are the ingest paths bound to this channel.
	Streams []string `yaml:"streams"`
}

// IngestConfig is the media path.
type IngestConfig struct {
	RTSP      string `yaml:"rtsp" env:"RTSP"`
	UDPRTP    string `yaml:"udp_rtp" env:"UDP_RTP"`
	UDPRTCP   string `yaml:"udp_rtcp" env:"UDP_RTCP"`
	WHIPToken string `yaml:"whip_token" env:"WHIP_TOKEN"`
	// RTSPUser and RTSPPassword are what RTSP publishers log in with
	// (rtsp://user:password@host:8554/path; user "publish" by default).
	// Without them the WHIP token is the password; without a WHIP token one
	// is generated into the data dir: publishing always needs credentials.
	RTSPUser     string `yaml:"rtsp_user" env:"RTSP_USER"`
	RTSPPassword string `yaml:"rtsp_password" env:"RTSP_PASSWORD"`
	// RTSPReadUser and RTSPReadPassword, when set, protect RTSP reads.
	RTSPReadUser     string            `yaml:"rtsp_read_user" env:"RTSP_READ_USER"`
	RTSPReadPassword string            `yaml:"rtsp_read_password" env:"RTSP_READ_PASSWORD"`
	Pull             map[string]string `yaml:"pull"`
	Playback         map[string]string `yaml:"playback"`
	CueProfile       string            `yaml:"cue_profile" env:"CUE_PROFILE"`
	CueLevelDB       float64           `yaml:"cue_level_db" env:"CUE_LEVEL_DB"`
	MaxReaderQ       int               `yaml:"max_reader_queue" env:"MAX_READER_QUEUE"`
	ICEHostOnly      bool              `yaml:"ice_host_only" env:"ICE_HOST_ONLY"`
}

// TwitchConfig switches Twitch chat on when ClientID and a token are set.
type TwitchConfig struct {
	ClientID     string `yaml:"client_id" env:"-" envname:"TWITCH_CLIENT_ID"`
	ClientSecret string `yaml:"client_secret" env:"-" envname:"TWITCH_CLIENT_SECRET"`
	UserToken    string `yaml:"user_token" env:"-" envname:"TWITCH_USER_TOKEN"`
	RefreshToken string `yaml:"refresh_token" env:"-" envname:"TWITCH_REFRESH_TOKEN"`
	Channel      string `yaml:"channel" env:"-" envname:"TWITCH_CHANNEL"`
	EventSubURL  string `yaml:"eventsub_url" env:"-" envname:"TWITCH_EVENTSUB_URL"`
	APIURL       string `yaml:"api_url" env:"-" envname:"TWITCH_API_URL"`
	AuthURL      string `yaml:"auth_url" env:"-" envname:"TWITCH_AUTH_URL"`
	// BotModerator says the bot account is a moderator of the channel, which
	// raises Twitch's send limit from 20 to 100 messages per 30 s.
	BotModerator bool `yaml:"bot_moderator" env:"-" envname:"TWITCH_BOT_MODERATOR"`
}

// Enabled reports whether Twitch credentials were given.
func (t TwitchConfig) Enabled() bool {
	return t.ClientID != "" && (t.UserToken != "" || (t.ClientSecret != "" && t.RefreshToken != ""))
}

// ChatConfig tunes the chat command router.
type ChatConfig struct {
	Prefix string `yaml:"prefix" env:"CHAT_PREFIX"`
	// LocalChannel is the channel the built-in local chat speaks for.
	LocalChannel string `yaml:"local_channel" env:"LOCAL_CHANNEL"`
}

// HighlightsConfig tunes the rolling buffer and clip capture.
type HighlightsConfig struct {
	BufferSeconds int `yaml:"buffer_seconds" env:"BUFFER_SECONDS"`
	BufferMB      int `yaml:"buffer_mb" env:"BUFFER_MB"`
	// BufferMBTotal bounds every stream's buffer together.
	BufferMBTotal int             `yaml:"buffer_mb_total" env:"BUFFER_MB_TOTAL"`
	Pre           claims.Duration `yaml:"pre" env:"HIGHLIGHT_PRE"`
	Post          claims.Duration `yaml:"post" env:"HIGHLIGHT_POST"`
	SurgePerSec   float64         `yaml:"surge_per_sec" env:"SURGE_PER_SEC"`
}

// DefaultConfig is what `microdrop serve` uses with no flags.
func DefaultConfig() Config {
	return Config{
		Data:     "./microdrop-data",
		HTTP:     ":8080",
		LogLevel: "info",
		Claims: ClaimsConfig{
			TokenTTL:      claims.Duration(30 * 24 * time.Hour),
			Grace:         claims.Duration(5 * time.Second),
			BucketWidth:   claims.Duration(250 * time.Millisecond),
			Policy:        string(claims.Window),
			ClaimRate:     2,
			ClaimBurst:    3,
			CommitTimeout: claims.Duration(5 * time.Second),
			Budget: BudgetConfig{Reaction: claims.Duration(2 * time.Second),
				Platforms: []string{"twitch/low_latency"}},
		},
		Ingest: IngestConfig{RTSP: ":8554", UDPRTP: ":8000", UDPRTCP: ":8001", CueProfile: "audible", CueLevelDB: -12, MaxReaderQ: 512},
		Chat:   ChatConfig{Prefix: "!", LocalChannel: "local"},
		Front:  FrontConfig{MaxConnsPerIP: 256, RatePerIP: 50, BurstPerIP: 200, SignInRate: 60, ClaimRate: 120, MaxOverlayClients: 15000},
		Highlights: HighlightsConfig{BufferSeconds: 120, BufferMB: 256, BufferMBTotal: 512,
			Pre: claims.Duration(20 * time.Second), Post: claims.Duration(40 * time.Second), SurgePerSec: 20},
	}
}

// LoadFile reads a YAML config file over c, refusing unknown keys.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// LoadEnv applies MICRODROP_* variables (and the TWITCH_* ones) over c.
func (c *Config) LoadEnv(lookup func(string) (string, bool)) error {
	return loadEnv(reflect.ValueOf(c).Elem(), lookup)
}

func loadEnv(v reflect.Value, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
			if err := loadEnv(fv, lookup); err != nil {
				return err
			}
			continue
		}
		name := f.Tag.Get("envname")
		if name == "" {
			tag := f.Tag.Get("env")
			if tag == "" || tag == "-" {
				continue
			}
			name = "MICRODROP_" + tag
		}
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setField(fv, s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func setField(fv reflect.Value, s string) error {
	if tu, ok := fv.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return tu.UnmarshalText([]byte(s))
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		fv.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		fv.SetInt(int64(n))
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return errors.New("unsupported list")
		}
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", fv.Kind())
	}
	return nil
}

// Validate checks everything a person could get wrong, with a message that
// says how to fix it.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Data == "" {
		bad("data: a directory is needed (default ./microdrop-data)")
	}
	checkAddr := func(name, addr string, optional bool) {
		if addr == "" {
			if !optional {
				bad("%s: an address like :8080 or 127.0.0.1:8080 is needed", name)
			}
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("%s: %q is not host:port (like :8080)", name, addr)
		}
	}
	checkAddr("http", c.HTTP, false)
	if c.Payments.FeeBasisPoints < 0 || c.Payments.FeeBasisPoints > 5000 {
		bad("payments.fee_basis_points: between 0 and 5000 (50%%)")
	}
	if (c.Payments.Stripe.SecretKey == "") != (c.Payments.Stripe.WebhookSecret == "") {
		bad("payments.stripe: secret_key and webhook_secret go together")
	}
	checkAddr("ingest.rtsp", c.Ingest.RTSP, true)
	checkAddr("ingest.udp_rtp", c.Ingest.UDPRTP, true)
	checkAddr("ingest.udp_rtcp", c.Ingest.UDPRTCP, true)
	if (c.Ingest.UDPRTP == "") != (c.Ingest.UDPRTCP == "") {
		bad("ingest: udp_rtp and udp_rtcp are set together or not at all")
	}
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		bad("public_url: %q must start with http:// or https://", c.PublicURL)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("admin_token: at least 16 characters")
	}
	if c.Ledger != "" && !strings.HasPrefix(c.Ledger, "postgres://") && !strings.HasPrefix(c.Ledger, "postgresql://") && !strings.HasPrefix(c.Ledger, "sqlite:") {
		bad("ledger: %q must be empty (SQLite in the data dir), sqlite:PATH or postgres://...", c.Ledger)
	}
	if c.Bus != "" && !strings.HasPrefix(c.Bus, "nats://") {
		bad("bus: %q must be empty (in-process) or nats://host:port", c.Bus)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level: %q must be debug, info, warn or error", c.LogLevel)
	}
	for i, k := range c.Claims.TokenKeys {
		if len(k) < 16 {
			bad("claims.token_keys[%d]: at least 16 characters", i)
		}
	}
	if !claims.Policy(c.Claims.Policy).Valid() {
		bad("claims.policy: %q must be window, fcfs, bucketed or raffle", c.Claims.Policy)
	}
	if _, err := c.Claims.Budget.Options(); err != nil {
		bad("claims.budget: %v", err)
	}
	if d := time.Duration(c.Claims.Grace); d < 0 || d > claims.MaxGrace {
		bad("claims.grace: between 0s and %s", claims.MaxGrace)
	}
	if d := time.Duration(c.Claims.BucketWidth); d < 10*time.Millisecond || d > 10*time.Second {
		bad("claims.bucket_width: between 10ms and 10s")
	}
	if time.Duration(c.Claims.TokenTTL) < time.Minute {
		bad("claims.token_ttl: at least 1m")
	}
	if d := time.Duration(c.Claims.CommitTimeout); d < 100*time.Millisecond || d > 5*time.Minute {
		bad("claims.commit_timeout: between 100ms and 5m")
	}
	if c.Claims.ClaimRate <= 0 || c.Claims.ClaimBurst < 1 {
		bad("claims.claim_rate must be above 0 and claims.claim_burst at least 1")
	}
	for name, ch := range c.Channels {
		if claims.NormalizeChannel(name) != name || name == "" {
			bad("channels: %q must be a lowercase channel login", name)
		}
		if ch.OverlayKey != "" && len(ch.OverlayKey) < 12 {
			bad("channels.%s.overlay_key: at least 12 characters", name)
		}
	}
	for id, cr := range c.Creators {
		if id == "" || strings.ContainsAny(id, " /\t\n") {
			bad("creators: %q is not a creator id", id)
		}
		if cr.Color != "" && !isHexColor(cr.Color) {
			bad("creators.%s.color: %q must be #rrggbb", id, cr.Color)
		}
		if cr.ShopURL != "" && !strings.HasPrefix(cr.ShopURL, "https://") && !strings.HasPrefix(cr.ShopURL, "http://") {
			bad("creators.%s.shop_url: %q must start with https://", id, cr.ShopURL)
		}
		if f := (claims.Fee{FixedMinor: cr.FeeFixedMinor}); cr.FeeBasisPoints != nil || f.FixedMinor != 0 {
			if cr.FeeBasisPoints != nil {
				f.BasisPoints = *cr.FeeBasisPoints
			}
			if err := f.Validate(); err != nil {
				bad("creators.%s: fee_basis_points/fee_fixed_minor: %v", id, err)
			}
		}
		if a := cr.Avatar; a != "" && !strings.HasPrefix(a, "https://") && !strings.HasPrefix(a, "http://") {
			if st, err := os.Stat(a); err != nil || !st.Mode().IsRegular() {
				bad("creators.%s.avatar: %q is neither an image file nor an https:// URL", id, a)
			}
		}
	}
	switch c.Ingest.CueProfile {
	case "audible", "ultrasonic":
	default:
		bad("ingest.cue_profile: %q must be audible or ultrasonic", c.Ingest.CueProfile)
	}
	if c.Ingest.CueLevelDB > 0 || c.Ingest.CueLevelDB < -60 {
		bad("ingest.cue_level_db: between -60 and 0")
	}
	t := c.Twitch
	// A client id with its secret alone is viewer sign-in without chat.
	if ((t.ClientID != "" && t.ClientSecret == "") || t.UserToken != "" || t.RefreshToken != "") && !t.Enabled() {
		bad("twitch: set TWITCH_CLIENT_ID with TWITCH_USER_TOKEN (or TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN)")
	}
	if t.Enabled() && t.Channel == "" {
		bad("twitch: set TWITCH_CHANNEL to the channel login to join")
	}
	if c.Chat.Prefix == "" || len(c.Chat.Prefix) > 3 {
		bad("chat.prefix: 1 to 3 characters, like !")
	}
	if _, err := c.PayoutPlans(); err != nil {
		errs = append(errs, err)
	}
	c.validateSignIn(bad)
	h := c.Highlights
	if h.BufferSeconds < 10 || h.BufferSeconds > 3600 {
		bad("highlights.buffer_seconds: between 10 and 3600")
	}
	if h.BufferMB < 8 || h.BufferMB > 16384 {
		bad("highlights.buffer_mb: between 8 and 16384")
	}
	if h.BufferMBTotal < 8 || h.BufferMBTotal > 65536 {
		bad("highlights.buffer_mb_total: between 8 and 65536")
	} else if h.BufferMBTotal < h.BufferMB {
		bad("highlights.buffer_mb_total (%d) must be at least highlights.buffer_mb (%d): one stream's buffer must fit in the total", h.BufferMBTotal, h.BufferMB)
	}
	return errors.Join(errs...)
}

func isHexColor(s string) bool {
	if len(s) != 7 || s[0] != '#' {
		return false
	}
	for _, c := range s[1:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}
