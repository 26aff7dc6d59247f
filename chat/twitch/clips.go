package twitch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nicklaw5/helix/v2"

	"github.com/microdrop/microdrop"
)

// Errors CreateClip reports.
var (
	ErrNoClipScope  = errors.New("twitch: the user access token lacks " + ScopeClips + "; platform clips are off")
	ErrNotLive      = errors.New("twitch: the channel is not live")
	ErrOtherChannel = errors.New("twitch: not the channel this client joined")
)

// CanClip reports whether the token may create clips (known after Start).
// Capture should be given the client as its ClipMaker only when it can.
func (c *Client) CanClip() bool { return c.scopes[ScopeClips] }

// CreateClip starts a Twitch clip of the joined channel's live stream and
// returns its id. Twitch makes the clip asynchronously: it exists once
// ClipURL finds it, and one not found 15 s after creation failed.
func (c *Client) CreateClip(ctx context.Context, channel string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if c.chanID == "" {
		return "", fmt.Errorf("%w: create clip before Start", ErrConfig)
	}
	if !c.scopes[ScopeClips] {
		// Asking anyway earns a 401, which helix (given a refresh token)
		// answers by refreshing and asking again, over and over.
		return "", ErrNoClipScope
	}
	if ch := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(channel), "#")); ch != c.cfg.Channel {
		return "", fmt.Errorf("%w: asked to clip %q, joined %q", ErrOtherChannel, channel, c.cfg.Channel)
	}
	// One moment, one Twitch clip: capture asks for a clip of the same
	// !clip the client already clips by itself (and a drop's open, sold-out
	// and close can fall within seconds); a clip asked for within
	// ClipShare of the last one is that clip.
	c.clipMu.Lock()
	defer c.clipMu.Unlock()
	now := c.cfg.Now()
	if c.lastClip.id != "" && now.Sub(c.lastClip.at) < c.cfg.ClipShare {
		c.lastClip.askers++
		return c.lastClip.id, nil
	}
	var r *helix.CreateClipResponse
	err := c.call(func(api *helix.Client) (err error) {
		r, err = api.CreateClip(&helix.CreateClipParams{BroadcasterID: c.chanID})
		return err
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("twitch: create clip: %w", err)
	case r.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("%w (Twitch says: %s)", ErrNotLive, r.ErrorMessage)
	case r.StatusCode != http.StatusAccepted && r.StatusCode != http.StatusOK:
		// 403: the broadcaster turned clips off or limited them to followers or subscribers.
		return "", fmt.Errorf("twitch: create clip: status %d: %s", r.StatusCode, r.ErrorMessage)
	case len(r.Data.ClipEditURLs) == 0 || r.Data.ClipEditURLs[0].ID == "":
		return "", errors.New("twitch: create clip: the answer has no clip id")
	}
	c.lastClip = madeClip{id: r.Data.ClipEditURLs[0].ID, at: now, askers: 1}
	return c.lastClip.id, nil
}

// madeClip is the last clip Create Clip made.
type madeClip struct {
	id     string
	at     time.Time
	askers int // CreateClip calls it answered
}

// PlatformClip is a Twitch clip made for a !clip in chat.
type PlatformClip struct {
	Channel, DropID, Label, By string
	At                         time.Time // when !clip was typed
	ID, URL                    string
	// Shared: another caller (capture, for a local highlight) asked for
	// the same clip, so a highlight already links it.
	Shared bool
}

// chatClip makes a Twitch clip for a !clip, whether or not a stream is
// published into microdrop (Create Clip clips the live broadcast), waits
// until Twitch lists it, and hands it to OnClip.
func (c *Client) chatClip(ctx context.Context, e microdrop.Event) {
	id, err := c.CreateClip(ctx, e.Channel)
	if err != nil {
		c.log.Info("no Twitch clip for !clip", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ClipTimeout)
	defer cancel()
	poll := time.NewTicker(c.cfg.ClipPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			c.log.Info("Twitch clip not listed in time; assuming it failed", "clip", id)
			return
		case <-poll.C:
		}
		url, found, err := c.ClipURL(ctx, id)
		if err != nil || !found {
			continue
		}
		c.clipMu.Lock()
		shared := c.lastClip.id == id && c.lastClip.askers > 1
		c.clipMu.Unlock()
		pc := PlatformClip{Channel: e.Channel, DropID: e.DropID, At: e.At, ID: id, URL: url, Shared: shared}
		if e.Highlight != nil {
			pc.Label, pc.By = e.Highlight.Label, e.Highlight.By
		}
		c.log.Info("Twitch clip made for !clip", "clip", id, "url", url, "shared", shared)
		if c.cfg.OnClip != nil {
			c.cfg.OnClip(ctx, pc)
		}
		return
	}
}

// ClipURL looks the clip up with Get Clips: found is false while Twitch is
// still making it (Get Clips leaves out ids it does not know).
func (c *Client) ClipURL(ctx context.Context, clipID string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if clipID == "" {
		return "", false, errors.New("twitch: get clips: empty clip id")
	}
	var r *helix.ClipsResponse
	err := c.call(func(api *helix.Client) (err error) {
		r, err = api.GetClips(&helix.ClipsParams{IDs: []string{clipID}})
		return err
	})
	switch {
	case err != nil:
		return "", false, fmt.Errorf("twitch: get clips: %w", err)
	case r.StatusCode != http.StatusOK:
		return "", false, fmt.Errorf("twitch: get clips: status %d: %s", r.StatusCode, r.ErrorMessage)
	}
	for _, cl := range r.Data.Clips {
		if cl.ID == clipID {
			return cl.URL, true, nil
		}
	}
	return "", false, nil
}
