package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest"
)

// relayReport is the --json output of loadgen relay.
type relayReport struct {
	Streams           int     `json:"streams"`
	Readers           int     `json:"readers"`
	BitrateBPS        int64   `json:"bitrate_bps"`
	Seconds           float64 `json:"seconds"`
	PacketsSent       uint64  `json:"packets_sent"`
	PacketsReceived   uint64  `json:"packets_received"`
	AddedLatencyP50MS float64 `json:"added_latency_p50_ms"`
	AddedLatencyP99MS float64 `json:"added_latency_p99_ms"`
	AddedLatencyMaxMS float64 `json:"added_latency_max_ms"`
	CPUPercent        float64 `json:"cpu_percent"`
	DroppedPackets    uint64  `json:"dropped_packets"`
	ReaderLostPackets uint64  `json:"reader_lost_packets"`
}

// runLoadgenRelay runs `microdrop loadgen relay`: an in-process ingest
// server on loopback, P RTSP publishers of synthetic H.264 over TCP, R RTSP
// readers per stream, and a report of the latency the relay adds, the CPU
// it costs and the packets it drops.
func runLoadgenRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	publishers := fs.Int("publishers", 4, "streams published over RTSP/TCP")
	readers := fs.Int("readers", 1, "RTSP readers per stream")
	bitrateS := fs.String("bitrate", "6M", "video bitrate per stream (k/M suffixes)")
	seconds := fs.Float64("seconds", 10, "how long to publish")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bitrate, err := parseBitrate(*bitrateS)
	if err != nil {
		return err
	}
	if *publishers < 1 || *publishers > 500 || *readers < 0 || *readers > 100 || *seconds <= 0 || *seconds > 3600 {
		return errors.New("loadgen relay: need 1..500 publishers, 0..100 readers and 0 < seconds <= 3600")
	}

	srv, err := ingest.New(ingest.Deps{
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Bus:    microdrop.NewMemoryBus(),
		Config: ingest.Config{RTSPAddress: "127.0.0.1:0"},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	addr := srv.RTSPAddr().String()

	lat := &latencies{}
	var sent, received, lost atomic.Uint64
	var clients []*gortsplib.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	pubs := make([]*gortsplib.Client, *publishers)
	medias := make([]*description.Media, *publishers)
	for i := range pubs {
		m := &description.Media{Type: description.MediaTypeVideo,
			Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1,
				SPS: []byte{0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20},
				PPS: []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}}}}
		tcp := gortsplib.TransportTCP
		c := &gortsplib.Client{Transport: &tcp, WriteQueueSize: 4096}
		if err := c.StartRecording(fmt.Sprintf("rtsp://%s/load%d", addr, i), &description.Session{Medias: []*description.Media{m}}); err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		clients = append(clients, c)
		pubs[i], medias[i] = c, m
	}
	for i := range pubs {
		for range *readers {
			c, err := relayReader(fmt.Sprintf("rtsp://%s/load%d", addr, i), lat, &received, &lost)
			if err != nil {
				return fmt.Errorf("reader of stream %d: %w", i, err)
			}
			clients = append(clients, c)
		}
	}

	ru0, t0 := rusage(), time.Now()
	dur := time.Duration(*seconds * float64(time.Second))
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishSynthetic(ctx, pubs[i], medias[i], bitrate, dur, &sent)
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // let the last packets land
	ru1, wall := rusage(), time.Since(t0)

	st := srv.Stats()
	rep := relayReport{
		Streams:           *publishers,
		Readers:           *publishers * *readers,
		BitrateBPS:        bitrate,
		Seconds:           round(wall.Seconds(), 2),
		PacketsSent:       sent.Load(),
		PacketsReceived:   received.Load(),
		CPUPercent:        round(100*(ru1-ru0).Seconds()/wall.Seconds(), 1),
		DroppedPackets:    st.DroppedPackets + lost.Load(),
		ReaderLostPackets: lost.Load(),
	}
	rep.AddedLatencyP50MS, rep.AddedLatencyP99MS, rep.AddedLatencyMaxMS = lat.summary()

	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "relay: %d streams x %s, %d readers each, %.1fs\n", rep.Streams, *bitrateS, *readers, rep.Seconds)
	fmt.Fprintf(stdout, "  packets      sent %d, received %d (expected %d)\n", rep.PacketsSent, rep.PacketsReceived, rep.PacketsSent*uint64(*readers))
	fmt.Fprintf(stdout, "  added latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", rep.AddedLatencyP50MS, rep.AddedLatencyP99MS, rep.AddedLatencyMaxMS)
	fmt.Fprintf(stdout, "  cpu          %.1f%% of one core (whole process, clients included)\n", rep.CPUPercent)
	fmt.Fprintf(stdout, "  dropped      %d packets\n", rep.DroppedPackets)
	return nil
}

// publishSynthetic sends 30 fps of fake H.264 at bitrate, a keyframe every
// second, as FU-A packets whose bytes 2..9 carry the send time.
func publishSynthetic(ctx context.Context, c *gortsplib.Client, m *description.Media, bitrate int64, dur time.Duration, sent *atomic.Uint64) {
	const fps, mtu = 30, 1200
	frameBytes := int(bitrate / 8 / fps)
	tick := time.NewTicker(time.Second / fps)
	defer tick.Stop()
	end := time.Now().Add(dur)
	seq := uint16(0)
	for frame := 0; time.Now().Before(end); frame++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		nalType := byte(1)
		if frame%fps == 0 {
			nalType = 5
		}
		ts := uint32(frame * 90000 / fps)
		for off := 0; off < frameBytes; off += mtu {
			n := min(mtu, frameBytes-off)
			payload := make([]byte, 2+max(n, 8))
			payload[0] = 0x7c // FU-A, NRI 3
			payload[1] = nalType
			if off == 0 {
				payload[1] |= 0x80
			}
			last := off+mtu >= frameBytes
			if last {
				payload[1] |= 0x40
			}
			for k := 10; k < len(payload); k++ {
				payload[k] = byte(k) | 1
			}
			binary.BigEndian.PutUint64(payload[2:], uint64(time.Now().UnixNano()))
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: last}, Payload: payload}
			seq++
			if c.WritePacketRTP(m, pkt) == nil {
				sent.Add(1)
			}
		}
	}
}

func relayReader(url string, lat *latencies, received, lost *atomic.Uint64) (*gortsplib.Client, error) {
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, err
	}
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp,
		OnPacketsLost: func(n uint64) { lost.Add(n) }}
	if err := c.Start2(); err != nil {
		return nil, err
	}
	desc, _, err := c.Describe(u)
	if err == nil {
		err = c.SetupAll(desc.BaseURL, desc.Medias)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.OnPacketRTPAny(func(_ *description.Media, _ format.Format, pkt *rtp.Packet) {
		received.Add(1)
		if len(pkt.Payload) >= 10 && pkt.Payload[0]&0x1f == 28 {
			sentAt := int64(binary.BigEndian.Uint64(pkt.Payload[2:]))
			lat.add(time.Now().UnixNano() - sentAt)
		}
	})
	if _, err := c.Play(nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

type latencies struct {
	mu sync.Mutex
	ns []int64
}

func (l *latencies) add(ns int64) {
	l.mu.Lock()
	l.ns = append(l.ns, ns)
	l.mu.Unlock()
}

func (l *latencies) summary() (p50, p99, maxMS float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ns) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l.ns)
	at := func(q float64) float64 {
		return round(float64(l.ns[min(int(q*float64(len(l.ns))), len(l.ns)-1)])/1e6, 3)
	}
	return at(0.50), at(0.99), round(float64(l.ns[len(l.ns)-1])/1e6, 3)
}

func rusage() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func parseBitrate(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	switch {
	case strings.HasSuffix(t, "M"), strings.HasSuffix(t, "m"):
		mult, t = 1_000_000, t[:len(t)-1]
	case strings.HasSuffix(t, "k"), strings.HasSuffix(t, "K"):
		mult, t = 1_000, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*float64(mult) > 1e9 {
		return 0, fmt.Errorf("loadgen relay: bad --bitrate %q (want e.g. 6M or 800k)", s)
	}
	return int64(v * float64(mult)), nil
}

func round(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
