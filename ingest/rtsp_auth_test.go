package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/webrtc/v4"
)

func tryPublish(url string) error {
	m := &description.Media{Type: description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: fakeSPS, PPS: fakePPS}}}
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Transport: &tcp}
	if err := c.StartRecording(url, &description.Session{Medias: []*description.Media{m}}); err != nil {
		return err
	}
	c.Close()
	return nil
}

func tryDescribe(url string) error {
	u, err := base.ParseURL(url)
	if err != nil {
		return err
	}
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp}
	if err := c.Start2(); err != nil {
		return err
	}
	defer c.Close()
	_, _, err = c.Describe(u)
	return err
}

func withCreds(ts *testServer, user, pass, path string) string {
	return fmt.Sprintf("rtsp://%s:%s@%s/%s", user, pass, ts.RTSPAddr().String(), path)
}

// TestRTSPPublishNeedsCredentials: ANNOUNCE without or with wrong
// credentials is refused and holds no path; the right ones publish; reading
// needs the read (or publish) credentials when they are set.
func TestRTSPPublishNeedsCredentials(t *testing.T) {
	ts := mustStartServer(t, Config{RTSPPublishUser: "streamer", RTSPPublishPass: "pub-secret-123", RTSPReadPass: "read-secret-123"})
	for name, url := range map[string]string{
		"none":       ts.rtspURL("live"),
		"wrong pass": withCreds(ts, "streamer", "guess", "live"),
		"wrong user": withCreds(ts, "publish", "pub-secret-123", "live"),
		"read creds": withCreds(ts, "read", "read-secret-123", "live"),
	} {
		err := tryPublish(url)
		if err == nil {
			t.Fatalf("publish with %s credentials accepted", name)
		}
		if _, serr := ts.Stream("live"); !errors.Is(serr, ErrNoStream) {
			t.Fatalf("a refused publish (%s) holds the path: %v", name, serr)
		}
	}
	if err := tryPublish(ts.rtspURL("live")); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("refusal without credentials should be a 401: %v", err)
	}
	pub, _ := startSyntheticPublisher(t, withCreds(ts, "streamer", "pub-secret-123", "live"))
	defer pub.Close()
	waitFor(t, 5*time.Second, "the publish", func() bool { _, err := ts.Stream("live"); return err == nil })

	if err := tryDescribe(ts.rtspURL("live")); err == nil {
		t.Fatal("read without credentials accepted")
	}
	if err := tryDescribe(withCreds(ts, "read", "read-secret-123", "live")); err != nil {
		t.Fatalf("read with the read credentials: %v", err)
	}
	if err := tryDescribe(withCreds(ts, "streamer", "pub-secret-123", "live")); err != nil {
		t.Fatalf("read with the publish credentials: %v", err)
	}
}

// TestRTSPPublishWithWHIPToken: with only a WHIP token, it is the RTSP
// password; a stranger without it cannot take the path first.
func TestRTSPPublishWithWHIPToken(t *testing.T) {
	ts := mustStartServer(t, Config{WHIPToken: "whip-token-0123456789"})
	if err := tryPublish(ts.rtspURL("live")); err == nil {
		t.Fatal("a stranger published without the token")
	}
	if err := tryPublish(withCreds(ts, "anyone", "nope", "live")); err == nil {
		t.Fatal("a stranger published with a wrong token")
	}
	pub, _ := startSyntheticPublisher(t, withCreds(ts, "publish", "whip-token-0123456789", "live"))
	defer pub.Close()
	waitFor(t, 5*time.Second, "the streamer's publish", func() bool { _, err := ts.Stream("live"); return err == nil })
	if err := tryDescribe(ts.rtspURL("live")); err != nil {
		t.Fatalf("reads are open without read credentials: %v", err)
	}
}

// TestUnansweredWHIPOfferFreesPath: an offer whose peer never connects
// holds its path only for WHIPConnectTimeout.
func TestUnansweredWHIPOfferFreesPath(t *testing.T) {
	ts := mustStartServer(t, Config{WHIPToken: "whip-token-0123456789", WHIPConnectTimeout: 500 * time.Millisecond})
	hs := httptest.NewServer(ts.Handler())
	defer hs.Close()
	pc, err := newClientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-webrtc.GatheringCompletePromise(pc)
	resp := post(t, hs.URL+"/whip/live", "whip-token-0123456789", pc.LocalDescription().SDP)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("offer: %d", resp.StatusCode)
	}
	// The answer is never applied: the peer never connects.
	if _, err := ts.Stream("live"); err != nil {
		t.Fatalf("the offer should hold the path at first: %v", err)
	}
	waitFor(t, 5*time.Second, "the unanswered offer to free the path", func() bool {
		_, err := ts.Stream("live")
		return errors.Is(err, ErrNoStream)
	})
	// The streamer's own publish now gets the path.
	pub, _ := startSyntheticPublisher(t, withCreds(ts, "publish", "whip-token-0123456789", "live"))
	defer pub.Close()
	waitFor(t, 5*time.Second, "the streamer's publish", func() bool { _, err := ts.Stream("live"); return err == nil })
}
