package overlay

import (
	"encoding/base64"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/microdrop/microdrop"
)

// Frame types on the overlay WebSocket.
const (
	FrameSnapshot = "snapshot" // the whole state; first frame of every connection
	FrameEvent    = "event"    // an open, extension, sell-out, close or a unit back in play: sent at once
	FrameStock    = "stock"    // coalesced claims: stock and recent winners
	FrameTime     = "time"     // answer to a client's clock probe
)

// Frame is one message to an overlay. Times are Unix milliseconds with a
// fraction, so JavaScript reads them without losing precision.
type Frame struct {
	Type    string         `json:"type"`
	Kind    microdrop.Kind `json:"kind,omitempty"`
	Seq     uint64         `json:"seq,omitempty"`
	Channel string         `json:"channel"`
	// AtMS is when the event happened (the claims service's clock).
	AtMS float64 `json:"at_ms,omitempty"`
	// ServerMS is the server clock when the frame was built: the send
	// timestamp, and the reference the page's countdown follows.
	ServerMS float64             `json:"server_ms"`
	Drop     *microdrop.DropView `json:"drop,omitempty"`
	ClaimURL string              `json:"claim_url,omitempty"`
	QR       *QRBits             `json:"qr,omitempty"`
	Winners  []Winner            `json:"winners,omitempty"`
	// Note is a short-lived line for the card ("a unit is back in play"),
	// on hold events only.
	Note string `json:"note,omitempty"`
	// Step is a listen drop's next rotating code (kind cue.step), to play now.
	Step *microdrop.CueStepView `json:"step,omitempty"`
	// Client echoes a clock probe's client time (type "time").
	Client float64 `json:"client,omitempty"`
}

// Winner is one recent winner as shown on stream.
type Winner struct {
	Name  string `json:"name"`
	Units int    `json:"units"`
}

// QRBits is a QR code as a square of modules (quiet zone included), row by
// row, most significant bit first, base64: about 150 bytes where an SVG
// would take kilobytes in every frame to every client.
type QRBits struct {
	Size int    `json:"size"`
	Bits string `json:"bits"`
}

// NewQRBits encodes text at medium error correction.
func NewQRBits(text string) (*QRBits, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, err
	}
	bm := q.Bitmap()
	n := len(bm)
	packed := make([]byte, (n*n+7)/8)
	i := 0
	for _, row := range bm {
		for _, on := range row {
			if on {
				packed[i/8] |= 0x80 >> (i % 8)
			}
			i++
		}
	}
	return &QRBits{Size: n, Bits: base64.StdEncoding.EncodeToString(packed)}, nil
}

// unixMS is t as Unix milliseconds with microsecond precision.
func unixMS(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMicro()) / 1000
}
