package main

import (
	"context"
	"os/exec"

	"github.com/microdrop/microdrop/ingest"
)

// startIngest starts the media path: RTSP server, pull clients, WHIP/WHEP,
// cue injection and on-air confirmation.
func (m *Main) startIngest(ctx context.Context) error {
	paths := map[string]string{}
	for ch, cc := range m.Config.Channels {
		for _, p := range cc.Streams {
			paths[p] = ch
		}
	}
	cfg := ingest.Config{
		RTSPAddress: m.Config.Ingest.RTSP, UDPRTPAddress: m.Config.Ingest.UDPRTP, UDPRTCPAddress: m.Config.Ingest.UDPRTCP,
		WHIPToken: m.Config.Ingest.WHIPToken, Paths: paths, Pull: m.Config.Ingest.Pull, PlaybackURL: m.Config.Ingest.Playback,
		CueProfile: m.Config.Ingest.CueProfile, CueLevelDB: m.Config.Ingest.CueLevelDB, MaxReaderQueue: m.Config.Ingest.MaxReaderQ,
		WebRTCLoopbackOnly: m.Config.Ingest.ICEHostOnly,
	}
	if len(cfg.PlaybackURL) > 0 {
		if _, err := exec.LookPath("ffmpeg"); err != nil {
			m.Logger.Warn("on-air confirmation from playback URLs is off: ffmpeg not found (apt-get install -y ffmpeg)", "component", "ingest")
		}
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
	if cfg.RTSPAddress != "" {
		m.Logger.Info("rtsp listening", "component", "ingest", "addr", srv.RTSPAddr().String())
	} else {
		m.Logger.Info("rtsp is off (--rtsp off)", "component", "ingest")
	}
	return nil
}
