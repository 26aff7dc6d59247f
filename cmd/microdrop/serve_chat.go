package main

import (
	"context"

	"github.com/microdrop/microdrop/chat"
	"github.com/microdrop/microdrop/chat/local"
	"github.com/microdrop/microdrop/chat/twitch"
)

// startChat wires chat into serve: the command router, the local chat room
// (always on: /chat, /ws/chat, POST /api/chat, POST /api/chat/roles) and,
// when credentials are given, Twitch. A Twitch token that fails validation
// stops serve with the reason.
func (m *Main) startChat(ctx context.Context) error {
	base := m.publicURL()
	router, err := chat.NewRouter(chat.Deps{Claims: m.Claims, Bus: m.Bus, Logger: m.Logger, Now: m.Now,
		Prefix: m.Config.Chat.Prefix, ClaimURL: func(id string) string { return base + "/c/" + id }})
	if err != nil {
		return err
	}
	room, err := local.New(local.Config{Router: router, Admin: m.Admin, Channel: m.Config.Chat.LocalChannel,
		Logger: m.Logger, Now: m.Now, Secure: m.Viewers.Secure(), SignInRequired: !m.Viewers.Local()})
	if err != nil {
		return err
	}
	room.Routes(m.Mux)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); room.Run(runCtx) }()
	m.onClose("chat.local", func() error { cancel(); <-done; return nil })

	t := m.Config.Twitch
	if !t.Enabled() {
		m.Logger.Info("twitch chat off (set TWITCH_CLIENT_ID and TWITCH_USER_TOKEN to connect)", "component", "chat")
		return nil
	}
	tc, err := twitch.New(twitch.Config{ClientID: t.ClientID, ClientSecret: t.ClientSecret, UserToken: t.UserToken,
		RefreshToken: t.RefreshToken, Channel: t.Channel, EventSubURL: t.EventSubURL, APIURL: t.APIURL, AuthURL: t.AuthURL,
		Moderator: t.BotModerator, Router: router, Bus: m.Bus, Logger: m.Logger, Now: m.Now, Registerer: m.Registry,
		OnClip: m.recordTwitchClip})
	if err != nil {
		return err
	}
	if err := tc.Start(ctx); err != nil {
		return err
	}
	m.onClose("chat.twitch", tc.Close)
	m.twitch.Store(tc)
	if tc.CanClip() { // else the client has logged that platform clips are off
		m.clips = tc // highlights start after chat
	}
	return nil
}
