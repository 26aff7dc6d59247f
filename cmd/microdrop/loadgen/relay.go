package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
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
	"github.com/microdrop/microdrop/ingest/highlight"
)

// RelayReport is the --json output of loadgen relay.
//
// Every latency is per packet and measured in the load generator with one
// monotonic clock. added_latency is from the publisher's WritePacketRTP
// call to the reader's OnPacketRTP callback. It splits into parts that add
// up packet by packet: publisher_queue (the call to the write(2) that hands
// the packet's frame to the kernel: the publisher client's own write
// queue), relay_path (that write(2) to the read(2) that brings the frame's
// last bytes to the reader) and reader_queue (that read(2) to the
// callback: the reader client's parsing). Where the kernel stamps arrivals
// (Linux), relay_path splits further into in_relay (the publisher's
// write(2) to the frame's arrival in the reader's socket: the time the
// packet spent in the relay, loopback delivery included) and reader_wake
// (arrival to the reader's read(2): the reader's scheduling); -1 where
// unknown. The publishers and readers share the machine's cores with the
// relay, so a burst that keeps the clients busy delays the relay too.
//
// CPU is in percent of one core over the publishing window: cpu_percent is
// everything the test costs (load generator plus relay),
// server_cpu_percent the relay alone (its child process, from
// /proc/<pid>/stat; -1 when it runs in-process) and client_cpu_percent the
// load generator alone (-1 in-process).
type RelayReport struct {
	Streams           int     `json:"streams"`
	Readers           int     `json:"readers"`
	BitrateBPS        int64   `json:"bitrate_bps"`
	Seconds           float64 `json:"seconds"`
	Server            string  `json:"server"`
	Stagger           bool    `json:"stagger"`
	ClientGOGC        int     `json:"client_gogc"` // -1: off
	ServerGOGC        int     `json:"server_gogc"`
	PacketsSent       uint64  `json:"packets_sent"`
	PacketsReceived   uint64  `json:"packets_received"`
	AddedLatencyP50MS float64 `json:"added_latency_p50_ms"`
	AddedLatencyP90MS float64 `json:"added_latency_p90_ms"`
	AddedLatencyP99MS float64 `json:"added_latency_p99_ms"`
	AddedLatencyMaxMS float64 `json:"added_latency_max_ms"`
	PathLatencyP50MS  float64 `json:"relay_path_latency_p50_ms"`
	PathLatencyP99MS  float64 `json:"relay_path_latency_p99_ms"`
	RelayLatencyP50MS float64 `json:"in_relay_latency_p50_ms"`
	RelayLatencyP90MS float64 `json:"in_relay_latency_p90_ms"`
	RelayLatencyP99MS float64 `json:"in_relay_latency_p99_ms"`
	RelayLatencyMaxMS float64 `json:"in_relay_latency_max_ms"`
	ReaderWakeP50MS   float64 `json:"reader_wake_p50_ms"`
	ReaderWakeP99MS   float64 `json:"reader_wake_p99_ms"`
	PubQueueP50MS     float64 `json:"publisher_queue_p50_ms"`
	PubQueueP99MS     float64 `json:"publisher_queue_p99_ms"`
	ReadQueueP50MS    float64 `json:"reader_queue_p50_ms"`
	ReadQueueP99MS    float64 `json:"reader_queue_p99_ms"`
	CPUPercent        float64 `json:"cpu_percent"`
	ServerCPUPercent  float64 `json:"server_cpu_percent"`
	ClientCPUPercent  float64 `json:"client_cpu_percent"`
	DroppedPackets    uint64  `json:"dropped_packets"`
	ReaderLostPackets uint64  `json:"reader_lost_packets"`
	LoadAvg1          float64 `json:"loadavg_1m"`
	// The relay's memory when the publishing window ends: resident now
	// and at its peak (VmRSS and VmHWM of its process; -1 in-process),
	// and with highlights on, what its buffers hold and for how many
	// streams.
	Highlights       bool    `json:"highlights"`
	BoundStreams     int     `json:"bound_streams"`
	ServerRSSMB      float64 `json:"server_rss_mb"`
	ServerPeakMB     float64 `json:"server_peak_rss_mb"`
	ServerHeapMB     float64 `json:"server_heap_inuse_mb"` // -1 when not a relay child
	BufferedMB       float64 `json:"buffered_mb"`
	BufferedRings    int     `json:"buffered_streams"`
	BitrateLabel     string  `json:"-"`
	ReadersPerStream int     `json:"-"`
}

// RelayConfig is a `loadgen relay` run.
type RelayConfig struct {
	Publishers int     // streams published over RTSP/TCP
	Readers    int     // RTSP readers per stream
	Bitrate    string  // video bitrate per stream, k/M suffixes
	Seconds    float64 // how long to publish
	Server     string  // child (its CPU measured apart) or inproc
	// Stagger spreads the publishers' frames over the frame interval
	// instead of sending every stream's frame at the same instant.
	Stagger                bool
	ClientGOGC, ServerGOGC int // 0 leaves the Go default or $GOGC
	// Profiles and traces of this process and (Server*) of the relay
	// child over the publishing window; empty for none.
	CPUProfile, ServerCPUProfile string
	MemProfile, ServerMemProfile string
	Trace, ServerTrace           string
	// Highlights runs highlight capture in the relay child, with the
	// first Bound streams bound to a channel (the others bound to none)
	// and the buffers bounded per stream by BufferSeconds and BufferMB
	// and in all by BufferMBTotal (0: serve's defaults).
	Highlights                             bool
	Bound                                  int
	BufferSeconds, BufferMB, BufferMBTotal int
	// With Server "external", Addr is a running RTSP server's address
	// and PID its process, whose CPU and memory are read from /proc.
	Addr   string
	PID    int
	Stderr io.Writer
}

// Relay runs an ingest server on loopback (a child process by default, so
// its CPU is measured apart), P RTSP publishers of synthetic H.264 over TCP
// and R RTSP readers per stream in this process, and reports the latency the
// relay path adds, the CPU it costs and the packets it drops.
func Relay(ctx context.Context, cfg RelayConfig) (RelayReport, error) {
	var rep RelayReport
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	bitrate, err := parseBitrate(cfg.Bitrate)
	if err != nil {
		return rep, err
	}
	if cfg.Publishers < 1 || cfg.Publishers > 500 || cfg.Readers < 0 || cfg.Readers > 100 || cfg.Seconds <= 0 || cfg.Seconds > 3600 {
		return rep, errors.New("loadgen relay: need 1..500 publishers, 0..100 readers and 0 < seconds <= 3600")
	}
	switch {
	case cfg.Server != "child" && cfg.Server != "inproc" && cfg.Server != "external":
		return rep, fmt.Errorf("loadgen relay: --server must be child, inproc or external, not %q", cfg.Server)
	case cfg.Server == "external" && (cfg.Addr == "" || cfg.PID <= 0):
		return rep, errors.New("loadgen relay: --server external needs --addr (its RTSP host:port) and --pid (its process)")
	case cfg.Highlights && cfg.Server != "child":
		return rep, errors.New("loadgen relay: --highlights needs --server child")
	case cfg.Bound < 0 || cfg.Bound > cfg.Publishers:
		return rep, fmt.Errorf("loadgen relay: --bound must be between 0 and --publishers (%d)", cfg.Publishers)
	case cfg.BufferSeconds < 0 || cfg.BufferMB < 0 || cfg.BufferMBTotal < 0:
		return rep, errors.New("loadgen relay: --buffer-seconds, --buffer-mb and --buffer-mb-total must be 0 (the default) or more")
	}
	clientGC, serverGC := envGOGC(), envGOGC()
	if cfg.ClientGOGC > 0 {
		clientGC = cfg.ClientGOGC
		defer debug.SetGCPercent(debug.SetGCPercent(clientGC))
	}
	if cfg.ServerGOGC > 0 {
		serverGC = cfg.ServerGOGC
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var relay relayServer
	switch cfg.Server {
	case "child":
		relay, err = startRelayChild(ctx, cfg, cfg.Stderr)
	case "external":
		relay = &relayExternal{a: cfg.Addr, pid: cfg.PID}
	default:
		relay, err = startRelayInProc(ctx, cfg.Stderr)
	}
	if err != nil {
		return rep, err
	}
	defer relay.close()
	addr := relay.addr()

	epoch := time.Now() // every time below is monotonic nanoseconds since epoch
	var sent, lost atomic.Uint64
	var clients []*gortsplib.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	pubs := make([]*gortsplib.Client, cfg.Publishers)
	medias := make([]*description.Media, cfg.Publishers)
	wires := make([]*wireLog, cfg.Publishers)
	for i := range pubs {
		m := &description.Media{Type: description.MediaTypeVideo,
			Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1,
				SPS: []byte{0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20},
				PPS: []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}}}}
		wires[i] = &wireLog{}
		tcp := gortsplib.TransportTCP
		c := &gortsplib.Client{Transport: &tcp, WriteQueueSize: 4096, DialContext: wires[i].dialer(epoch)}
		if err := c.StartRecording(fmt.Sprintf("rtsp://%s/load%d", addr, i), &description.Session{Medias: []*description.Media{m}}); err != nil {
			return rep, fmt.Errorf("publisher %d: %w", i, err)
		}
		clients = append(clients, c)
		pubs[i], medias[i] = c, m
	}
	var recs []*latencyRecorder
	for i := range pubs {
		for range cfg.Readers {
			rec := &latencyRecorder{}
			c, err := relayReader(fmt.Sprintf("rtsp://%s/load%d", addr, i), epoch, wires[i], rec, &lost)
			if err != nil {
				return rep, fmt.Errorf("reader of stream %d: %w", i, err)
			}
			clients = append(clients, c)
			recs = append(recs, rec)
		}
	}

	stopProfiles, err := startRelayProfiles(relay, cfg.CPUProfile, cfg.ServerCPUProfile, cfg.Trace, cfg.ServerTrace, cfg.MemProfile, cfg.ServerMemProfile)
	if err != nil {
		return rep, err
	}
	defer stopProfiles()
	self0, srv0, t0 := ProcessCPU(), relay.cpu(), time.Now()
	dur := time.Duration(cfg.Seconds * float64(time.Second))
	frameEvery := time.Second / relayFPS
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var phase time.Duration
			if cfg.Stagger {
				phase = frameEvery * time.Duration(i) / time.Duration(len(pubs))
			}
			publishSynthetic(ctx, pubs[i], medias[i], bitrate, dur, phase, epoch, &sent)
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // let the last packets land
	self1, srv1, wall := ProcessCPU(), relay.cpu(), time.Since(t0)
	stopProfiles()

	st, err := relay.stats()
	if err != nil {
		return rep, err
	}
	mem := relay.mem()
	pct := func(d time.Duration) float64 { return Round(100*d.Seconds()/wall.Seconds(), 1) }
	rep = RelayReport{
		Streams:           cfg.Publishers,
		Readers:           cfg.Publishers * cfg.Readers,
		BitrateBPS:        bitrate,
		Seconds:           Round(wall.Seconds(), 2),
		Server:            cfg.Server,
		Stagger:           cfg.Stagger,
		ClientGOGC:        clientGC,
		ServerGOGC:        serverGC,
		PacketsSent:       sent.Load(),
		ClientCPUPercent:  pct(self1 - self0),
		ServerCPUPercent:  -1,
		DroppedPackets:    st.DroppedPackets + lost.Load(),
		ReaderLostPackets: lost.Load(),
		LoadAvg1:          LoadAvg1(),
		Highlights:        cfg.Highlights,
		BoundStreams:      cfg.Bound,
		ServerRSSMB:       mem.RSSMB,
		ServerPeakMB:      mem.PeakMB,
		ServerHeapMB:      mem.HeapMB,
		BufferedMB:        mem.BufferedMB,
		BufferedRings:     mem.Rings,
	}
	if srv0 >= 0 && srv1 >= 0 {
		rep.ServerCPUPercent = pct(srv1 - srv0)
		rep.CPUPercent = pct(self1 - self0 + srv1 - srv0)
	} else {
		rep.CPUPercent = rep.ClientCPUPercent // in-process: the one figure covers both
		rep.ClientCPUPercent = -1
	}
	var all latencyRecorder
	for _, r := range recs {
		all.merge(r)
	}
	rep.PacketsReceived = all.received
	all.sort()
	rep.AddedLatencyP50MS, rep.AddedLatencyP90MS, rep.AddedLatencyP99MS, rep.AddedLatencyMaxMS = quantileMS(all.e2e, 0.5), quantileMS(all.e2e, 0.9), quantileMS(all.e2e, 0.99), quantileMS(all.e2e, 1)
	rep.PubQueueP50MS, rep.PubQueueP99MS = quantileMS(all.pubq, 0.5), quantileMS(all.pubq, 0.99)
	rep.PathLatencyP50MS, rep.PathLatencyP99MS = quantileMS(all.path, 0.5), quantileMS(all.path, 0.99)
	rep.RelayLatencyP50MS, rep.RelayLatencyP90MS, rep.RelayLatencyP99MS, rep.RelayLatencyMaxMS = -1, -1, -1, -1
	rep.ReaderWakeP50MS, rep.ReaderWakeP99MS = -1, -1
	if len(all.relay) > 0 {
		rep.RelayLatencyP50MS, rep.RelayLatencyP90MS, rep.RelayLatencyP99MS, rep.RelayLatencyMaxMS = quantileMS(all.relay, 0.5), quantileMS(all.relay, 0.9), quantileMS(all.relay, 0.99), quantileMS(all.relay, 1)
		rep.ReaderWakeP50MS, rep.ReaderWakeP99MS = quantileMS(all.wake, 0.5), quantileMS(all.wake, 0.99)
	}
	rep.ReadQueueP50MS, rep.ReadQueueP99MS = quantileMS(all.readq, 0.5), quantileMS(all.readq, 0.99)

	rep.BitrateLabel, rep.ReadersPerStream = cfg.Bitrate, cfg.Readers
	return rep, nil
}

// WriteText prints the report for a person.
func (rep RelayReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "relay: %d streams x %s, %d readers each, %.1fs, relay %s, stagger %v, GOGC relay %d clients %d\n", rep.Streams, rep.BitrateLabel, rep.ReadersPerStream, rep.Seconds, rep.Server, rep.Stagger, rep.ServerGOGC, rep.ClientGOGC)
	fmt.Fprintf(w, "  packets      sent %d, received %d (expected %d)\n", rep.PacketsSent, rep.PacketsReceived, rep.PacketsSent*uint64(rep.ReadersPerStream))
	fmt.Fprintf(w, "  added latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (write call -> reader callback)\n", rep.AddedLatencyP50MS, rep.AddedLatencyP90MS, rep.AddedLatencyP99MS, rep.AddedLatencyMaxMS)
	fmt.Fprintf(w, "    publisher queue p50 %.2f ms, p99 %.2f ms (write call -> write(2))\n", rep.PubQueueP50MS, rep.PubQueueP99MS)
	fmt.Fprintf(w, "    relay path      p50 %.2f ms, p99 %.2f ms (write(2) -> reader's read(2)), of which\n", rep.PathLatencyP50MS, rep.PathLatencyP99MS)
	if rep.RelayLatencyP50MS >= 0 {
		fmt.Fprintf(w, "      in the relay  p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (write(2) -> arrival in the reader's socket)\n", rep.RelayLatencyP50MS, rep.RelayLatencyP90MS, rep.RelayLatencyP99MS, rep.RelayLatencyMaxMS)
		fmt.Fprintf(w, "      reader wake   p50 %.2f ms, p99 %.2f ms (arrival -> read(2))\n", rep.ReaderWakeP50MS, rep.ReaderWakeP99MS)
	}
	fmt.Fprintf(w, "    reader queue    p50 %.2f ms, p99 %.2f ms (read(2) -> callback)\n", rep.ReadQueueP50MS, rep.ReadQueueP99MS)
	if rep.ServerCPUPercent >= 0 {
		fmt.Fprintf(w, "  cpu          relay %.1f%%, clients %.1f%%, total %.1f%% of one core (load average %.2f)\n", rep.ServerCPUPercent, rep.ClientCPUPercent, rep.CPUPercent, rep.LoadAvg1)
	} else {
		fmt.Fprintf(w, "  cpu          %.1f%% of one core (relay and clients in one process; load average %.2f)\n", rep.CPUPercent, rep.LoadAvg1)
	}
	fmt.Fprintf(w, "  dropped      %d packets\n", rep.DroppedPackets)
	if rep.ServerRSSMB >= 0 {
		fmt.Fprintf(w, "  memory       relay resident %.1f MB, peak %.1f MB", rep.ServerRSSMB, rep.ServerPeakMB)
		if rep.ServerHeapMB >= 0 {
			fmt.Fprintf(w, ", Go heap in use %.1f MB", rep.ServerHeapMB)
		}
		fmt.Fprintln(w)
	}
	if rep.Highlights {
		fmt.Fprintf(w, "  highlights   %d of %d streams bound; buffers hold %.1f MB for %d streams\n", rep.BoundStreams, rep.Streams, rep.BufferedMB, rep.BufferedRings)
	}
}

// envGOGC is the GOGC the Go runtime took from the environment: 100 by
// default, -1 for off.
func envGOGC() int {
	v := os.Getenv("GOGC")
	if v == "off" {
		return -1
	}
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	return 100
}

// startRelayProfiles starts the requested CPU profiles and traces (traces
// stop after a second: they grow fast) and returns what stops them; it may
// be called more than once.
func startRelayProfiles(relay relayServer, cpuPath, serverCPUPath, tracePath, serverTracePath, memPath, serverMemPath string) (func(), error) {
	var local profiler
	stop := func() {
		local.stop()
		if serverCPUPath != "" || serverTracePath != "" || serverMemPath != "" {
			_ = relay.profile("", "")
		}
	}
	for _, p := range []struct{ kind, local, server string }{{"cpu", cpuPath, serverCPUPath}, {"trace", tracePath, serverTracePath}, {"allocs", memPath, serverMemPath}} {
		if p.local != "" {
			if err := local.start(p.kind, p.local); err != nil {
				stop()
				return nil, err
			}
		}
		if p.server != "" {
			if err := relay.profile(p.kind, p.server); err != nil {
				stop()
				return nil, err
			}
		}
	}
	return sync.OnceFunc(stop), nil
}

const relayFPS = 30

// publishSynthetic sends 30 fps of fake H.264 at bitrate, a keyframe every
// second, as FU-A packets whose bytes 2..9 carry the time of the write
// call. The first frame goes out phase after the start.
func publishSynthetic(ctx context.Context, c *gortsplib.Client, m *description.Media, bitrate int64, dur, phase time.Duration, epoch time.Time, sent *atomic.Uint64) {
	const mtu = 1200
	frameBytes := int(bitrate / 8 / relayFPS)
	end := time.Now().Add(dur)
	if phase > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(phase):
		}
	}
	tick := time.NewTicker(time.Second / relayFPS)
	defer tick.Stop()
	// The client marshals the packet before WritePacketRTP returns, so one
	// packet and payload buffer serve the whole run: the load generator's
	// own allocations and GC should not weigh on the relay it measures.
	body := make([]byte, 2+max(mtu, 8))
	for k := range body {
		body[k] = byte(k) | 1
	}
	var pkt rtp.Packet
	seq := uint16(0)
	for frame := 0; time.Now().Before(end); frame++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		nalType := byte(1)
		if frame%relayFPS == 0 {
			nalType = 5
		}
		ts := uint32(frame * 90000 / relayFPS)
		for off := 0; off < frameBytes; off += mtu {
			n := min(mtu, frameBytes-off)
			payload := body[:2+max(n, 8)]
			payload[0] = 0x7c // FU-A, NRI 3
			payload[1] = nalType
			if off == 0 {
				payload[1] |= 0x80
			}
			last := off+mtu >= frameBytes
			if last {
				payload[1] |= 0x40
			}
			pkt = rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: last}, Payload: payload}
			seq++
			binary.BigEndian.PutUint64(payload[2:], uint64(time.Since(epoch)))
			if c.WritePacketRTP(m, &pkt) == nil {
				sent.Add(1)
			}
		}
	}
}

// frameStamp reads the sequence number and send stamp out of an
// interleaved RTP frame of publishSynthetic's.
func frameStamp(b []byte) (seq uint16, stamp int64, ok bool) {
	// '$', channel 0, length, a 12-byte RTP header without CSRCs or
	// extension, then the FU-A payload
	if len(b) < 4+12+10 || b[0] != '$' || b[1] != 0 || b[4]&0x3f != 0 {
		return 0, 0, false
	}
	stamp, ok = payloadStamp(b[16:])
	return binary.BigEndian.Uint16(b[6:]), stamp, ok
}

// payloadStamp reads the send stamp out of a publishSynthetic payload.
func payloadStamp(p []byte) (int64, bool) {
	if len(p) < 10 || p[0]&0x1f != 28 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(p[2:])), true
}

// wireLog remembers, by sequence number, when each of a publisher's
// packets was handed to the kernel: just before the write(2) of its frame.
type wireLog struct {
	stamp, at [4096]atomic.Int64
}

func (w *wireLog) dialer(epoch time.Time) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &wireConn{Conn: c, log: w, epoch: epoch}, nil
	}
}

// lookup returns when the packet stamped stamp went out, if it is still
// in the log.
func (w *wireLog) lookup(seq uint16, stamp int64) (int64, bool) {
	i := seq % uint16(len(w.at))
	if w.stamp[i].Load() != stamp {
		return 0, false
	}
	return w.at[i].Load(), true
}

// wireConn is a publisher's connection: gortsplib writes each interleaved
// frame with one Write.
type wireConn struct {
	net.Conn
	log   *wireLog
	epoch time.Time
}

func (c *wireConn) Write(b []byte) (int, error) {
	if seq, stamp, ok := frameStamp(b); ok {
		i := seq % uint16(len(c.log.at))
		c.log.at[i].Store(int64(time.Since(c.epoch)))
		c.log.stamp[i].Store(stamp)
	}
	return c.Conn.Write(b)
}

// readConn is a reader's connection: it notes when each read(2) returned
// and, where the kernel tells (Linux), when the last bytes it returned had
// arrived in the socket: the moment the relay's write(2) delivered them
// over loopback. gortsplib parses frames and runs the packet callback on
// the goroutine that reads, so at the callback the last read is the one
// that completed the packet's frame.
type readConn struct {
	net.Conn
	raw     syscall.RawConn // nil: no kernel timestamps
	epoch   time.Time
	toMono  int64 // add to a CLOCK_REALTIME nanosecond timestamp for time since epoch
	oob     []byte
	readAt  atomic.Int64
	arrival atomic.Int64 // 0: unknown
}

// relaySOTimestampNS is SO_TIMESTAMPNS (and SCM_TIMESTAMPNS) on Linux.
const relaySOTimestampNS = 0x23

func newReadConn(nc net.Conn, epoch time.Time) *readConn {
	c := &readConn{Conn: nc, epoch: epoch, toMono: -epoch.UnixNano()}
	tc, ok := nc.(*net.TCPConn)
	if !ok || runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, relaySOTimestampNS, 1)
	}); err != nil || serr != nil {
		return c
	}
	c.raw, c.oob = raw, make([]byte, syscall.CmsgSpace(16))
	return c
}

func (c *readConn) Read(b []byte) (int, error) {
	if c.raw == nil {
		n, err := c.Conn.Read(b)
		c.readAt.Store(int64(time.Since(c.epoch)))
		return n, err
	}
	var n, oobn int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), b, c.oob, 0)
		return !errors.Is(rerr, syscall.EAGAIN)
	})
	c.readAt.Store(int64(time.Since(c.epoch)))
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	if msgs, perr := syscall.ParseSocketControlMessage(c.oob[:oobn]); perr == nil {
		for _, m := range msgs {
			if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == relaySOTimestampNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
				c.arrival.Store(sec*1e9 + nsec + c.toMono)
			}
		}
	}
	return n, nil
}

func relayReader(url string, epoch time.Time, wires *wireLog, rec *latencyRecorder, lost *atomic.Uint64) (*gortsplib.Client, error) {
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, err
	}
	var rc *readConn
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp,
		OnPacketsLost: func(n uint64) { lost.Add(n) },
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			rc = newReadConn(nc, epoch)
			return rc, nil
		}}
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
		now := int64(time.Since(epoch))
		stamp, ok := payloadStamp(pkt.Payload)
		wire, onWire := int64(0), false
		if ok {
			wire, onWire = wires.lookup(pkt.SequenceNumber, stamp)
		}
		rec.add(ok, stamp, wire, onWire, rc.arrival.Load(), rc.readAt.Load(), now)
	})
	if _, err := c.Play(nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// latencyRecorder collects one reader's latencies (nanoseconds).
type latencyRecorder struct {
	mu       sync.Mutex
	received uint64
	// e2e: write call -> callback, split into pubq: write call ->
	// write(2); path: write(2) -> read(2), itself split into relay:
	// write(2) -> arrival in the reader's socket and wake: arrival ->
	// read(2); readq: read(2) -> callback.
	e2e, pubq, path, relay, wake, readq []int64
}

func (r *latencyRecorder) add(stamped bool, stamp, wire int64, onWire bool, arrival, read, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.received++
	if !stamped {
		return
	}
	r.e2e = append(r.e2e, now-stamp)
	r.readq = append(r.readq, now-read)
	if !onWire {
		return
	}
	r.pubq = append(r.pubq, wire-stamp)
	r.path = append(r.path, read-wire)
	if arrival != 0 {
		r.relay = append(r.relay, arrival-wire)
		r.wake = append(r.wake, read-arrival)
	}
}

func (r *latencyRecorder) merge(o *latencyRecorder) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r.received += o.received
	r.e2e = append(r.e2e, o.e2e...)
	r.pubq = append(r.pubq, o.pubq...)
	r.path = append(r.path, o.path...)
	r.relay = append(r.relay, o.relay...)
	r.wake = append(r.wake, o.wake...)
	r.readq = append(r.readq, o.readq...)
}

func (r *latencyRecorder) sort() {
	for _, s := range [][]int64{r.e2e, r.pubq, r.path, r.relay, r.wake, r.readq} {
		slices.Sort(s)
	}
}

// quantileMS is the Quantile of sorted nanoseconds, in milliseconds.
func quantileMS(ns []int64, q float64) float64 { return MS(time.Duration(Quantile(ns, q))) }

// relayServer is the ingest server under test, in a child process or in
// this one.
type relayServer interface {
	addr() string
	// cpu is the relay's CPU time so far, or -1 when it cannot be told
	// apart from the load generator's.
	cpu() time.Duration
	stats() (ingest.Stats, error)
	mem() relayMem
	// profile starts a CPU profile ("cpu"), an execution trace ("trace")
	// or an allocation profile written at the stop ("allocs") into path;
	// with kind "" it stops them all.
	profile(kind, path string) error
	close()
}

type relayInProc struct {
	srv    *ingest.Server
	cancel context.CancelFunc
}

func startRelayInProc(ctx context.Context, stderr io.Writer) (*relayInProc, error) {
	srv, err := newRelayIngest(stderr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	if err := srv.Start(ctx); err != nil {
		cancel()
		return nil, err
	}
	return &relayInProc{srv: srv, cancel: cancel}, nil
}

func newRelayIngest(stderr io.Writer) (*ingest.Server, error) {
	return ingest.New(ingest.Deps{
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Bus:    microdrop.NewMemoryBus(),
		Config: ingest.Config{RTSPAddress: "127.0.0.1:0"},
	})
}

func (r *relayInProc) addr() string                 { return r.srv.RTSPAddr().String() }
func (r *relayInProc) cpu() time.Duration           { return -1 }
func (r *relayInProc) stats() (ingest.Stats, error) { return r.srv.Stats(), nil }
func (r *relayInProc) profile(kind, _ string) error {
	if kind == "" {
		return nil
	}
	return errors.New("--server-cpuprofile, --server-memprofile and --server-trace need --server child (in-process, use --cpuprofile, --memprofile and --trace)")
}
func (r *relayInProc) close()        { r.cancel(); _ = r.srv.Close() }
func (r *relayInProc) mem() relayMem { return relayMem{RSSMB: -1, PeakMB: -1, HeapMB: -1} }

// relayMem is the relay's memory: resident now and at its peak (from
// /proc/<pid>/status), the Go heap in use, and its highlight buffers.
type relayMem struct {
	RSSMB      float64 `json:"-"`
	PeakMB     float64 `json:"-"`
	HeapMB     float64 `json:"heap_inuse_mb"`
	BufferedMB float64 `json:"buffered_mb"`
	Rings      int     `json:"rings"`
}

// procMem reads VmRSS and VmHWM of pid in MB (-1 when unknown).
func procMem(pid int) (rss, peak float64) {
	rss, peak = -1, -1
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		if k == "VmRSS" {
			rss = Round(kb/1024, 1)
		} else {
			peak = Round(kb/1024, 1)
		}
	}
	return
}

// procCPU is the user and system time of pid from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ, 100 on Linux
}

// relayExternal is an RTSP server this load generator did not start
// (mediamtx, say): its CPU and memory come from /proc, its drops are
// unknown (0).
type relayExternal struct {
	a   string
	pid int
}

func (r *relayExternal) addr() string                 { return r.a }
func (r *relayExternal) cpu() time.Duration           { return procCPU(r.pid) }
func (r *relayExternal) stats() (ingest.Stats, error) { return ingest.Stats{}, nil }
func (r *relayExternal) profile(kind, _ string) error {
	if kind == "" {
		return nil
	}
	return errors.New("no server profiles with --server external")
}
func (r *relayExternal) close() {}
func (r *relayExternal) mem() relayMem {
	m := relayMem{HeapMB: -1}
	m.RSSMB, m.PeakMB = procMem(r.pid)
	return m
}

// relayChild is the relay in a child process (RoleRelay). Besides "cpu"
// and "profile" it answers "addr" (its RTSP address) and "stats" (a JSON
// ingest.Stats line); the end of its standard input stops it.
type relayChild struct {
	child *Child
	a     string
}

func startRelayChild(ctx context.Context, cfg RelayConfig, stderr io.Writer) (*relayChild, error) {
	env := liftFrontLimits()
	if cfg.ServerGOGC > 0 {
		env = append(env, fmt.Sprintf("GOGC=%d", cfg.ServerGOGC))
	}
	var args []string
	if cfg.Highlights {
		args = []string{"--highlights", "--bound", strconv.Itoa(cfg.Bound), "--buffer-seconds", strconv.Itoa(cfg.BufferSeconds),
			"--buffer-mb", strconv.Itoa(cfg.BufferMB), "--buffer-mb-total", strconv.Itoa(cfg.BufferMBTotal)}
	}
	child, err := StartChild(ChildSpec{Role: RoleRelay, Env: env, Args: args, StderrLine: func(line string) { fmt.Fprintln(stderr, line) }})
	if err != nil {
		return nil, err
	}
	c := &relayChild{child: child}
	type result struct {
		addr string
		err  error
	}
	// The first answer comes once the relay listens.
	first := make(chan result, 1)
	go func() {
		a, err := child.Ask("addr", 30*time.Second)
		first <- result{a, err}
	}()
	select {
	case r := <-first:
		if r.err != nil {
			_ = child.Stop(5 * time.Second)
			return nil, fmt.Errorf("relay child: %w", r.err)
		}
		c.a = r.addr
		return c, nil
	case <-ctx.Done():
		_ = child.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

func (c *relayChild) addr() string { return c.a }

func (c *relayChild) cpu() time.Duration {
	d, err := c.child.CPU()
	if err != nil {
		return -1
	}
	return d
}

func (c *relayChild) stats() (ingest.Stats, error) {
	var st ingest.Stats
	line, err := c.child.Ask("stats", 10*time.Second)
	if err != nil {
		return st, fmt.Errorf("relay child stats: %w", err)
	}
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		return st, fmt.Errorf("relay child stats %q: %w", line, err)
	}
	return st, nil
}

func (c *relayChild) profile(kind, path string) error {
	_, err := c.child.Ask(strings.TrimSpace("profile "+kind+" "+path), 10*time.Second)
	return err
}

func (c *relayChild) close() { _ = c.child.Stop(10 * time.Second) }

func (c *relayChild) mem() relayMem {
	m := relayMem{HeapMB: -1}
	if line, err := c.child.Ask("mem", 10*time.Second); err == nil {
		_ = json.Unmarshal([]byte(line), &m)
	}
	m.RSSMB, m.PeakMB = procMem(c.child.Pid())
	return m
}

// runRelayChild serves the relay for a parent load generator until in
// closes; see relayChild for the commands. With --highlights it captures
// highlights as serve does, the first --bound streams (paths load0,
// load1, ...) bound to the channel "loadgen", the others to none.
func runRelayChild(ctx context.Context, args []string, in io.Reader, ctl, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay child", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hl := fs.Bool("highlights", false, "")
	bound := fs.Int("bound", 0, "")
	bufSec := fs.Int("buffer-seconds", 0, "")
	bufMB := fs.Int("buffer-mb", 0, "")
	bufTotal := fs.Int("buffer-mb-total", 0, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	paths := map[string]string{}
	for i := range *bound {
		paths[fmt.Sprintf("load%d", i)] = relayChannel
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bus := microdrop.NewMemoryBus()
	srv, err := ingest.New(ingest.Deps{Logger: log, Bus: bus, Config: ingest.Config{RTSPAddress: "127.0.0.1:0", Paths: paths}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var capt *highlight.Capturer
	if *hl {
		dir, err := os.MkdirTemp("", "microdrop-loadgen-relay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		store, err := highlight.OpenSQLite(ctx, filepath.Join(dir, "highlights.db"))
		if err != nil {
			return err
		}
		defer store.Close()
		capt, err = highlight.NewCapturer(highlight.CaptureDeps{Logger: log, Bus: bus, Streams: srv, Store: store,
			Config: highlight.CaptureConfig{Dir: filepath.Join(dir, "clips"), Channels: []string{relayChannel},
				Buffer:      highlight.RingConfig{MaxDuration: time.Duration(*bufSec) * time.Second, MaxBytes: int64(*bufMB) << 20},
				BufferTotal: int64(*bufTotal) << 20}})
		if err != nil {
			return err
		}
		if err := capt.Start(ctx); err != nil {
			return err
		}
		defer capt.Close()
		capt.LimitGCHeadroom(ctx) // as serve does, unless GOMEMLIMIT is set
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	var prof profiler
	defer prof.stop()
	serveControl(in, ctl, &prof, func(cmd, _ string) (string, error) {
		switch cmd {
		case "addr":
			return srv.RTSPAddr().String(), nil
		case "stats":
			b, err := json.Marshal(srv.Stats())
			return string(b), err
		case "mem":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			m := relayMem{HeapMB: Round(float64(ms.HeapInuse)/(1<<20), 1)}
			if capt != nil {
				bs := capt.BufferStats()
				m.BufferedMB, m.Rings = Round(float64(bs.Bytes)/(1<<20), 1), bs.Rings
			}
			b, err := json.Marshal(m)
			return string(b), err
		}
		return "", fmt.Errorf("unknown command %q", cmd)
	})
	return nil
}

// relayChannel is the channel a relay child binds its --bound streams to.
const relayChannel = "loadgen"

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
