package ingest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os/exec"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/thesyncim/gopus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest/cue"
)

// runBus turns DropOpened events into cue arms on every stream bound to
// the drop's channel.
func (s *Server) runBus(ctx context.Context, sub *microdrop.Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			switch e.Kind {
			case microdrop.DropOpened:
				s.dropOpened(e)
			case microdrop.CueStep:
				s.cueStep(e)
			}
		}
	}
}

func (s *Server) dropOpened(e microdrop.Event) {
	if e.Drop == nil {
		s.log.Warn("drop opened without a drop view; nothing to cue", "seq", e.Seq)
		return
	}
	channel := e.Drop.Channel
	if channel == "" {
		channel = e.Channel
	}
	dropID := e.Drop.ID
	if dropID == "" {
		dropID = e.DropID
	}
	at := e.At
	if at.IsZero() {
		at = s.now()
	}
	arm, err := s.cues.arm(dropID, e.Drop.CueCode, at)
	if err != nil {
		s.log.Warn("audio cue unavailable; marking video only", "drop", dropID, "err", err)
	}
	n := 0
	for _, st := range s.Streams() {
		if st.channel != channel {
			continue
		}
		n++
		st.arm.Store(arm)
		s.confirms.watch(st, arm)
	}
	s.confirms.remember(channel, arm)
	s.log.Info("drop opened", "drop", dropID, "channel", channel, "cue", e.Drop.CueCode, "streams", n)
}

// confirmer listens for cues in the relayed output (and, when configured,
// in the viewers' playback) and publishes CueAired.
type confirmer struct {
	s       *Server
	profile cue.Profile

	mu     sync.Mutex
	recent map[string][]*cueArm // channel -> arms opened lately
}

const (
	confirmWindow = 30 * time.Second
	recentArms    = 8
)

func newConfirmer(s *Server, p cue.Profile) *confirmer {
	return &confirmer{s: s, profile: p, recent: make(map[string][]*cueArm)}
}

func (c *confirmer) remember(channel string, arm *cueArm) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := append(c.recent[channel], arm)
	if len(l) > recentArms {
		l = l[len(l)-recentArms:]
	}
	c.recent[channel] = l
}

func (c *confirmer) lookup(channel string, code uint32, heard time.Time) *cueArm {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.recent[channel]
	for i := len(l) - 1; i >= 0; i-- {
		a := l[i]
		if a.code == code && !heard.Before(a.openedAt.Add(-time.Second)) && heard.Sub(a.openedAt) < 5*time.Minute {
			return a
		}
	}
	return nil
}

// watch decodes the stream's relayed Opus audio for a while after the
// open and reports the first detection of the drop's code.
func (c *confirmer) watch(st *Stream, arm *cueArm) {
	if arm.samples == nil {
		return
	}
	media := -1
	for i, m := range st.desc.Medias {
		if _, ok := m.Formats[0].(*format.Opus); ok {
			media = i
			break
		}
	}
	if media < 0 {
		st.log.Info("cue confirmation needs Opus audio on the relay; skipped", "drop", arm.dropID)
		return
	}
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(cueRate, opusChannels))
	if err != nil {
		st.log.Warn("cue confirmation: opus decoder", "err", err)
		return
	}
	det := cue.NewDetector(cueRate, c.profile)
	found := make(chan cue.Detection, 1)
	pcm := make([]float32, 5760*opusChannels)
	var mono []float32
	var first time.Time
	fed := 0
	limit := len(arm.samples) + int(confirmWindow.Seconds())*cueRate
	var once sync.Once
	r, err := st.AddReader("cue-confirm", 0, func(p *Packet) {
		if p.Media != media || fed > limit {
			return
		}
		n, err := dec.Decode(p.RTP.Payload, pcm)
		if err != nil || n == 0 {
			return
		}
		if first.IsZero() {
			first = p.Received
		}
		mono = downmix(mono[:0], pcm[:n*opusChannels], opusChannels)
		fed += n
		for _, d := range det.Write(mono) {
			if d.Code == arm.code {
				once.Do(func() { found <- d })
			}
		}
	})
	if err != nil {
		return
	}
	c.s.wg.Add(1)
	go func() {
		defer c.s.wg.Done()
		defer r.Close()
		t := time.NewTimer(confirmWindow + time.Duration(len(arm.samples))*time.Second/cueRate)
		defer t.Stop()
		select {
		case d := <-found:
			heard := first.Add(d.Start)
			c.publish(st.channel, st.path, arm, d, heard)
		case <-t.C:
			st.log.Warn("cue not heard in the relayed audio", "drop", arm.dropID, "cue", arm.code)
		case <-st.done:
		}
	}()
}

func (c *confirmer) publish(channel, stream string, arm *cueArm, d cue.Detection, heard time.Time) {
	delay := heard.Sub(arm.openedAt)
	e := microdrop.Event{
		Kind:    microdrop.CueAired,
		Channel: channel,
		DropID:  arm.dropID,
		At:      c.s.now(),
		Cue: &microdrop.CueView{
			Code:      d.Code,
			Stream:    stream,
			DelayMS:   delay.Milliseconds(),
			SNRDB:     d.SNRDB,
			HeardAtMS: heard.UnixMilli(),
		},
	}
	if _, err := c.s.bus.Publish(context.Background(), e); err != nil {
		c.s.log.Warn("publish cue aired", "err", err)
		return
	}
	c.s.log.Info("cue aired", "drop", arm.dropID, "stream", stream, "cue", d.Code, "delay_ms", delay.Milliseconds(), "snr_db", math.Round(d.SNRDB*10)/10)
}

func downmix(dst, pcm []float32, channels int) []float32 {
	for i := 0; i+channels <= len(pcm); i += channels {
		var v float32
		for c := range channels {
			v += pcm[i+c]
		}
		dst = append(dst, v/float32(channels))
	}
	return dst
}

// startPlayback reads each configured playback URL through ffmpeg and
// listens for cues there, which measures the real cue-to-viewer delay.
func (c *confirmer) startPlayback(ctx context.Context, wg *sync.WaitGroup) {
	if len(c.s.cfg.PlaybackURL) == 0 {
		return
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		c.s.log.Warn("ffmpeg not found in PATH: playback cue confirmation skipped (install ffmpeg to measure cue-to-viewer delay)", "urls", len(c.s.cfg.PlaybackURL))
		return
	}
	for path, url := range c.s.cfg.PlaybackURL {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runPlayback(ctx, ffmpeg, path, url)
		}()
	}
}

func (c *confirmer) runPlayback(ctx context.Context, ffmpeg, path, url string) {
	log := c.s.log.With("stream", path, "source", "playback")
	channel := c.s.channelFor(path)
	backoff := time.Second
	for ctx.Err() == nil {
		err := c.playbackOnce(ctx, ffmpeg, path, channel, url)
		if ctx.Err() != nil {
			return
		}
		log.Warn("playback reader stopped; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (c *confirmer) playbackOnce(ctx context.Context, ffmpeg, path, channel, url string) error {
	cmd := exec.CommandContext(ctx, ffmpeg, "-nostdin", "-loglevel", "error", "-i", url,
		"-vn", "-ac", "1", "-ar", "48000", "-f", "f32le", "pipe:1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Wait() }()
	det := cue.NewDetector(cueRate, c.profile)
	br := bufio.NewReaderSize(out, 64<<10)
	buf := make([]byte, 4800*4)
	samples := make([]float32, 4800)
	var fed int64
	var started time.Time
	seen := make(map[uint64]bool)
	for {
		n, err := io.ReadFull(br, buf)
		if n >= 4 {
			now := c.s.now()
			if started.IsZero() {
				started = now
			}
			k := n / 4
			for i := range k {
				samples[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[i*4:]))
			}
			fed += int64(k)
			for _, d := range det.Write(samples[:k]) {
				// The detection's start lies this far behind the newest sample.
				behind := time.Duration(fed)*time.Second/cueRate - d.Start
				heard := now.Add(-behind)
				arm := c.lookup(channel, d.Code, heard)
				if arm == nil || seen[arm.id] {
					continue
				}
				seen[arm.id] = true
				c.publish(channel, "playback:"+path, arm, d, heard)
			}
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return err
		}
	}
}
