package ingest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/pion/rtp"
)

// TestPullReconnects: the pull client starts before its source exists,
// backs off while DESCRIBE fails, and republishes the source once it
// appears; readers of the mirror get the packets.
func TestPullReconnects(t *testing.T) {
	src := mustStartServer(t, Config{})
	mirror := mustStartServer(t, Config{Pull: map[string]string{"mirror": src.rtspURL("cam")}})

	time.Sleep(300 * time.Millisecond) // at least one failed attempt against the empty source
	if _, err := mirror.Stream("mirror"); err == nil {
		t.Fatal("mirror exists before its source")
	}
	pub, m := startSyntheticPublisher(t, src.rtspURL("cam"))
	waitFor(t, 15*time.Second, "the pull client to republish", func() bool {
		_, err := mirror.Stream("mirror")
		return err == nil
	})
	var got atomic.Int64
	rc := readRTSP(t, mirror.rtspURL("mirror"), func(*description.Media) { got.Add(1) })
	defer rc.Close()
	payload := []byte{0x41, 0x9a, 1, 2, 3}
	for i := 0; i < 2000 && got.Load() < 20; i++ {
		_ = pub.WritePacketRTP(m, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 3600), Marker: true}, Payload: payload})
		time.Sleep(5 * time.Millisecond)
	}
	if got.Load() < 20 {
		t.Fatalf("mirror reader got %d packets", got.Load())
	}
}
