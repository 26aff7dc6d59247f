package twitchtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// User is an account the server knows.
type User struct {
	ID          string    `json:"id"`
	Login       string    `json:"login"`
	DisplayName string    `json:"display_name"`
	CreatedAt   time.Time `json:"created_at"`
}

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	ClientID string // "testclientid"
	Token    string // "testtoken"
	// Scopes of Token: user:read:chat, user:write:chat, user:manage:whispers,
	// channel:manage:broadcast, clips:edit when nil.
	Scopes []string
	Bot    User // the token's user: id 1001, login "dropbot"
	// Broadcaster is the channel: id 2002, login "streamer".
	Broadcaster User
	// Keepalive is keepalive_timeout_seconds in welcome messages: 1 when
	// zero (Twitch allows 10 to 600; tests want dead links noticed fast).
	Keepalive int
	// RefreshToken, when set, is accepted at /oauth2/token and turns into Token.
	RefreshToken string
	// Clips shape Create Clip and Get Clips (SetClips changes them later).
	Clips ClipOptions
	// NotEditor: the bot is neither the broadcaster nor one of its editors,
	// so Create Stream Marker answers 403.
	NotEditor bool
	// BotModerator: the bot moderates the channel (the larger chat limit).
	BotModerator bool
	// ChatLimit is Send Chat Message's limit, counted at arrival over a
	// sliding window: Twitch's 20 per 30 s, or 100 when the bot is the
	// broadcaster or BotModerator, when zero. Over it: 429.
	ChatLimit Limit
	// WhisperLimits are Send Whisper's limits: 3 per second and 100 per
	// minute when nil. Over one: 429.
	WhisperLimits []Limit
	// WhisperRecipients is how many distinct users the bot may whisper per
	// WhisperDay: Twitch's 40 per day when zero. A new recipient past it: 429.
	WhisperRecipients int
	WhisperDay        time.Duration
	// HelixLimit is the helix rate-limit bucket every authenticated call
	// draws on and the Ratelimit-* headers report: Twitch's 800 points
	// per minute when zero. (Like Twitch, the headers say nothing of the
	// chat limit: a client must count its chat lines itself.)
	HelixLimit Limit
	// Now is the server's clock for rate limits: time.Now when nil.
	Now func() time.Time
	// ChatLatency, when set, delays the nth Send Chat Message call (from 0)
	// before it is counted: time on the wire, which varies from line to
	// line and is why Twitch's count (at arrival) differs from a count
	// kept when a line is sent.
	ChatLatency func(n int) time.Duration
	// ClientSecret is what the OIDC token endpoint expects: "testclientsecret".
	ClientSecret string
}

// SentMessage is a chat message the bot sent through Send Chat Message.
type SentMessage struct {
	BroadcasterID string `json:"broadcaster_id"`
	SenderID      string `json:"sender_id"`
	Message       string `json:"message"`
	ReplyParentID string `json:"reply_parent_message_id"`
	At            time.Time
}

// Whisper is a whisper the bot sent.
type Whisper struct {
	From, To, Message string
}

// Marker is a stream marker the bot created.
type Marker struct {
	UserID, Description string
}

// Server is a fake Twitch. Create it with New; it closes when the test ends.
type Server struct {
	opt  Options
	http *httptest.Server
	up   websocket.Upgrader

	mu          sync.Mutex
	conns       map[string]*wsConn // session id -> connection
	active      *wsConn            // the connection holding the subscriptions
	subs        []Subscription
	sent        []SentMessage
	whispers    []Whisper
	markers     []Marker
	users       map[string]User
	connects    int
	userLookups int
	failMarkers bool
	clipOpt     ClipOptions // Options.Clips, then SetClips
	clips       []*Clip
	clipLookups int
	chatWindow  *arrivals
	helix       *arrivals // the points bucket behind Ratelimit-*
	chatCalls   int
	refused     []SentMessage // Send Chat Message calls answered 429
	whisperWins []*arrivals
	recipients  map[string]time.Time // whisper recipient -> first whisper in the current day
	whisperCap  int                  // whispers refused for the recipient cap
	validations int
	changed     chan struct{}
	closed      bool
	idp         *idProvider // the OpenID provider (oidc.go)
}

type wsConn struct {
	s         *Server
	c         *websocket.Conn
	session   string
	wmu       sync.Mutex
	silent    bool
	done      chan struct{}
	closeOnce sync.Once
}

// New starts a Server on 127.0.0.1, closed when the test ends.
func New(tb testing.TB, opt Options) *Server {
	tb.Helper()
	s, err := Start(opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Start starts a Server on 127.0.0.1 outside a test (a load run's sign-in
// provider); the caller closes it.
func Start(opt Options) (*Server, error) {
	if opt.ClientID == "" {
		opt.ClientID = "testclientid"
	}
	if opt.Token == "" {
		opt.Token = "testtoken"
	}
	if opt.Scopes == nil {
		opt.Scopes = []string{"user:read:chat", "user:write:chat", "user:manage:whispers", "channel:manage:broadcast", "clips:edit"}
	}
	if opt.Bot.ID == "" {
		opt.Bot = User{ID: "1001", Login: "dropbot", DisplayName: "DropBot", CreatedAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	if opt.Broadcaster.ID == "" {
		opt.Broadcaster = User{ID: "2002", Login: "streamer", DisplayName: "Streamer", CreatedAt: time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)}
	}
	if opt.Keepalive == 0 {
		opt.Keepalive = 1
	}
	if opt.ChatLimit.Messages == 0 {
		opt.ChatLimit = Limit{Messages: 20, Per: 30 * time.Second}
		if opt.BotModerator || opt.Bot.ID == opt.Broadcaster.ID {
			opt.ChatLimit.Messages = 100
		}
	}
	if opt.WhisperLimits == nil {
		opt.WhisperLimits = []Limit{{3, time.Second}, {100, time.Minute}}
	}
	if opt.WhisperRecipients == 0 {
		opt.WhisperRecipients = 40
	}
	if opt.WhisperDay == 0 {
		opt.WhisperDay = 24 * time.Hour
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.HelixLimit.Messages == 0 {
		opt.HelixLimit = Limit{Messages: 800, Per: time.Minute}
	}
	s := &Server{opt: opt, conns: make(map[string]*wsConn), users: make(map[string]User), changed: make(chan struct{}),
		clipOpt: opt.Clips, chatWindow: &arrivals{l: opt.ChatLimit}, helix: &arrivals{l: opt.HelixLimit}, recipients: make(map[string]time.Time),
		idp: newIDProvider(opt.ClientSecret)}
	for _, l := range opt.WhisperLimits {
		s.whisperWins = append(s.whisperWins, &arrivals{l: l})
	}
	s.users[opt.Bot.ID] = opt.Bot
	s.users[opt.Broadcaster.ID] = opt.Broadcaster
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /oauth2/validate", s.validate)
	mux.HandleFunc("POST /oauth2/token", s.tokenEndpoint)
	s.mountOIDC(mux)
	mux.HandleFunc("POST /helix/eventsub/subscriptions", s.authed(s.createSubscription))
	mux.HandleFunc("POST /helix/chat/messages", s.authed(s.sendChat))
	mux.HandleFunc("POST /helix/whispers", s.authed(s.whisper))
	mux.HandleFunc("GET /helix/users", s.authed(s.getUsers))
	mux.HandleFunc("POST /helix/streams/markers", s.authed(s.createMarker))
	mux.HandleFunc("POST /helix/clips", s.authed(s.createClip))
	mux.HandleFunc("GET /helix/clips", s.authed(s.getClips))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.http = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s.withOIDC(mux)}}
	s.http.Start()
	return s, nil
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*wsConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	s.http.Close()
}

// EventSubURL is the WebSocket URL (Twitch: wss://eventsub.wss.twitch.tv/ws).
func (s *Server) EventSubURL() string { return "ws" + strings.TrimPrefix(s.http.URL, "http") + "/ws" }

// APIURL is the helix base (Twitch: https://api.twitch.tv/helix).
func (s *Server) APIURL() string { return s.http.URL + "/helix" }

// AuthURL is the OAuth base (Twitch: https://id.twitch.tv/oauth2).
func (s *Server) AuthURL() string { return s.http.URL + "/oauth2" }

// Options returns the server's settings (with defaults filled in).
func (s *Server) Options() Options { return s.opt }

// AddUser makes an account known to Get Users.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	s.users[u.ID] = u
	s.mu.Unlock()
}

// FailMarkers makes Create Stream Marker answer 404 (stream offline).
func (s *Server) FailMarkers(fail bool) {
	s.mu.Lock()
	s.failMarkers = fail
	s.mu.Unlock()
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func stamp() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// notify wakes everyone waiting for a change.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitFor polls cond (under the server's lock) until it holds or timeout
// passes, waking on every change the server sees.
func (s *Server) WaitFor(timeout time.Duration, cond func(st State) bool) (State, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		st := s.stateLocked()
		ch := s.changed
		s.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return st, errors.New("twitchtest: condition not met in time")
		}
	}
}

// State is a snapshot of what the server has seen.
type State struct {
	Connects      int // WebSocket connections accepted
	Open          int // connections open now
	Subscriptions []Subscription
	Sent          []SentMessage
	Whispers      []Whisper
	Markers       []Marker
	UserLookups   int
	Clips         []Clip // Create Clip calls, in order
	ClipLookups   int    // Get Clips calls
	ActiveSession string
	// Refused are Send Chat Message calls answered 429 (over the limit).
	Refused []SentMessage
	// WhisperCapped counts whispers refused for the daily recipient cap.
	WhisperCapped int
	// Validations counts /oauth2/validate calls.
	Validations int
}

func (s *Server) stateLocked() State {
	st := State{Connects: s.connects, Open: len(s.conns), UserLookups: s.userLookups,
		Subscriptions: append([]Subscription(nil), s.subs...), Sent: append([]SentMessage(nil), s.sent...),
		Whispers: append([]Whisper(nil), s.whispers...), Markers: append([]Marker(nil), s.markers...)}
	for _, c := range s.clips {
		st.Clips = append(st.Clips, *c)
	}
	st.ClipLookups = s.clipLookups
	st.Refused = append([]SentMessage(nil), s.refused...)
	st.WhisperCapped = s.whisperCap
	st.Validations = s.validations
	if s.active != nil {
		st.ActiveSession = s.active.session
	}
	return st
}

// State returns a snapshot now.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked()
}

// serveWS accepts an EventSub connection: a welcome first, then keepalives
// whenever it has been quiet for half the keepalive timeout. A connection
// to a reconnect URL (?reconnect=old-session) takes over the old session's
// subscriptions.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	wc := &wsConn{s: s, c: c, session: "AQoQ" + strings.ReplaceAll(newID(), "-", "")[:24], done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[wc.session] = wc
	s.connects++
	if old := r.URL.Query().Get("reconnect"); old != "" {
		for i := range s.subs {
			if s.subs[i].Transport.SessionID == old {
				s.subs[i].Transport.SessionID = wc.session
			}
		}
		s.active = wc
	}
	s.notifyLocked()
	s.mu.Unlock()

	ka := s.opt.Keepalive
	_ = wc.write(Metadata{MessageType: "session_welcome"}, SessionPayload{Session: Session{
		ID: wc.session, Status: "connected", ConnectedAt: stamp(), KeepaliveTimeoutSeconds: &ka}})

	go wc.keepalive(time.Duration(ka) * time.Second / 2)
	// Read until the client goes: it sends nothing but close frames.
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	wc.close()
}

func (wc *wsConn) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-wc.done:
			return
		case <-t.C:
			wc.wmu.Lock()
			silent := wc.silent
			wc.wmu.Unlock()
			if !silent {
				_ = wc.write(Metadata{MessageType: "session_keepalive"}, struct{}{})
			}
		}
	}
}

func (wc *wsConn) write(md Metadata, payload any) error {
	if md.MessageID == "" {
		md.MessageID = newID()
	}
	md.MessageTimestamp = stamp()
	p, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	b, err := json.Marshal(Envelope{Metadata: md, Payload: p})
	if err != nil {
		return err
	}
	wc.wmu.Lock()
	defer wc.wmu.Unlock()
	_ = wc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return wc.c.WriteMessage(websocket.TextMessage, b)
}

func (wc *wsConn) close() {
	wc.closeOnce.Do(func() {
		close(wc.done)
		_ = wc.c.Close()
		s := wc.s
		s.mu.Lock()
		delete(s.conns, wc.session)
		if s.active == wc {
			s.active = nil
		}
		s.notifyLocked()
		s.mu.Unlock()
	})
}

func (s *Server) activeConn() (*wsConn, Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil, Subscription{}, errors.New("twitchtest: no subscribed connection")
	}
	for _, sub := range s.subs {
		if sub.Transport.SessionID == s.active.session && sub.Status == "enabled" {
			return s.active, sub, nil
		}
	}
	return nil, Subscription{}, errors.New("twitchtest: active connection has no subscription")
}

// ChatMessage is what a test says a chatter typed.
type ChatMessage struct {
	UserID, Login, DisplayName string
	Text                       string
	Badges                     []string // set ids: broadcaster, moderator, vip, subscriber
	MessageID                  string   // the chat message id; random when empty
}

// Event builds the channel.chat.message event for m.
func (s *Server) Event(m ChatMessage) ChatMessageEvent {
	if m.MessageID == "" {
		m.MessageID = newID()
	}
	if m.DisplayName == "" {
		m.DisplayName = m.Login
	}
	badges := make([]Badge, 0, len(m.Badges))
	for _, b := range m.Badges {
		badges = append(badges, Badge{SetID: b, ID: "1"})
	}
	b := s.opt.Broadcaster
	return ChatMessageEvent{
		BroadcasterUserID: b.ID, BroadcasterUserLogin: b.Login, BroadcasterUserName: b.DisplayName,
		ChatterUserID: m.UserID, ChatterUserLogin: m.Login, ChatterUserName: m.DisplayName,
		MessageID: m.MessageID,
		Message:   ChatText{Text: m.Text, Fragments: []Fragment{{Type: "text", Text: m.Text}}},
		Color:     "#00FF7F", Badges: badges, MessageType: "text",
	}
}

// Chat delivers a channel.chat.message notification on the subscribed
// connection and returns its metadata message id.
func (s *Server) Chat(m ChatMessage) (string, error) {
	id := newID()
	return id, s.Notify(id, s.Event(m))
}

// Notify sends a notification with the given metadata message id (send
// the same id twice to model Twitch's at-least-once delivery).
func (s *Server) Notify(messageID string, ev ChatMessageEvent) error {
	wc, sub, err := s.activeConn()
	if err != nil {
		return err
	}
	evb, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return wc.write(Metadata{MessageID: messageID, MessageType: "notification",
		SubscriptionType: sub.Type, SubscriptionVersion: sub.Version},
		NotificationPayload{Subscription: sub, Event: evb})
}

// Reconnect sends session_reconnect on the subscribed connection. The old
// connection keeps working (and carries notifications sent meanwhile)
// until the client closes it; the client must connect to the reconnect
// URL, which takes over the subscriptions when it connects.
func (s *Server) Reconnect() error {
	wc, _, err := s.activeConn()
	if err != nil {
		return err
	}
	url := s.EventSubURL() + "?reconnect=" + wc.session
	return wc.write(Metadata{MessageType: "session_reconnect"}, SessionPayload{Session: Session{
		ID: wc.session, Status: "reconnecting", ConnectedAt: stamp(), ReconnectURL: &url}})
}

// Silence stops keepalives on the subscribed connection without closing
// it: a dead link, as a client sees one.
func (s *Server) Silence() error {
	wc, _, err := s.activeConn()
	if err != nil {
		return err
	}
	wc.wmu.Lock()
	wc.silent = true
	wc.wmu.Unlock()
	return nil
}

// InvalidateToken makes the current token fail validation and every helix
// call (the user disconnected the app, or the token expired). A refresh
// with Options.RefreshToken then hands out a new token that works.
func (s *Server) InvalidateToken() {
	s.mu.Lock()
	s.opt.Token = "tok" + strings.ReplaceAll(newID(), "-", "")[:24]
	s.notifyLocked()
	s.mu.Unlock()
}

// Revoke sends a revocation with status reason (authorization_revoked,
// user_removed, version_removed) and marks the subscription so. As on
// Twitch, authorization_revoked also invalidates the token.
func (s *Server) Revoke(reason string) error {
	wc, sub, err := s.activeConn()
	if err != nil {
		return err
	}
	if reason == "authorization_revoked" {
		s.InvalidateToken()
	}
	s.mu.Lock()
	for i := range s.subs {
		if s.subs[i].ID == sub.ID {
			s.subs[i].Status = reason
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	sub.Status = reason
	return wc.write(Metadata{MessageType: "revocation", SubscriptionType: sub.Type, SubscriptionVersion: sub.Version},
		RevocationPayload{Subscription: sub})
}

// helix and OAuth

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// helixError is Twitch's error body: {"error":"Unauthorized","status":401,"message":"..."}.
func helixError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": http.StatusText(status), "status": status, "message": msg})
}

// decodeJSON reads a JSON request body as Twitch does: a body that is not
// sent as application/json, or does not parse, is a 400 and nothing else
// of the request is looked at.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		helixError(w, http.StatusBadRequest, "The request body must be JSON sent with Content-Type: application/json")
		return false
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(v); err != nil {
		helixError(w, http.StatusBadRequest, "The request body is not valid JSON")
		return false
	}
	return true
}

func (s *Server) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Client-Id") != s.opt.ClientID {
			helixError(w, http.StatusUnauthorized, "Client ID and OAuth token do not match")
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+s.token() {
			helixError(w, http.StatusUnauthorized, "Invalid OAuth token")
			return
		}
		s.mu.Lock()
		now := s.opt.Now()
		ok := s.helix.take(now)
		s.helix.headers(w, now)
		s.mu.Unlock()
		if !ok {
			helixError(w, http.StatusTooManyRequests, "Too Many Requests")
			return
		}
		next(w, r)
	}
}

func (s *Server) token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opt.Token
}

func (s *Server) hasScope(scope string) bool {
	for _, sc := range s.opt.Scopes {
		if sc == scope {
			return true
		}
	}
	return false
}

// validate: GET /oauth2/validate with "Authorization: OAuth <token>" answers
// {"client_id":"...","login":"...","scopes":[...],"user_id":"...","expires_in":5520838}
// or 401 {"status":401,"message":"invalid access token"}.
func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.validations++
	s.notifyLocked()
	s.mu.Unlock()
	if r.Header.Get("Authorization") != "OAuth "+s.token() {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "invalid access token"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"client_id": s.opt.ClientID, "login": s.opt.Bot.Login,
		"scopes": s.opt.Scopes, "user_id": s.opt.Bot.ID, "expires_in": 5520838})
}

// refresh: POST /oauth2/token?grant_type=refresh_token&refresh_token=...&client_id=...&client_secret=...
func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	_ = r.ParseForm()
	get := func(k string) string {
		if v := q.Get(k); v != "" {
			return v
		}
		return r.PostForm.Get(k)
	}
	if s.opt.RefreshToken == "" || get("refresh_token") != s.opt.RefreshToken || get("grant_type") != "refresh_token" || get("client_id") != s.opt.ClientID {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 400, "message": "Invalid refresh token"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": s.token(), "refresh_token": s.opt.RefreshToken,
		"expires_in": 14400, "scope": s.opt.Scopes, "token_type": "bearer"})
}

// createSubscription: POST /helix/eventsub/subscriptions with
// {"type":"channel.chat.message","version":"1","condition":{"broadcaster_user_id":"...","user_id":"..."},
//
//	"transport":{"method":"websocket","session_id":"..."}}
//
// answers 202 {"data":[subscription],"total":1,"total_cost":0,"max_total_cost":10000}.
func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type      string            `json:"type"`
		Version   string            `json:"version"`
		Condition map[string]string `json:"condition"`
		Transport Transport         `json:"transport"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Type != "channel.chat.message" || req.Version != "1" {
		helixError(w, http.StatusBadRequest, "unsupported subscription type or version")
		return
	}
	if req.Condition["broadcaster_user_id"] != s.opt.Broadcaster.ID || req.Condition["user_id"] != s.opt.Bot.ID {
		helixError(w, http.StatusBadRequest, "condition must name the broadcaster and the token's user")
		return
	}
	if !s.hasScope("user:read:chat") {
		helixError(w, http.StatusForbidden, "subscription missing proper authorization")
		return
	}
	if req.Transport.Method != "websocket" {
		helixError(w, http.StatusBadRequest, "transport method must be websocket")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wc, ok := s.conns[req.Transport.SessionID]
	if !ok {
		helixError(w, http.StatusBadRequest, "websocket transport session does not exist or has already disconnected")
		return
	}
	for _, sub := range s.subs {
		if sub.Transport.SessionID == wc.session && sub.Type == req.Type && sub.Status == "enabled" {
			helixError(w, http.StatusConflict, "subscription already exists")
			return
		}
	}
	sub := Subscription{ID: newID(), Status: "enabled", Type: req.Type, Version: req.Version, Cost: 0,
		Condition: req.Condition, Transport: Transport{Method: "websocket", SessionID: wc.session, ConnectedAt: stamp()},
		CreatedAt: stamp()}
	s.subs = append(s.subs, sub)
	s.active = wc
	s.notifyLocked()
	writeJSON(w, http.StatusAccepted, map[string]any{"data": []Subscription{sub}, "total": len(s.subs), "total_cost": 0, "max_total_cost": 10000})
}

// sendChat: POST /helix/chat/messages {"broadcaster_id","sender_id","message","reply_parent_message_id"}
// answers 200 {"data":[{"message_id":"...","is_sent":true,"drop_reason":null}]}.
func (s *Server) sendChat(w http.ResponseWriter, r *http.Request) {
	var m SentMessage
	if !decodeJSON(w, r, &m) {
		return
	}
	if m.BroadcasterID == "" || m.SenderID == "" {
		helixError(w, http.StatusBadRequest, "Missing required parameter: broadcaster_id and sender_id are required")
		return
	}
	if !s.hasScope("user:write:chat") {
		helixError(w, http.StatusUnauthorized, "Missing scope: user:write:chat")
		return
	}
	if m.BroadcasterID != s.opt.Broadcaster.ID || m.SenderID != s.opt.Bot.ID {
		helixError(w, http.StatusForbidden, "The sender is not permitted to send chat messages to the broadcaster's chat room")
		return
	}
	if m.Message == "" {
		helixError(w, http.StatusBadRequest, "Missing required parameter: message")
		return
	}
	if len([]rune(m.Message)) > 500 {
		helixError(w, http.StatusUnprocessableEntity, "The message is too large")
		return
	}
	if s.opt.ChatLatency != nil {
		s.mu.Lock()
		n := s.chatCalls
		s.chatCalls++
		s.mu.Unlock()
		time.Sleep(s.opt.ChatLatency(n))
	}
	s.mu.Lock()
	m.At = s.opt.Now()
	if !s.chatWindow.take(m.At) {
		s.refused = append(s.refused, m)
		s.notifyLocked()
		s.mu.Unlock()
		helixError(w, http.StatusTooManyRequests, "The sender has exceeded the number of chat messages it may send")
		return
	}
	s.sent = append(s.sent, m)
	s.notifyLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": []map[string]any{{"message_id": newID(), "is_sent": true, "drop_reason": nil}}})
}

// whisper: POST /helix/whispers?from_user_id=...&to_user_id=... {"message":"..."} answers 204.
func (s *Server) whisper(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Message string `json:"message"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	if body.Message == "" {
		helixError(w, http.StatusBadRequest, "The message field must not be empty")
		return
	}
	if !s.hasScope("user:manage:whispers") {
		helixError(w, http.StatusUnauthorized, "Missing scope: user:manage:whispers")
		return
	}
	q := r.URL.Query()
	if q.Get("from_user_id") != s.opt.Bot.ID || q.Get("to_user_id") == "" {
		helixError(w, http.StatusBadRequest, "from_user_id must be the token's user")
		return
	}
	to := q.Get("to_user_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opt.Now()
	for id, first := range s.recipients {
		if now.Sub(first) >= s.opt.WhisperDay {
			delete(s.recipients, id)
		}
	}
	if _, known := s.recipients[to]; !known && len(s.recipients) >= s.opt.WhisperRecipients {
		s.whisperCap++
		s.notifyLocked()
		helixError(w, http.StatusTooManyRequests, "The sending user exceeded the number of whisper requests that they may make")
		return
	}
	for _, win := range s.whisperWins {
		if win.reset(now).After(now) {
			helixError(w, http.StatusTooManyRequests, "The sending user exceeded the number of whisper requests that they may make")
			return
		}
	}
	for _, win := range s.whisperWins {
		win.take(now)
	}
	if _, known := s.recipients[to]; !known {
		s.recipients[to] = now
	}
	s.whispers = append(s.whispers, Whisper{From: q.Get("from_user_id"), To: to, Message: body.Message})
	s.notifyLocked()
	w.WriteHeader(http.StatusNoContent)
}

// getUsers: GET /helix/users?id=...&login=... answers {"data":[{"id","login",
// "display_name","type","broadcaster_type","description","profile_image_url",
// "offline_image_url","view_count","created_at"}]}.
func (s *Server) getUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q["id"])+len(q["login"]) > 100 {
		helixError(w, http.StatusBadRequest, "at most 100 ids and logins")
		return
	}
	s.mu.Lock()
	s.userLookups++
	var out []map[string]any
	for _, u := range s.users {
		match := false
		for _, id := range q["id"] {
			match = match || id == u.ID
		}
		for _, l := range q["login"] {
			match = match || strings.EqualFold(l, u.Login)
		}
		if match {
			out = append(out, map[string]any{"id": u.ID, "login": u.Login, "display_name": u.DisplayName,
				"type": "", "broadcaster_type": "", "description": "", "profile_image_url": "", "offline_image_url": "",
				"view_count": 0, "created_at": u.CreatedAt.UTC().Format(time.RFC3339)})
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

// createMarker: POST /helix/streams/markers {"user_id","description"} answers
// 200 {"data":[{"id","created_at","description","position_seconds"}]}; 404
// when the channel is not live.
func (s *Server) createMarker(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UserID      string `json:"user_id"`
		Description string `json:"description"`
	}
	// Twitch reads user_id and description from the JSON body only: the
	// query parameters some libraries send instead are a 400 (missing
	// body), which is how markers silently never got made.
	if !decodeJSON(w, r, &body) {
		return
	}
	if body.UserID == "" {
		helixError(w, http.StatusBadRequest, "Missing required parameter \"user_id\"")
		return
	}
	if !s.hasScope("channel:manage:broadcast") {
		helixError(w, http.StatusUnauthorized, "Missing scope: channel:manage:broadcast")
		return
	}
	if len([]rune(body.Description)) > 140 {
		helixError(w, http.StatusBadRequest, "description is at most 140 characters")
		return
	}
	if body.UserID != s.opt.Broadcaster.ID || (s.opt.Bot.ID != s.opt.Broadcaster.ID && s.opt.NotEditor) {
		helixError(w, http.StatusForbidden, "The user in the access token is not authorized to create video markers for the user in user_id")
		return
	}
	s.mu.Lock()
	fail := s.failMarkers
	if !fail {
		s.markers = append(s.markers, Marker{UserID: body.UserID, Description: body.Description})
		s.notifyLocked()
	}
	s.mu.Unlock()
	if fail {
		helixError(w, http.StatusNotFound, "the user is not streaming live")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": []map[string]any{{"id": newID(), "created_at": stamp(),
		"description": body.Description, "position_seconds": 244}}})
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("twitchtest at %s", s.http.URL) }
