package twitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nicklaw5/helix/v2"

	"github.com/microdrop/microdrop/chat"
)

// frame is one message read from a connection, or its end.
type frame struct {
	conn *wsConn
	data []byte
	err  error
}

// wsConn is one EventSub WebSocket with its reader goroutine.
type wsConn struct {
	ws      *websocket.Conn
	timeout atomic.Int64  // read deadline in ns: keepalive timeout plus margin
	done    chan struct{} // closed when the reader has stopped
}

// setTimeout changes the silence allowed and applies it to the read in progress.
func (wc *wsConn) setTimeout(d time.Duration) {
	wc.timeout.Store(int64(d))
	_ = wc.ws.SetReadDeadline(time.Now().Add(d))
}

// errDead marks a connection that missed its keepalive.
var errDead = errors.New("twitch: eventsub connection missed its keepalive")

// connect keeps a session up until ctx ends, reconnecting with backoff to
// the configured URL whenever a session fails.
func (c *Client) connect(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errDead) {
			c.deadLinks.Add(1)
		}
		if errors.Is(err, errRevoked) {
			// A new subscription needs a token that works: wait for one
			// (refreshed, or validating again) before connecting.
			c.recoverToken(ctx)
			wait = time.Second
		}
		if time.Since(start) > time.Minute {
			wait = time.Second
		}
		c.log.Warn("eventsub session ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, c.cfg.Backoff)
	}
}

func (c *Client) dial(ctx context.Context, url string, frames chan<- frame) (*wsConn, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("twitch: dial eventsub %s: %w", url, err)
	}
	ws.SetReadLimit(1 << 20)
	wc := &wsConn{ws: ws, done: make(chan struct{})}
	// Until a welcome says otherwise, allow a little over Twitch's default of 10 s.
	wc.timeout.Store(int64(15 * time.Second))
	go wc.read(ctx, frames)
	return wc, nil
}

// read forwards frames until the connection fails or is silent past its
// timeout (set from the welcome by the session loop).
func (wc *wsConn) read(ctx context.Context, frames chan<- frame) {
	defer close(wc.done)
	for {
		_ = wc.ws.SetReadDeadline(time.Now().Add(time.Duration(wc.timeout.Load())))
		_, data, err := wc.ws.ReadMessage()
		select {
		case frames <- frame{conn: wc, data: data, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// session runs one EventSub session: connect, subscribe on welcome, read;
// on session_reconnect, connect to the new URL while still reading the old
// connection, switch on the new welcome, then close the old one gracefully
// so every message it carried is read first. Duplicates that the overlap
// may bring are dropped by message id.
func (c *Client) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	frames := make(chan frame, 64)
	cur, err := c.dial(ctx, c.cfg.EventSubURL, frames)
	if err != nil {
		return err
	}
	conns := map[*wsConn]bool{cur: true}
	defer func() {
		for wc := range conns {
			_ = wc.ws.Close()
		}
	}()
	var next *wsConn // the connection a reconnect is moving to
	welcomed := false
	for {
		var f frame
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f = <-frames:
		}
		wc := f.conn
		if f.err != nil {
			delete(conns, wc)
			_ = wc.ws.Close()
			if wc != cur {
				continue // the old connection of a reconnect, drained
			}
			var ne interface{ Timeout() bool }
			if errors.As(f.err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w (%s of silence)", errDead, time.Duration(wc.timeout.Load()))
			}
			return fmt.Errorf("twitch: eventsub connection lost: %w", f.err)
		}
		var env envelope
		if err := json.Unmarshal(f.data, &env); err != nil {
			c.log.Warn("eventsub: malformed message", "err", err)
			continue
		}
		switch env.Metadata.MessageType {
		case "session_welcome":
			if env.Payload.Session == nil {
				return errors.New("twitch: welcome without a session")
			}
			if k := env.Payload.Session.KeepaliveTimeoutSeconds; k > 0 {
				kt := time.Duration(k) * time.Second
				wc.setTimeout(kt + kt/4 + 500*time.Millisecond)
			}
			c.connects.Add(1)
			if wc == next {
				// The reconnect target is live and holds our subscription:
				// switch, and let the old connection drain then close.
				old := cur
				cur, next = wc, nil
				c.reconnects.Add(1)
				_ = old.ws.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, "reconnected"), time.Now().Add(time.Second))
				c.log.Info("eventsub reconnected", "session", env.Payload.Session.ID)
				continue
			}
			if welcomed {
				continue
			}
			welcomed = true
			if err := c.subscribe(env.Payload.Session.ID); err != nil {
				return err
			}
			c.health.ok("twitch chat subscription revoked")
			c.log.Info("eventsub connected", "session", env.Payload.Session.ID, "channel", c.cfg.Channel)
		case "session_keepalive":
		case "session_reconnect":
			if env.Payload.Session == nil || env.Payload.Session.ReconnectURL == "" || next != nil {
				continue
			}
			n, err := c.dial(ctx, env.Payload.Session.ReconnectURL, frames)
			if err != nil {
				// Keep the old connection: Twitch holds it open for 30 s.
				c.log.Warn("eventsub reconnect failed", "err", err)
				continue
			}
			conns[n] = true
			next = n
		case "notification":
			c.notification(env)
		case "revocation":
			reason := ""
			if env.Payload.Subscription != nil {
				reason = env.Payload.Subscription.Status
			}
			if c.onRevocation(reason) {
				return fmt.Errorf("%w: %s", errRevoked, reason)
			}
		default:
			c.log.Debug("eventsub: unknown message type", "type", env.Metadata.MessageType)
		}
	}
}

// subscribe creates the channel.chat.message subscription for this session.
func (c *Client) subscribe(session string) error {
	var r *helix.EventSubSubscriptionsResponse
	err := c.call(func(api *helix.Client) (err error) {
		r, err = api.CreateEventSubSubscription(&helix.EventSubSubscription{
			Type: messageTypeChat, Version: "1",
			Condition: helix.EventSubCondition{BroadcasterUserID: c.chanID, UserID: c.botID},
			Transport: helix.EventSubTransport{Method: "websocket", SessionID: session},
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("twitch: create %s subscription: %w", messageTypeChat, err)
	}
	if r.StatusCode != http.StatusAccepted {
		return fmt.Errorf("twitch: create %s subscription: status %d: %s", messageTypeChat, r.StatusCode, r.ErrorMessage)
	}
	return nil
}

// notification hands a chat message to the router once per message id.
func (c *Client) notification(env envelope) {
	ctx := c.ctx
	if env.Payload.Subscription == nil || env.Payload.Subscription.Type != messageTypeChat {
		return
	}
	c.notifications.Add(1)
	var ev chatEvent
	if err := json.Unmarshal(env.Payload.Event, &ev); err != nil {
		c.log.Warn("eventsub: malformed chat event", "err", err)
		return
	}
	// At-least-once delivery: act once per notification and per chat message.
	if !c.firstTime("n:"+env.Metadata.MessageID) || (ev.MessageID != "" && !c.firstTime("c:"+ev.MessageID)) {
		c.duplicates.Add(1)
		return
	}
	if ev.ChatterUserID == c.botID {
		return // our own replies
	}
	if ev.SourceBroadcasterID != nil && *ev.SourceBroadcasterID != "" && *ev.SourceBroadcasterID != c.chanID {
		return // shared chat: a message typed in another channel
	}
	setIDs := make([]string, 0, len(ev.Badges))
	for _, b := range ev.Badges {
		setIDs = append(setIDs, b.SetID)
	}
	at, _ := time.Parse(time.RFC3339Nano, env.Metadata.MessageTimestamp)
	m := chat.Message{Platform: "twitch", Channel: c.cfg.Channel, UserID: ev.ChatterUserID, Login: ev.ChatterUserLogin,
		DisplayName: ev.ChatterUserName, Role: chat.RoleFromBadges(setIDs...), Text: ev.Message.Text, ID: ev.MessageID, At: at,
		Whisper: c.whisperState()}
	m.ReserveWhisper = func() chat.WhisperState { return c.reserveWhisper(m.UserID) }
	sem := c.sem
	claim := c.cfg.Router.IsClaim(m.Text)
	if claim {
		sem = c.claimSem
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	c.wg.Add(1)
	go func() {
		defer func() { <-sem; c.wg.Done() }()
		if claim {
			m.AccountCreated = c.users.created(ctx, m.UserID)
		}
		c.outbox.Add(c.cfg.Router.Handle(ctx, m)...)
	}()
}

// firstTime records id and reports whether it was new.
func (c *Client) firstTime(id string) bool {
	ok, _ := c.seen.ContainsOrAdd(id, struct{}{})
	return !ok
}
