package ingest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

// startSyntheticPublisher announces an H.264 stream over RTSP/TCP with gortsplib.
func startSyntheticPublisher(t testing.TB, url string) (*gortsplib.Client, *description.Media) {
	t.Helper()
	m := &description.Media{Type: description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: fakeSPS, PPS: fakePPS}}}
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Transport: &tcp, WriteQueueSize: 8192}
	if err := c.StartRecording(url, &description.Session{Medias: []*description.Media{m}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, m
}

// stalledRTSPReader plays path over TCP with a tiny receive buffer and then
// never reads: the worst reader a server can have.
func stalledRTSPReader(t testing.TB, addr, path string) net.Conn {
	t.Helper()
	nc, _ := playRTSPRaw(t, addr, path, 4096)
	return nc
}

// playRTSPRaw plays path over RTSP/TCP (interleaved channels 0-1) by hand
// and returns the connection and its reader positioned at the first
// interleaved frame; rcvbuf > 0 sets SO_RCVBUF.
func playRTSPRaw(t testing.TB, addr, path string, rcvbuf int) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if rcvbuf <= 0 {
			return nil
		}
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	br := bufio.NewReader(nc)
	url := fmt.Sprintf("rtsp://%s/%s", addr, path)
	session := ""
	do := func(cseq int, method, u, extra string) {
		req := fmt.Sprintf("%s %s RTSP/1.0\r\nCSeq: %d\r\n%s", method, u, cseq, extra)
		if session != "" {
			req += "Session: " + session + "\r\n"
		}
		if _, err := nc.Write([]byte(req + "\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		status, err := br.ReadString('\n')
		if err != nil || !strings.Contains(status, " 200 ") {
			t.Fatalf("%s: %q %v", method, status, err)
		}
		length := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, ":")
			switch strings.ToLower(k) {
			case "content-length":
				fmt.Sscan(strings.TrimSpace(v), &length)
			case "session":
				session, _, _ = strings.Cut(strings.TrimSpace(v), ";")
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
	}
	do(1, "DESCRIBE", url, "Accept: application/sdp\r\n")
	do(2, "SETUP", url+"/trackID=0", "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
	do(3, "PLAY", url, "")
	_ = nc.SetReadDeadline(time.Time{})
	return nc, br
}

// TestSlowReaderDoesNotStall: a reader whose callback never returns and an
// RTSP client that never reads lose packets (counted), while the publisher
// keeps its pace and the healthy readers get everything.
func TestSlowReaderDoesNotStall(t *testing.T) {
	ts := mustStartServer(t, Config{MaxReaderQueue: 64})
	pub, m := startSyntheticPublisher(t, ts.rtspURL("slow"))
	waitFor(t, 5*time.Second, "the stream", func() bool { _, err := ts.Stream("slow"); return err == nil })
	st, _ := ts.Stream("slow")

	release := make(chan struct{})
	stuck, err := st.AddReader("stuck", 64, func(*Packet) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(release); stuck.Close() }()
	var good atomic.Int64
	healthy, err := st.AddReader("healthy", 1<<15, func(*Packet) { good.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	var rtspGood atomic.Int64
	rc := readRTSP(t, ts.rtspURL("slow"), func(*description.Media) { rtspGood.Add(1) })
	defer rc.Close()
	stalledRTSPReader(t, ts.RTSPAddr().String(), "slow")
	waitFor(t, 5*time.Second, "both RTSP readers to play", func() bool { return ts.rtspH.plays.Load() >= 2 })

	const total = 12000
	payload := make([]byte, 1400)
	payload[0] = 0x41
	for i := range total {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i / 10 * 3600), Marker: i%10 == 9}, Payload: payload}
		if err := pub.WritePacketRTP(m, pkt); err != nil {
			t.Fatalf("publisher blocked or failed at packet %d: %v", i, err)
		}
		if i%8 == 7 {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(t, 20*time.Second, "the healthy reader to get every packet", func() bool { return good.Load() == total })
	waitFor(t, 20*time.Second, "the healthy RTSP reader to keep up", func() bool { return rtspGood.Load() >= total*9/10 })
	if stuck.Dropped() == 0 || healthy.Dropped() != 0 {
		t.Fatalf("stuck reader dropped %d, healthy dropped %d", stuck.Dropped(), healthy.Dropped())
	}
	waitFor(t, 20*time.Second, "drops for the stalled RTSP reader to be counted", func() bool {
		return ts.Stats().DroppedPackets > stuck.Dropped()
	})
	t.Logf("stuck reader dropped %d, stalled RTSP reader %d, healthy RTSP reader got %d/%d",
		stuck.Dropped(), ts.Stats().DroppedPackets-stuck.Dropped(), rtspGood.Load(), total)
}
