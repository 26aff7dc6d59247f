package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
)

// startWithTwitch runs serve in-process against a twitchtest server.
func startWithTwitch(t *testing.T, srv *twitchtest.Server, extra map[string]string) *Main {
	t.Helper()
	o := srv.Options()
	env := map[string]string{"TWITCH_CLIENT_ID": o.ClientID, "TWITCH_USER_TOKEN": o.Token, "TWITCH_CHANNEL": o.Broadcaster.Login,
		"TWITCH_EVENTSUB_URL": srv.EventSubURL(), "TWITCH_API_URL": srv.APIURL(), "TWITCH_AUTH_URL": srv.AuthURL(),
		"MICRODROP_ADMIN_TOKEN": testAdminToken}
	for k, v := range extra {
		env[k] = v
	}
	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := srv.WaitFor(10*time.Second, func(st twitchtest.State) bool { return len(st.Subscriptions) == 1 }); err != nil {
		t.Fatal("no chat subscription")
	}
	return m
}

func get(t *testing.T, url string, admin bool) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if admin {
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestServeShowsTwitchRevocation: a revoked chat subscription shows in
// /healthz (degraded, with the reason), in /metrics and as a dashboard
// banner naming the fix.
func TestServeShowsTwitchRevocation(t *testing.T) {
	srv := twitchtest.New(t, twitchtest.Options{})
	m := startWithTwitch(t, srv, nil)
	base := "http://" + m.HTTPAddr
	if h := get(t, base+"/healthz", false); h != "ok\n" {
		t.Fatalf("healthz before: %q", h)
	}
	if err := srv.Revoke("user_removed"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	h := get(t, base+"/healthz", false)
	for !strings.HasPrefix(h, "degraded") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		h = get(t, base+"/healthz", false)
	}
	if !strings.HasPrefix(h, "degraded") || !strings.Contains(h, "user_removed") {
		t.Fatalf("healthz after the revocation: %q", h)
	}
	if mt := get(t, base+"/metrics", false); !strings.Contains(mt, `microdrop_twitch_revocations_total{reason="user_removed"} 1`) ||
		!strings.Contains(mt, "microdrop_twitch_chat_up 0") {
		t.Fatal("no revocation metric in /metrics")
	}
	d := get(t, base+"/dashboard", true)
	if !strings.Contains(d, "Twitch chat is not working") || !strings.Contains(d, "no longer exists") || !strings.Contains(d, `class="alert`) {
		t.Fatal("no banner with the fix on the dashboard")
	}
}

// TestServeClipWithoutLocalStream: with nothing published into microdrop,
// !clip still makes a Twitch clip of the live channel, and the editor
// lists and links it.
func TestServeClipWithoutLocalStream(t *testing.T) {
	srv := twitchtest.New(t, twitchtest.Options{})
	m := startWithTwitch(t, srv, nil)
	base := "http://" + m.HTTPAddr
	if _, err := srv.Chat(twitchtest.ChatMessage{UserID: "3003", Login: "amod", Text: "!clip what a save", Badges: []string{"moderator"}}); err != nil {
		t.Fatal(err)
	}
	st, err := srv.WaitFor(10*time.Second, func(st twitchtest.State) bool { return len(st.Clips) == 1 && st.Clips[0].Listed })
	if err != nil {
		t.Fatalf("no Twitch clip for !clip: %+v", st.Clips)
	}
	id := st.Clips[0].ID
	deadline := time.Now().Add(10 * time.Second)
	list := get(t, base+"/editor", true)
	for !strings.Contains(list, "twitch_streamer-") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		list = get(t, base+"/editor", true)
	}
	i := strings.Index(list, "/editor/sessions/twitch_streamer-")
	if i < 0 {
		t.Fatalf("the editor lists no session for the Twitch clip:\n%s", list)
	}
	link := list[i:]
	link = link[:strings.IndexAny(link, `"'`)]
	// The session is listed as soon as it starts; its highlight follows
	// once the clip is recorded.
	linked := func(page string) bool {
		return strings.Contains(page, "https://clips.twitch.tv/"+id) && strings.Contains(page, "what a save")
	}
	page := get(t, base+link, true)
	for !linked(page) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		page = get(t, base+link, true)
	}
	if !linked(page) {
		t.Fatalf("the editor does not link the Twitch clip %s:\n%s", id, page)
	}
}
