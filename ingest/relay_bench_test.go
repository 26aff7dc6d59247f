package ingest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

// frameCounter reads interleaved frames from a played RTSP connection,
// discarding them, and signals when it has seen want RTP frames.
type frameCounter struct {
	got  atomic.Int64
	want atomic.Int64
	hit  chan struct{}
}

func countRTSPFrames(br *bufio.Reader) *frameCounter {
	fc := &frameCounter{hit: make(chan struct{}, 1)}
	fc.want.Store(-1)
	go func() {
		var hdr [4]byte
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			if hdr[0] != '$' {
				return
			}
			if _, err := br.Discard(int(binary.BigEndian.Uint16(hdr[2:]))); err != nil {
				return
			}
			if hdr[1] == 0 { // RTP of the first media
				fc.add()
			}
		}
	}()
	return fc
}

func (fc *frameCounter) add() {
	if fc.got.Add(1) == fc.want.Load() {
		select {
		case fc.hit <- struct{}{}:
		default:
		}
	}
}

// await blocks until n frames have arrived.
func (fc *frameCounter) await(tb testing.TB, n int64) {
	fc.want.Store(n)
	if fc.got.Load() >= n {
		return
	}
	select {
	case <-fc.hit:
	case <-time.After(10 * time.Second):
		tb.Fatalf("reader got %d of %d packets", fc.got.Load(), n)
	}
}

// BenchmarkRelayPacket is the relay's per-packet path: one 1200-byte H.264
// FU-A packet from the publisher's callback (Stream.writePacket) to every
// reader, in bursts of 32 (a frame's worth) that the readers must fully
// receive before the next. RTSP readers are raw TCP clients that discard
// what they read, so allocations and time are the relay's own (plus the
// kernel's loopback).
func BenchmarkRelayPacket(b *testing.B) {
	for _, bc := range []struct {
		name         string
		rtsp, inproc int
	}{
		{"readers=0", 0, 0},
		{"rtsp=1", 1, 0},
		{"rtsp=4", 4, 0},
		{"inproc=1", 0, 1},
		{"rtsp=1,inproc=1", 1, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts := mustStartServer(b, Config{})
			m := &description.Media{Type: description.MediaTypeVideo,
				Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: fakeSPS, PPS: fakePPS}}}
			st, err := ts.newStream("bench", "rtsp", &description.Session{Medias: []*description.Media{m}})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var counters []*frameCounter
			for range bc.rtsp {
				_, br := playRTSPRaw(b, ts.RTSPAddr().String(), "bench", 0)
				counters = append(counters, countRTSPFrames(br))
			}
			for i := range bc.inproc {
				fc := &frameCounter{hit: make(chan struct{}, 1)}
				fc.want.Store(-1)
				if _, err := st.AddReader(fmt.Sprintf("bench%d", i), 1<<12, func(*Packet) { fc.add() }); err != nil {
					b.Fatal(err)
				}
				counters = append(counters, fc)
			}
			waitFor(b, 5*time.Second, "the RTSP readers to play", func() bool { return ts.rtspH.plays.Load() >= int64(bc.rtsp) })

			payload := make([]byte, 1202)
			payload[0], payload[1] = 0x7c, 0x01 // FU-A middle of a non-IDR slice
			for k := 2; k < len(payload); k++ {
				payload[k] = byte(k) | 1
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}, Payload: payload}
			const burst = 32
			now := time.Now()
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				pkt.SequenceNumber = uint16(i)
				pkt.Timestamp = uint32(i / burst * 3000)
				st.writePacket(0, pkt, now)
				if i%burst == burst-1 || i == b.N-1 {
					for _, fc := range counters {
						fc.await(b, int64(i+1))
					}
				}
			}
			b.StopTimer()
			if st.Dropped() != 0 || ts.Stats().DroppedPackets != 0 {
				b.Fatalf("dropped %d packets", ts.Stats().DroppedPackets)
			}
		})
	}
}
