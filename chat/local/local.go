package local

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/templates"
)

//go:embed assets/chat.js
var assets embed.FS

// Config is what the local chat needs.
type Config struct {
	Router *chat.Router
	Admin  microdrop.Admin
	// Channel is the room /chat opens: "local" when empty.
	Channel string
	Logger  *slog.Logger
	Now     func() time.Time
	// Say limits bot lines per room; local chat has no platform limit, but
	// coalescing still keeps a flood readable: 50 per second when zero.
	Say chat.Limit
	// Secure marks the device cookie Secure (public URL on https).
	Secure bool
	// SignInRequired is set when viewer sign-in is configured: local mode is
	// over, so only the admin bridge may speak in the local room (a browser
	// identity is free to make and must not claim real drops).
	SignInRequired bool
}

// Chat is the local chat room server.
type Chat struct {
	cfg    Config
	log    *slog.Logger
	outbox *chat.Outbox
	up     websocket.Upgrader

	mu      sync.Mutex
	clients map[string]map[*client]struct{} // channel -> sockets
	roles   map[string]chat.Role            // channel/user -> granted role
}

type client struct {
	channel, userID string
	send            chan []byte
	once            sync.Once
	done            chan struct{}
}

var (
	channelPattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	userPattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	loginPattern   = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
)

// New returns the local chat; register its routes with Routes and start
// delivering replies with Run.
func New(cfg Config) (*Chat, error) {
	if cfg.Router == nil {
		return nil, errors.New("local chat: a router is required")
	}
	if cfg.Channel == "" {
		cfg.Channel = "local"
	}
	cfg.Channel = claims.NormalizeChannel(cfg.Channel)
	if !channelPattern.MatchString(cfg.Channel) {
		return nil, errors.New("local chat: channel must be lowercase letters, digits and _")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Say.Messages == 0 {
		cfg.Say = chat.Limit{Messages: 50, Per: time.Second}
	}
	c := &Chat{cfg: cfg, log: cfg.Logger.With("component", "chat.local"),
		clients: make(map[string]map[*client]struct{}), roles: make(map[string]chat.Role)}
	c.up = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 4096}
	c.outbox = chat.NewOutbox(chat.OutboxOptions{Sender: sender{c}, Say: cfg.Say, Whisper: []chat.Limit{{Messages: 1000, Per: time.Second}},
		Now: cfg.Now, Logger: cfg.Logger})
	return c, nil
}

// Routes registers the page, the socket and the API on mux.
func (c *Chat) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /chat", c.page)
	mux.HandleFunc("GET /chat/{channel}", c.page)
	mux.HandleFunc("GET /chat/assets/chat.js", c.script)
	mux.HandleFunc("GET /ws/chat", c.socket)
	mux.HandleFunc("POST /api/chat", c.post)
	mux.HandleFunc("POST /api/chat/roles", c.grant)
}

// Run delivers bot replies until ctx ends.
func (c *Chat) Run(ctx context.Context) { c.outbox.Run(ctx) }

// Outbox is the reply queue.
func (c *Chat) Outbox() *chat.Outbox { return c.outbox }

func (c *Chat) page(w http.ResponseWriter, r *http.Request) {
	ch := c.cfg.Channel
	if p := r.PathValue("channel"); p != "" {
		ch = claims.NormalizeChannel(p)
		if !channelPattern.MatchString(ch) {
			http.Error(w, "a channel is lowercase letters, digits and _", http.StatusBadRequest)
			return
		}
	}
	// The browser is the local identity: the socket is bound to it.
	microdrop.EnsureDevice(w, r, c.cfg.Secure, c.cfg.Now())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'")
	_ = templates.ChatPage(ch).Render(r.Context(), w)
}

func (c *Chat) script(w http.ResponseWriter, _ *http.Request) {
	b, _ := assets.ReadFile("assets/chat.js")
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// PostRequest is the body of POST /api/chat.
type PostRequest struct {
	Channel string   `json:"channel"`
	UserID  string   `json:"user_id"`
	Login   string   `json:"login"`
	Text    string   `json:"text"`
	Roles   []string `json:"roles"`
}

// PostResponse lists the bot's replies to the message, private ones
// (pickup codes) included: they are for the poster.
type PostResponse struct {
	Replies []chat.Reply `json:"replies"`
}

// message turns what a user sent into a chat.Message, or a clear error.
func (c *Chat) message(channel, userID, login, text string, role chat.Role) (chat.Message, error) {
	if channel == "" {
		channel = c.cfg.Channel
	}
	channel = claims.NormalizeChannel(channel)
	if !channelPattern.MatchString(channel) {
		return chat.Message{}, microdrop.Errorf(microdrop.EINVALID, "channel must be 1-64 lowercase letters, digits or _")
	}
	if !userPattern.MatchString(userID) {
		return chat.Message{}, microdrop.Errorf(microdrop.EINVALID, "user_id must be 1-64 letters, digits, '_' or '-'")
	}
	if login == "" {
		login = userID
	}
	if !loginPattern.MatchString(login) {
		return chat.Message{}, microdrop.Errorf(microdrop.EINVALID, "login must be 1-64 letters, digits or _")
	}
	text = strings.TrimSpace(text)
	if text == "" || utf8.RuneCountInString(text) > chat.MaxTextLen {
		return chat.Message{}, microdrop.Errorf(microdrop.EINVALID, "text must be 1-%d characters", chat.MaxTextLen)
	}
	if err := microdrop.CheckText("text", text, chat.MaxTextLen); err != nil {
		return chat.Message{}, err
	}
	c.mu.Lock()
	if g, ok := c.roles[channel+"\x00"+userID]; ok && g > role {
		role = g
	}
	c.mu.Unlock()
	return chat.Message{Platform: "local", Channel: channel, UserID: userID, Login: strings.ToLower(login),
		DisplayName: login, Role: role, Text: text, ID: newID(), At: c.cfg.Now()}, nil
}

// roleOf reads requested roles; beyond viewer they need the admin credential.
func roleOf(names []string, admin bool) (chat.Role, error) {
	role := chat.Viewer
	for _, n := range names {
		r, ok := chat.ParseRole(n)
		if !ok {
			return 0, microdrop.Errorf(microdrop.EINVALID, "unknown role %q: use viewer, subscriber, vip, moderator or broadcaster", n)
		}
		if r > role {
			role = r
		}
	}
	if role > chat.Viewer && !admin {
		return 0, microdrop.Errorf(microdrop.EFORBIDDEN, "roles beyond viewer need the admin token (Authorization: Bearer <token>)")
	}
	return role, nil
}

func (c *Chat) post(w http.ResponseWriter, r *http.Request) {
	var req PostRequest
	if err := microdrop.DecodeJSON(w, r, &req); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	admin := c.cfg.Admin.Allowed(r)
	role, err := roleOf(req.Roles, admin)
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	if !admin {
		d, err := c.caller(w, r, req.Channel, req.UserID, true)
		if err != nil {
			microdrop.WriteError(w, err)
			return
		}
		req.UserID = d.UserID
		if req.Login == "" {
			req.Login = d.Login
		}
	}
	m, err := c.message(req.Channel, req.UserID, req.Login, req.Text, role)
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	replies := c.handle(r.Context(), m)
	if replies == nil {
		replies = []chat.Reply{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(PostResponse{Replies: replies})
}

// handle shows the message to the room, routes it and queues the replies.
func (c *Chat) handle(ctx context.Context, m chat.Message) []chat.Reply {
	c.broadcast(m.Channel, frame{Type: "message", Channel: m.Channel, UserID: m.UserID, Login: m.Login,
		DisplayName: m.DisplayName, Role: m.Role.String(), Text: m.Text, ID: m.ID})
	replies := c.cfg.Router.Handle(ctx, m)
	c.outbox.Add(replies...)
	return replies
}

// caller is the local identity of a request that is not the admin bridge:
// the browser's device cookie (a new one for a POST without it, so a script
// keeping cookies stays one user). A user_id naming anyone else is refused.
func (c *Chat) caller(w http.ResponseWriter, r *http.Request, channel, userID string, mint bool) (microdrop.Device, error) {
	if c.cfg.SignInRequired {
		return microdrop.Device{}, microdrop.Errorf(microdrop.EFORBIDDEN, "viewer sign-in is on, so the local room is for the admin bridge only; viewers claim on the claim page")
	}
	if !microdrop.SameOrigin(r) {
		return microdrop.Device{}, microdrop.Errorf(microdrop.EFORBIDDEN, "chat from this site's own page")
	}
	if ch := claims.NormalizeChannel(channel); ch != "" && ch != c.cfg.Channel {
		return microdrop.Device{}, microdrop.Errorf(microdrop.EFORBIDDEN, "local chat speaks only in the %s room; other channels need the admin token", c.cfg.Channel)
	}
	d, ok := microdrop.DeviceOf(r)
	if !ok {
		if !mint {
			return microdrop.Device{}, microdrop.Errorf(microdrop.EUNAUTHORIZED, "open the chat page first: your browser is your local identity")
		}
		d = microdrop.EnsureDevice(w, r, c.cfg.Secure, c.cfg.Now())
	}
	if userID != "" && userID != d.UserID {
		return microdrop.Device{}, microdrop.Errorf(microdrop.EFORBIDDEN, "user_id is your browser's own identity (%s); only the admin bridge may speak for others", d.UserID)
	}
	return d, nil
}

// GrantRequest is the body of POST /api/chat/roles (admin only).
type GrantRequest struct {
	Channel string `json:"channel"`
	UserID  string `json:"user_id"`
	Role    string `json:"role"`
}

func (c *Chat) grant(w http.ResponseWriter, r *http.Request) {
	if !c.cfg.Admin.Allowed(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="microdrop"`)
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EUNAUTHORIZED, "this needs the admin token: Authorization: Bearer <token>"))
		return
	}
	var req GrantRequest
	if err := microdrop.DecodeJSON(w, r, &req); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	if req.Channel == "" {
		req.Channel = c.cfg.Channel
	}
	req.Channel = claims.NormalizeChannel(req.Channel)
	role, ok := chat.ParseRole(req.Role)
	switch {
	case !channelPattern.MatchString(req.Channel):
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "channel must be 1-64 lowercase letters, digits or _"))
		return
	case !userPattern.MatchString(req.UserID):
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "user_id must be 1-64 letters, digits, '_' or '-'"))
		return
	case !ok || req.Role == "":
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "role must be viewer, subscriber, vip, moderator or broadcaster"))
		return
	}
	c.SetRole(req.Channel, req.UserID, role)
	c.log.Info("role granted", "channel", req.Channel, "user", req.UserID, "role", role)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(GrantRequest{Channel: req.Channel, UserID: req.UserID, Role: role.String()})
}

// SetRole gives a local user a role in a channel (Viewer removes it).
func (c *Chat) SetRole(channel, userID string, role chat.Role) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := claims.NormalizeChannel(channel) + "\x00" + userID
	if role == chat.Viewer {
		delete(c.roles, k)
		return
	}
	c.roles[k] = role
}

// frame is what the socket sends and receives.
type frame struct {
	Type        string `json:"type"` // message, reply, whisper, error (out); message (in)
	Channel     string `json:"channel,omitempty"`
	UserID      string `json:"user_id,omitempty"`
	Login       string `json:"login,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Role        string `json:"role,omitempty"`
	Text        string `json:"text"`
	ID          string `json:"id,omitempty"`
	ReplyTo     string `json:"reply_to,omitempty"`
}

// socket: GET /ws/chat?channel=&user_id=&login=[&role=] — frames in are
// {"text": "..."} (optionally with user_id and login, so one socket can
// drive many chatters in a load test); frames out are messages, bot
// replies and whispers to this socket's user.
func (c *Chat) socket(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	admin := c.cfg.Admin.Allowed(r)
	var roles []string
	if q.Get("role") != "" {
		roles = []string{q.Get("role")}
	}
	role, err := roleOf(roles, admin)
	userID, sockLogin := q.Get("user_id"), q.Get("login")
	if err == nil && !admin {
		var d microdrop.Device
		d, err = c.caller(w, r, q.Get("channel"), userID, false)
		userID = d.UserID
		if sockLogin == "" {
			sockLogin = d.Login
		}
	}
	if err == nil {
		_, err = c.message(q.Get("channel"), userID, sockLogin, "hello", role)
	}
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	ws, err := c.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	channel := claims.NormalizeChannel(q.Get("channel"))
	if channel == "" {
		channel = c.cfg.Channel
	}
	cl := &client{channel: channel, userID: userID, send: make(chan []byte, 256), done: make(chan struct{})}
	c.join(cl)
	defer c.leave(cl)
	go c.writer(ws, cl)
	ws.SetReadLimit(4096)
	for {
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Minute))
		var in frame
		if err := ws.ReadJSON(&in); err != nil {
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if errors.As(err, &se) || errors.As(err, &te) {
				cl.push(mustJSON(frame{Type: "error", Text: "send JSON like {\"text\": \"!claim\"}"}))
				continue
			}
			return
		}
		userID, login := cl.userID, sockLogin
		if in.UserID != "" && in.UserID != cl.userID {
			if !admin { // only a bridge drives many chatters from one socket
				cl.push(mustJSON(frame{Type: "error", Text: "this socket speaks as your browser's own identity; only the admin bridge may set user_id"}))
				continue
			}
			userID, login = in.UserID, in.Login
		}
		m, err := c.message(channel, userID, login, in.Text, role)
		if err != nil {
			cl.push(mustJSON(frame{Type: "error", Text: microdrop.ErrorMessage(err)}))
			continue
		}
		c.handle(r.Context(), m)
	}
}

func (c *Chat) writer(ws *websocket.Conn, cl *client) {
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	defer ws.Close()
	for {
		select {
		case <-cl.done:
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		case b := <-cl.send:
			_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
				return
			}
		case <-ping.C:
			if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
				return
			}
		}
	}
}

// push queues a frame; a client too slow to keep up loses it rather than
// holding up the room.
func (cl *client) push(b []byte) {
	select {
	case cl.send <- b:
	default:
	}
}

func (c *Chat) join(cl *client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	set, ok := c.clients[cl.channel]
	if !ok {
		set = make(map[*client]struct{})
		c.clients[cl.channel] = set
	}
	set[cl] = struct{}{}
}

func (c *Chat) leave(cl *client) {
	c.mu.Lock()
	delete(c.clients[cl.channel], cl)
	if len(c.clients[cl.channel]) == 0 {
		delete(c.clients, cl.channel)
	}
	c.mu.Unlock()
	cl.once.Do(func() { close(cl.done) })
}

func (c *Chat) broadcast(channel string, f frame) {
	b := mustJSON(f)
	c.mu.Lock()
	defer c.mu.Unlock()
	for cl := range c.clients[channel] {
		cl.push(b)
	}
}

func (c *Chat) whisper(channel, userID string, f frame) bool {
	b := mustJSON(f)
	c.mu.Lock()
	defer c.mu.Unlock()
	sent := false
	for cl := range c.clients[channel] {
		if cl.userID == userID {
			cl.push(b)
			sent = true
		}
	}
	return sent
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sender shows replies to the room and whispers to the user's own sockets.
type sender struct{ c *Chat }

func (s sender) Say(_ context.Context, channel, text, replyTo string) error {
	s.c.broadcast(channel, frame{Type: "reply", Channel: channel, Text: text, ReplyTo: replyTo})
	return nil
}

// Whisper reaches the user's open sockets; a user with none (a script using
// POST /api/chat) already has the text in the response, so nothing is lost.
func (s sender) Whisper(_ context.Context, channel, userID, _, text string) error {
	s.c.whisper(channel, userID, frame{Type: "whisper", Channel: channel, UserID: userID, Text: text})
	return nil
}
