package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDashboardSaysAACGetsNoCue publishes AAC audio with the real ffmpeg and
// checks the dashboard says plainly that drop cues are not mixed into it.
func TestDashboardSaysAACGetsNoCue(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is required in CI: apt-get install -y ffmpeg")
		}
		t.Skip("install with: apt-get install -y ffmpeg")
	}
	rtspPort := freePort(t)
	m := NewMain(io.Discard, io.Discard)
	args := []string{"--http", "127.0.0.1:0", "--rtsp", fmt.Sprintf("127.0.0.1:%d", rtspPort), "--data", t.TempDir()}
	env := map[string]string{"MICRODROP_UDP_RTP": "", "MICRODROP_UDP_RTCP": ""}
	if err := m.ParseFlags(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	pub := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
		"-c:a", "aac", "-b:a", "128k", "-f", "rtsp", "-rtsp_transport", "tcp",
		fmt.Sprintf("rtsp://publish:%s@127.0.0.1:%d/aacshow", m.Config.Ingest.WHIPToken, rtspPort))
	pub.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-pub.Process.Pid, syscall.SIGKILL)
		_ = pub.Wait()
	}()

	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+m.HTTPAddr+"/dashboard", nil)
		req.Header.Set("Authorization", "Bearer "+m.Config.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(page), "aacshow") {
			if !strings.Contains(string(page), "AAC passes through unchanged") || !strings.Contains(string(page), "H264") {
				t.Fatalf("the dashboard lists the AAC stream without saying it gets no cue:\n%s", page)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the published stream never appeared on the dashboard")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
