package overlay

import "encoding/binary"

// WebSocket opcodes the hub writes itself (RFC 6455, section 5.2).
const (
	opText byte = 0x1
	opPing byte = 0x9
	opPong byte = 0xA
)

// encodeFrame encodes payload as one final, unmasked (server-to-client),
// uncompressed WebSocket frame: the bytes a websocket.PreparedMessage
// writes to a connection without compression.
func encodeFrame(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op
	return append(b, payload...)
}

// rawWriter writes to a connection's socket without ever waiting for it.
type rawWriter interface {
	// tryWrite writes what the socket takes at once: n < len(b) with a nil
	// error means the socket is full.
	tryWrite(b []byte) (n int, err error)
}
