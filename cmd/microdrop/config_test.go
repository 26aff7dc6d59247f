package main

import (
	"strings"
	"testing"
	"time"
)

func TestExampleConfigParsesAndValidates(t *testing.T) {
	c := DefaultConfig()
	if err := c.LoadFile("../../microdrop.example.yml"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example config does not validate: %v", err)
	}
	if c.HTTP != ":8080" || time.Duration(c.Claims.Grace) != 5*time.Second || c.Channels["streamer"].Streams[0] != "live" {
		t.Fatalf("example config read wrong: %+v", c)
	}
	// The default is the window policy, sized for Twitch in low-latency mode.
	b, err := c.Claims.Budget.Options()
	if c.Claims.Policy != "window" || err != nil || b.Reaction != 2*time.Second || len(b.Platforms) != 1 || b.Platforms[0].Mode != "low_latency" {
		t.Fatalf("example claims config: %+v %+v %v", c.Claims, b, err)
	}
}

func TestBudgetPlatformsFromEnv(t *testing.T) {
	env := map[string]string{"MICRODROP_BUDGET_PLATFORMS": "twitch/normal, youtube/normal", "MICRODROP_BUDGET_REACTION": "1500ms"}
	m := NewMain(nil, &strings.Builder{})
	if err := m.ParseFlags(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	b, err := m.Config.Claims.Budget.Options()
	if err != nil || len(b.Platforms) != 2 || b.Platforms[1].Platform != "youtube" || b.Reaction != 1500*time.Millisecond {
		t.Fatalf("budget from env: %+v %v", b, err)
	}
}

func TestConfigPrecedenceAndErrors(t *testing.T) {
	env := map[string]string{"MICRODROP_HTTP": "127.0.0.1:9000", "MICRODROP_GRACE": "7s", "MICRODROP_TOKEN_KEYS": "key-one-0123456789, key-two-0123456789", "TWITCH_CHANNEL": "someone"}
	m := NewMain(nil, &strings.Builder{})
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:9001"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if m.Config.HTTP != "127.0.0.1:9001" || time.Duration(m.Config.Claims.Grace) != 7*time.Second || len(m.Config.Claims.TokenKeys) != 2 || m.Config.Twitch.Channel != "someone" {
		t.Fatalf("precedence wrong: %+v", m.Config)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"MICRODROP_GRACE": "soon"}, nil, "MICRODROP_GRACE"},
		{nil, []string{"--http", "8080"}, "http:"},
		{map[string]string{"MICRODROP_POLICY": "lottery"}, nil, "claims.policy"},
		{map[string]string{"MICRODROP_LEDGER": "mysql://x"}, nil, "ledger"},
		{map[string]string{"MICRODROP_BUDGET_PLATFORMS": "twitch/turbo"}, nil, "claims.budget"},
		{map[string]string{"MICRODROP_BUDGET_PLATFORMS": "youtube"}, nil, "platform/mode"},
		{map[string]string{"TWITCH_CLIENT_ID": "abc"}, nil, "TWITCH_USER_TOKEN"},
		{nil, []string{"--bogus"}, "flag provided but not defined"},
		{map[string]string{"MICRODROP_MAX_OVERLAY_CLIENTS": "0"}, nil, "front.max_overlay_clients"},
		{map[string]string{"MICRODROP_BUFFER_MB_TOTAL": "4"}, nil, "highlights.buffer_mb_total"},
		{map[string]string{"MICRODROP_BUFFER_MB_TOTAL": "64", "MICRODROP_BUFFER_MB": "256"}, nil, "highlights.buffer_mb_total"},
	} {
		m := NewMain(nil, &strings.Builder{})
		err := m.ParseFlags(tc.args, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v args %v: error %v, want it to mention %q", tc.env, tc.args, err, tc.want)
		}
	}
}

// Highlight buffers are kept for the streams of the server's channels:
// configured ones, those streams are bound to, /live's default channel and
// the chat channels; not for a path whose channel is only named like it.
func TestBoundChannels(t *testing.T) {
	c := DefaultConfig()
	c.Channels = map[string]ChannelConfig{"Studio": {Streams: []string{"cam2"}}, "quiz": {}}
	got := boundChannels(c)
	want := []string{"local", "quiz", "studio"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("bound channels %v, want %v", got, want)
	}
}
