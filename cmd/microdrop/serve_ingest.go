package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/description"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest"
	"github.com/microdrop/microdrop/templates"
)

// startIngest starts the media path: RTSP server, pull clients, WHIP/WHEP,
// cue injection and on-air confirmation.
func (m *Main) startIngest(ctx context.Context) error {
	paths := streamPaths(m.Config)
	cfg := ingest.Config{
		RTSPAddress: m.Config.Ingest.RTSP, UDPRTPAddress: m.Config.Ingest.UDPRTP, UDPRTCPAddress: m.Config.Ingest.UDPRTCP,
		WHIPToken: m.Config.Ingest.WHIPToken, Paths: paths, Pull: m.Config.Ingest.Pull, PlaybackURL: m.Config.Ingest.Playback,
		CueProfile: m.Config.Ingest.CueProfile, CueLevelDB: m.Config.Ingest.CueLevelDB, MaxReaderQueue: m.Config.Ingest.MaxReaderQ,
		WebRTCLoopbackOnly: m.Config.Ingest.ICEHostOnly,
		RTSPPublishUser:    m.Config.Ingest.RTSPUser, RTSPPublishPass: m.Config.Ingest.RTSPPassword,
		RTSPReadUser: m.Config.Ingest.RTSPReadUser, RTSPReadPass: m.Config.Ingest.RTSPReadPassword,
	}
	if cfg.WHIPToken == "" {
		// Never an open publish port: anyone could take the streamer's path
		// first. The generated token is WHIP's bearer token and, unless
		// RTSP has its own password, the RTSP password of user "publish".
		path := filepath.Join(m.Config.Data, "publish-token")
		tok, created, err := readOrCreateSecret(path)
		if err != nil {
			return err
		}
		cfg.WHIPToken, m.Config.Ingest.WHIPToken = tok, tok
		if created {
			fmt.Fprintf(m.Stderr, "\nmicrodrop: generated the publish token (stored in %s; shown once):\n\n    WHIP bearer token: %s\n    RTSP: rtsp://publish:%s@<host>:8554/<path>\n\n", path, tok, tok)
		}
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		m.Logger.Warn("ffmpeg not found: confirming cues from playback URLs is off (and `microdrop cue detect` reads only WAV); install it with apt-get install -y ffmpeg",
			"component", "ingest", "playback_urls", len(cfg.PlaybackURL))
	}
	srv, err := ingest.New(ingest.Deps{Logger: m.Logger, Bus: m.Bus, Now: m.Now, Config: cfg})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	m.Ingest = srv
	m.onClose("ingest", srv.Close)
	h := srv.Handler()
	m.Mux.Handle("/whip/", h)
	m.Mux.Handle("/whep/", h)
	if cfg.RTSPAddress == "" {
		m.Logger.Info("rtsp is off (--rtsp off)", "component", "ingest")
	}
	return nil
}

// DefaultStreamPath is the path the README's publish examples use.
const DefaultStreamPath = "live"

// streamPaths binds stream paths to channels: channels.<name>.streams,
// and the documented default path (/live) to the default channel (the
// Twitch channel when Twitch is on, else the local chat channel) unless
// something binds it or a channel is named like it. Without that default,
// a newcomer publishing to /live as the README says fed a channel "live"
// that no drop is opened on: no cue, no SEI, no highlights.
func streamPaths(c Config) map[string]string {
	paths := map[string]string{}
	for ch, cc := range c.Channels {
		for _, p := range cc.Streams {
			paths[p] = ch
		}
	}
	_, bound := paths[DefaultStreamPath]
	_, named := c.Channels[DefaultStreamPath]
	if !bound && !named {
		ch := c.Chat.LocalChannel
		if c.Twitch.Enabled() && c.Twitch.Channel != "" {
			ch = c.Twitch.Channel
		}
		if ch = claims.NormalizeChannel(ch); ch != "" {
			paths[DefaultStreamPath] = ch
		}
	}
	return paths
}

// publishURLs are where to publish the default stream, for the
// dashboard's hint: the RTSP URL on the configured port (empty when RTSP
// is off) and the WHIP URL.
func (m *Main) publishURLs() (rtsp, whip string) {
	base := m.publicURL()
	whip = base + "/whip/" + DefaultStreamPath
	if m.Config.Ingest.RTSP == "" {
		return "", whip
	}
	host := "localhost"
	if u, err := url.Parse(base); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	h, port, err := net.SplitHostPort(m.Config.Ingest.RTSP)
	if err != nil {
		return "", whip
	}
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		host = h // listening on one address only: that is the one to use
	}
	return "rtsp://" + net.JoinHostPort(host, port) + "/" + DefaultStreamPath, whip
}

// streamStatus describes the published streams for the dashboard, saying
// plainly where drop cues cannot be mixed in.
func (m *Main) streamStatus() []templates.DashboardStream {
	if m.Ingest == nil {
		return nil
	}
	var out []templates.DashboardStream
	for _, st := range m.Ingest.Streams() {
		ds := templates.DashboardStream{Path: st.Path(), Channel: st.Channel(), Source: st.Source(),
			Readers: st.ReaderCount(), Dropped: st.Dropped()}
		var codecs []string
		audio := ""
		if desc := st.Description(); desc != nil {
			for _, md := range desc.Medias {
				for _, f := range md.Formats {
					codecs = append(codecs, f.Codec())
					if md.Type == description.MediaTypeAudio && audio == "" {
						audio = f.Codec()
					}
				}
			}
		}
		ds.Codecs = strings.Join(codecs, ", ")
		ds.Cue, ds.CueOK = cueStatus(audio)
		out = append(out, ds)
	}
	return out
}

// cueStatus says what the relay does with a drop cue for an audio codec.
func cueStatus(codec string) (string, bool) {
	switch codec {
	case "Opus":
		return "mixed into the Opus audio", true
	case "LPCM":
		return "mixed into the LPCM audio", true
	case "G711":
		return "mixed into the G.711 audio (the audible cue's upper tones lie above G.711's band)", true
	case "":
		return "no audio: no cue", false
	case "MPEG-4 Audio":
		return "not mixed: AAC passes through unchanged (publish Opus to carry the cue)", false
	}
	return "not mixed: " + codec + " passes through unchanged", false
}
