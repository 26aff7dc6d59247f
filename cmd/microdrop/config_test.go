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
		{map[string]string{"TWITCH_CLIENT_ID": "abc"}, nil, "TWITCH_USER_TOKEN"},
		{nil, []string{"--bogus"}, "flag provided but not defined"},
	} {
		m := NewMain(nil, &strings.Builder{})
		err := m.ParseFlags(tc.args, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v args %v: error %v, want it to mention %q", tc.env, tc.args, err, tc.want)
		}
	}
}
