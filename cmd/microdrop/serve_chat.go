package main

import (
	"context"
	"strings"

	"github.com/microdrop/microdrop"

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
	// The viewer a passed-on unit now waits for is told in chat.
	notices := []*chat.Outbox{room.Outbox()}
	noticeChannels := []string{""}
	defer func() { m.tellHolders(runCtx, router, notices, noticeChannels) }()

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
	notices, noticeChannels = append(notices, tc.Outbox()), append(noticeChannels, strings.ToLower(t.Channel))
	m.onClose("chat.twitch", tc.Close)
	m.twitch.Store(tc)
	if tc.CanClip() { // else the client has logged that platform clips are off
		m.clips = tc // highlights start after chat
	}
	return nil
}

// tellHolders sends the chat notice of each passed-on hold to the chats
// that serve its channel ("" serves every channel: the local room).
func (m *Main) tellHolders(ctx context.Context, router *chat.Router, outs []*chat.Outbox, channels []string) {
	sub := m.Bus.Subscribe(4096)
	go func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.C():
				if !ok {
					return
				}
				if e.Kind != microdrop.HoldPassed {
					continue
				}
				replies := router.HoldNotice(ctx, e)
				for i, o := range outs {
					if channels[i] == "" || channels[i] == e.Channel {
						o.Add(replies...)
					}
				}
			}
		}
	}()
}
