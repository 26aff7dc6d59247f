package twitch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
	"github.com/microdrop/microdrop/ingest/highlight"
)

var _ highlight.ClipMaker = (*Client)(nil)

// TestCreateClipThenListed: Create Clip answers with an id at once; Get
// Clips does not know the clip until Twitch has made it.
func TestCreateClipThenListed(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{Clips: twitchtest.ClipOptions{HiddenPolls: 2}})
	ctx := context.Background()
	if !f.client.CanClip() {
		t.Fatal("CanClip false with clips:edit")
	}
	id, err := f.client.CreateClip(ctx, "streamer")
	if err != nil {
		t.Fatal(err)
	}
	st := f.srv.State()
	if len(st.Clips) != 1 || st.Clips[0].ID != id || st.Clips[0].BroadcasterID != "2002" {
		t.Fatalf("created %q; server saw %+v", id, st.Clips)
	}
	for i := 0; i < 2; i++ {
		if url, found, err := f.client.ClipURL(ctx, id); err != nil || found || url != "" {
			t.Fatalf("lookup %d while Twitch is making the clip: %q %v %v", i+1, url, found, err)
		}
	}
	url, found, err := f.client.ClipURL(ctx, id)
	if err != nil || !found || url != "https://clips.twitch.tv/"+id {
		t.Fatalf("third lookup: %q %v %v", url, found, err)
	}
	if c := f.srv.State().Clips[0]; c.Lookups != 3 || !c.Listed {
		t.Fatalf("server side %+v", c)
	}
	if _, found, err := f.client.ClipURL(ctx, "NoSuchClip-0000"); err != nil || found {
		t.Fatalf("unknown clip: found %v err %v", found, err)
	}
}

func TestCreateClipRefusals(t *testing.T) {
	f, err := setup(t, twitchtest.Options{}, func(c *Config) { c.ClipShare = time.Nanosecond })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.client.CreateClip(ctx, "local"); !errors.Is(err, ErrOtherChannel) {
		t.Fatalf("another channel: %v", err)
	}
	if _, err := f.client.CreateClip(ctx, "#Streamer"); err != nil {
		t.Fatalf("the joined channel spelt as IRC does: %v", err)
	}
	f.srv.SetClips(twitchtest.ClipOptions{Offline: true})
	if _, err := f.client.CreateClip(ctx, "streamer"); !errors.Is(err, ErrNotLive) {
		t.Fatalf("offline: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.client.CreateClip(cancelled, "streamer"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if n := len(f.srv.State().Clips); n != 1 {
		t.Fatalf("%d clips made, want the one for the joined channel", n)
	}
}

// TestNoClipScope: a token without clips:edit still starts chat; start-up
// says clips are off, and CreateClip fails with ErrNoClipScope without
// asking Twitch (with refresh credentials, helix would answer the 401 by
// refreshing and asking again without end).
func TestNoClipScope(t *testing.T) {
	var logs lockedBuffer
	var clipCalls atomic.Int64
	f, err := setup(t, twitchtest.Options{Scopes: []string{ScopeReadChat, ScopeWriteChat}, RefreshToken: "refresh-me"}, func(c *Config) {
		c.ClientSecret, c.RefreshToken = "secret", "refresh-me"
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.HTTP = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/helix/clips") {
				clipCalls.Add(1)
			}
			return http.DefaultTransport.RoundTrip(r)
		})
	})
	if err != nil {
		t.Fatalf("start without clips:edit: %v", err)
	}
	if f.client.CanClip() {
		t.Fatal("CanClip true without clips:edit")
	}
	if !strings.Contains(logs.String(), "platform clips off") {
		t.Fatalf("start-up did not say clips are off:\n%s", logs.String())
	}
	if _, err := f.client.CreateClip(context.Background(), "streamer"); !errors.Is(err, ErrNoClipScope) {
		t.Fatalf("err %v, want ErrNoClipScope", err)
	}
	if n := clipCalls.Load(); n != 0 {
		t.Fatalf("%d clip requests sent without the scope", n)
	}
	if !strings.Contains(strings.Join(AllScopes(), " "), ScopeClips) {
		t.Fatalf("AllScopes %v leaves out %s", AllScopes(), ScopeClips)
	}
}

// pollClip is capture's use of a ClipMaker (ingest's platformClip), with
// test-sized timings: create, then poll until listed or timeout.
func pollClip(ctx context.Context, cm highlight.ClipMaker, channel string, every, timeout time.Duration) (url string, found bool, err error) {
	id, err := cm.CreateClip(ctx, channel)
	if err != nil {
		return "", false, err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(every)
	defer poll.Stop()
	for {
		select {
		case <-deadline.C:
			return "", false, nil
		case <-poll.C:
			url, found, err := cm.ClipURL(ctx, id)
			if err == nil && found {
				return url, true, nil
			}
		}
	}
}

func TestClipPollLoop(t *testing.T) {
	f, err := setup(t, twitchtest.Options{Clips: twitchtest.ClipOptions{HiddenPolls: 3, HiddenFor: 50 * time.Millisecond}},
		func(c *Config) { c.ClipShare = time.Nanosecond }) // two moments, two clips
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	url, found, err := pollClip(ctx, f.client, "streamer", 10*time.Millisecond, wait)
	if err != nil || !found || !strings.HasPrefix(url, "https://clips.twitch.tv/") {
		t.Fatalf("made in the background: %q %v %v", url, found, err)
	}
	if c := f.srv.State().Clips[0]; c.Lookups < 4 || !c.Listed {
		t.Fatalf("listed before it was made: %+v", c)
	}

	// Twitch lost the clip: the loop gives up at its timeout.
	f.srv.SetClips(twitchtest.ClipOptions{NeverListed: true})
	url, found, err = pollClip(ctx, f.client, "streamer", 10*time.Millisecond, 200*time.Millisecond)
	if err != nil || found || url != "" {
		t.Fatalf("failed creation: %q %v %v", url, found, err)
	}
	if c := f.srv.State().Clips[1]; c.Lookups == 0 || c.Listed {
		t.Fatalf("failed clip %+v", c)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestClipCommandMakesTwitchClip: !clip makes a Twitch clip while the
// channel is live, with no stream published into microdrop, and hands it
// on once Twitch lists it; capture asking for the same moment gets the
// same clip, not a second one.
func TestClipCommandMakesTwitchClip(t *testing.T) {
	got := make(chan PlatformClip, 4)
	f, err := setup(t, twitchtest.Options{Clips: twitchtest.ClipOptions{HiddenPolls: 1}}, func(c *Config) {
		c.ClipPoll = 10 * time.Millisecond
		c.OnClip = func(_ context.Context, pc PlatformClip) { got <- pc }
	})
	if err != nil {
		t.Fatal(err)
	}
	f.chat(t, twitchtest.ChatMessage{UserID: "3003", Login: "amod", Text: "!clip big moment", Badges: []string{"moderator"}})
	var pc PlatformClip
	select {
	case pc = <-got:
	case <-time.After(wait):
		t.Fatalf("no clip handed on; server saw %+v", f.srv.State().Clips)
	}
	st := f.srv.State()
	if len(st.Clips) != 1 || pc.ID != st.Clips[0].ID || pc.URL != "https://clips.twitch.tv/"+pc.ID ||
		pc.Label != "big moment" || pc.By != "amod" || pc.Channel != "streamer" || pc.Shared {
		t.Fatalf("clip %+v; server %+v", pc, st.Clips)
	}
	id, err := f.client.CreateClip(context.Background(), "streamer")
	if err != nil || id != pc.ID {
		t.Fatalf("capture's clip of the same moment: %q %v, want %q", id, err, pc.ID)
	}
	if n := len(f.srv.State().Clips); n != 1 {
		t.Fatalf("%d Twitch clips for one moment", n)
	}
}
