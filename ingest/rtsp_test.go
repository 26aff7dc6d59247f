package ingest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest/cue"
)

// TestRTSPRelayCueAndMarker publishes with real ffmpeg over RTSP, reads the
// relay back with ffmpeg, opens a drop, and checks the recording: the audio
// carries the drop's cue, the video carries the SEI marker at the same
// moment, and the server's own detector reported CueAired.
func TestRTSPRelayCueAndMarker(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			testRTSPRelay(t, transport)
		})
	}
}

func testRTSPRelay(t *testing.T, transport string) {
	ffmpeg := requireFFmpeg(t)
	dir := t.TempDir()
	cfg := Config{Paths: map[string]string{"live": "chan1"}}
	if transport == "udp" {
		rtp, rtcp := freeUDPPair(t)
		cfg.UDPRTPAddress = "127.0.0.1:" + strconv.Itoa(rtp)
		cfg.UDPRTCPAddress = "127.0.0.1:" + strconv.Itoa(rtcp)
	}
	ts := mustStartServer(t, cfg)
	sub := ts.bus.Subscribe(64)
	defer sub.Close()

	audioIn := []string{"-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000"}
	if wav := programAudio(t, dir); wav != "" {
		audioIn = []string{"-stream_loop", "-1", "-i", wav}
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"}
	args = append(args, audioIn...)
	args = append(args, "-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
		"-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-ac", "2",
		"-t", "30", "-f", "rtsp", "-rtsp_transport", transport, ts.rtspURL("live"))
	_, pubOut := startCmd(t, ffmpeg, args...)
	waitFor(t, 15*time.Second, "ffmpeg to publish", func() bool {
		_, err := ts.Stream("live")
		return err == nil
	})

	out := filepath.Join(dir, "relay.mkv")
	readDone, readOut := startCmd(t, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-rtsp_transport", transport, "-i", ts.rtspURL("live"),
		"-map", "0", "-c", "copy", "-t", "7", "-y", out)
	waitFor(t, 10*time.Second, "ffmpeg to play", func() bool { return ts.rtspH.plays.Load() > 0 })
	time.Sleep(2 * time.Second) // let the recording run before the open

	const code = 0x5EED1234
	openedAt := openDrop(t, ts.bus, "chan1", "drop-"+transport, code)

	aired := waitEvent(t, sub, microdrop.CueAired, 20*time.Second)
	if aired.Cue == nil || aired.Cue.Code != code || aired.Cue.Stream != "live" || aired.DropID != "drop-"+transport {
		t.Fatalf("CueAired = %+v, cue %+v; want code %x on live", aired, aired.Cue, code)
	}
	if aired.Cue.DelayMS < 0 || aired.Cue.HeardAtMS < openedAt.UnixMilli() {
		t.Errorf("CueAired delay %d ms, heard at %d, opened at %d: the cue cannot air before the open",
			aired.Cue.DelayMS, aired.Cue.HeardAtMS, openedAt.UnixMilli())
	}

	select {
	case <-readDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("the relay recording did not finish; ffmpeg said:\n%s", readOut.String())
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("no relay recording (%v); reader said:\n%s\npublisher said:\n%s", err, readOut.String(), pubOut.String())
	}

	pcm := filepath.Join(dir, "relay.f32")
	runCmd(t, 30*time.Second, ffmpeg, "-hide_banner", "-loglevel", "error", "-i", out, "-map", "0:a",
		"-ac", "1", "-ar", "48000", "-f", "f32le", "-y", pcm)
	h264 := filepath.Join(dir, "relay.h264")
	runCmd(t, 30*time.Second, ffmpeg, "-hide_banner", "-loglevel", "error", "-i", out, "-map", "0:v",
		"-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-y", h264)

	dets := cue.DetectAll(readF32(t, pcm), 48000)
	var got *cue.Detection
	for i := range dets {
		if dets[i].Code == code {
			got = &dets[i]
		}
	}
	if got == nil {
		t.Fatalf("cue %x not found in the relayed audio; detections: %+v", code, dets)
	}

	vid, err := os.ReadFile(h264)
	if err != nil {
		t.Fatal(err)
	}
	m, frame, ok := findMarker(annexBNALUs(vid))
	if !ok {
		t.Fatal("no microdrop SEI marker in the relayed video")
	}
	if m.DropID != "drop-"+transport || m.Cue != code || m.UnixMS != openedAt.UnixMilli() {
		t.Fatalf("marker = %+v; want drop %q cue %x at %d", m, "drop-"+transport, code, openedAt.UnixMilli())
	}
	// Both marks were made at the same open: the picture the SEI precedes
	// (25 fps) and the cue's first sample must line up within a second.
	markAt := time.Duration(frame) * time.Second / 25
	if d := markAt - got.Start; d > time.Second || d < -time.Second {
		t.Errorf("video marker at %v but audio cue at %v in the recording", markAt, got.Start)
	}
	t.Logf("%s: cue at %v (SNR %.1f dB), marker at frame %d (%v), CueAired delay %d ms",
		transport, got.Start, got.SNRDB, frame, markAt, aired.Cue.DelayMS)
}
