package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
)

// TestServePublishNeedsCredentials: `microdrop serve` out of the box never
// has an open publish port: RTSP ANNOUNCE and WHIP without the generated
// publish token are refused, and the streamer's own publish with it works.
func TestServePublishNeedsCredentials(t *testing.T) {
	rtspPort := freePort(t)
	m := NewMain(io.Discard, io.Discard)
	env := map[string]string{"MICRODROP_UDP_RTP": "", "MICRODROP_UDP_RTCP": ""}
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", fmt.Sprintf("127.0.0.1:%d", rtspPort), "--data", t.TempDir()},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok := m.Config.Ingest.WHIPToken
	if len(tok) < 16 {
		t.Fatalf("no publish token generated: %q", tok)
	}
	publish := func(url string) error {
		media := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}
		tcp := gortsplib.TransportTCP
		c := &gortsplib.Client{Transport: &tcp}
		if err := c.StartRecording(url, &description.Session{Medias: []*description.Media{media}}); err != nil {
			return err
		}
		c.Close()
		return nil
	}
	if err := publish(fmt.Sprintf("rtsp://127.0.0.1:%d/live", rtspPort)); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("RTSP publish without credentials: %v", err)
	}
	if err := publish(fmt.Sprintf("rtsp://publish:wrong@127.0.0.1:%d/live", rtspPort)); err == nil {
		t.Fatal("RTSP publish with a wrong password accepted")
	}
	if err := publish(fmt.Sprintf("rtsp://publish:%s@127.0.0.1:%d/live", tok, rtspPort)); err != nil {
		t.Fatalf("the streamer's RTSP publish: %v", err)
	}
	resp, err := http.Post("http://"+m.HTTPAddr+"/whip/live", "application/sdp", strings.NewReader("v=0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WHIP without the token: %d", resp.StatusCode)
	}
}
