package main

import (
	"context"
	"fmt"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/overlay"
)

// startOverlay mounts the OBS overlay and its WebSocket hub, the dashboard,
// the claim page and the pickup desk. Every channel gets an overlay key: the
// configured one, or one generated into the data dir so OBS keeps working
// across restarts.
func (m *Main) startOverlay(ctx context.Context) error {
	configured := map[string]string{}
	channels := []string{}
	for ch, c := range m.Config.Channels {
		channels = append(channels, ch)
		if c.OverlayKey != "" {
			configured[ch] = c.OverlayKey
		}
	}
	for _, ch := range []string{m.Config.Chat.LocalChannel, m.Config.Twitch.Channel} {
		if ch = claims.NormalizeChannel(ch); ch != "" {
			channels = append(channels, ch)
		}
	}
	keys, generated, err := overlay.LoadKeys(m.Config.Data, configured, channels)
	if err != nil {
		return err
	}
	rtspURL, whipURL := m.publishURLs()
	srv, err := overlay.New(overlay.Deps{
		Claims: m.Claims, Bus: m.Bus, Admin: m.Admin, Logger: m.Logger, Now: m.Now,
		PublicURL: m.publicURL(), Keys: keys, Ledger: m.Ledger, Gatherer: m.Registry,
		DefaultGrace: time.Duration(m.Config.Claims.Grace), CueProfile: m.Config.Ingest.CueProfile,
		Streams: m.streamStatus, Alerts: m.alerts, PublishRTSP: rtspURL, PublishWHIP: whipURL,
		Viewers: m.Viewers, Cards: m.cards, Payouts: m.Payouts, Webhooks: m.webhooks,
		Hub: overlay.HubOptions{MaxClients: m.Config.Front.MaxOverlayClients},
	})
	if err != nil {
		return err
	}
	srv.Start(ctx, m.Bus)
	m.onClose("overlay", srv.Close)
	h := srv.Handler()
	for _, p := range overlay.Routes() {
		m.Mux.Handle(p, h)
	}
	log := m.Logger.With("component", "overlay")
	for _, ch := range srv.Channels() {
		log.Info("overlay URL (OBS browser source, 1920x1080)", "channel", ch, "url", srv.OverlayURL(ch))
	}
	if len(generated) > 0 {
		log.Info(fmt.Sprintf("generated overlay keys for %v, stored in %s/%s", generated, m.Config.Data, overlay.KeysFile))
	}
	log.Info("dashboard", "url", m.publicURL()+"/dashboard")
	return nil
}
