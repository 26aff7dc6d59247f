package claims

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/microdrop/microdrop"
)

// A pickup token is 16 characters of Crockford's base32 (no I, L, O or U, so
// nothing reads two ways): 48 bits naming the win, then 32 bits of
// HMAC-SHA256 over them. The signature lets the desk turn away a forgery
// without touching the ledger; expiry and single use live in the ledger, which
// is the only place that can make "exactly once" true.
//
// The 48 bits are 30 bits of seconds since 2026 and an 18-bit counter that
// starts at a random point each second. Time-ordered ids keep the ledger's
// token index append-only: random ids dirtied one index page per win and cost
// the SQLite ledger a tenfold slowdown in a big drop. Nothing relies on the ids
// being secret; a token cannot be made without the key.
const (
	TokenLength   = 16
	tokenIDBytes  = 6
	tokenMACBytes = 4
	tokenContext  = "microdrop pickup token v1"
)

var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// TokenSigner signs with the first key and verifies with any, so keys rotate
// without invalidating tokens already handed out.
type TokenSigner struct {
	keys [][]byte

	mu     sync.Mutex
	second uint64 // of the last id
	count  uint64 // next counter value in that second
}

const (
	tokenEpoch     = 1767225600 // 2026-01-01T00:00:00Z
	tokenCountBits = 18
)

// nextID returns a fresh 48-bit id, increasing within this signer.
func (s *TokenSigner) nextID() uint64 {
	sec := uint64(time.Now().Unix()-tokenEpoch) & (1<<30 - 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec > s.second || s.second == 0 {
		var r [4]byte
		if _, err := rand.Read(r[:]); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		s.second = sec
		// Start low in the range so a busy second rarely runs out.
		s.count = uint64(binary.BigEndian.Uint32(r[:])) & (1<<(tokenCountBits-1) - 1)
	}
	if s.count == 1<<tokenCountBits {
		s.second++ // borrow the next second; ids stay unique and ordered
		s.count = 0
	}
	id := s.second<<tokenCountBits | s.count
	s.count++
	return id
}

// ErrNoTokenKey means the config gave no signing key.
var ErrNoTokenKey = errors.New("no pickup token key configured")

// NewTokenSigner takes the current key first, then previous keys.
func NewTokenSigner(keys ...[]byte) (*TokenSigner, error) {
	var ks [][]byte
	for _, k := range keys {
		if len(k) == 0 {
			continue
		}
		if len(k) < 16 {
			return nil, fmt.Errorf("pickup token key too short: %d bytes, need at least 16", len(k))
		}
		ks = append(ks, append([]byte(nil), k...))
	}
	if len(ks) == 0 {
		return nil, ErrNoTokenKey
	}
	return &TokenSigner{keys: ks}, nil
}

func (s *TokenSigner) mac(key, id []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenContext))
	m.Write(id)
	return m.Sum(nil)[:tokenMACBytes]
}

// New returns a fresh signed token.
func (s *TokenSigner) New() string {
	var raw [tokenIDBytes + tokenMACBytes]byte
	id := s.nextID()
	for i := tokenIDBytes - 1; i >= 0; i-- {
		raw[i] = byte(id)
		id >>= 8
	}
	copy(raw[tokenIDBytes:], s.mac(s.keys[0], raw[:tokenIDBytes]))
	return crockford.EncodeToString(raw[:])
}

// Verify normalizes what a person typed or a scanner read and checks the
// signature against every key. It returns the canonical token.
func (s *TokenSigner) Verify(text string) (string, error) {
	canon, raw, err := ParseToken(text)
	if err != nil {
		return "", err
	}
	for _, k := range s.keys {
		if hmac.Equal(s.mac(k, raw[:tokenIDBytes]), raw[tokenIDBytes:]) {
			return canon, nil
		}
	}
	return "", &microdrop.Error{Code: microdrop.EFORBIDDEN, Message: "this pickup code is not one of ours", Err: ErrTokenForged}
}

// ParseToken normalizes a token as people write it: case, dashes and spaces
// do not matter, and O, I and L read as 0, 1 and 1.
func ParseToken(text string) (string, []byte, error) {
	if len(text) > 64 {
		return "", nil, &microdrop.Error{Code: microdrop.EINVALID, Message: "pickup code is too long", Err: ErrTokenMalformed}
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(text) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'O':
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		b.WriteRune(r)
	}
	canon := b.String()
	if len(canon) != TokenLength {
		return "", nil, &microdrop.Error{Code: microdrop.EINVALID, Message: fmt.Sprintf("a pickup code has %d characters", TokenLength), Err: ErrTokenMalformed}
	}
	raw, err := crockford.DecodeString(canon)
	if err != nil || len(raw) != tokenIDBytes+tokenMACBytes {
		return "", nil, &microdrop.Error{Code: microdrop.EINVALID, Message: "pickup code has characters that are not allowed", Err: ErrTokenMalformed}
	}
	// Base32 of 10 bytes is exactly 16 characters, so every canonical string
	// round-trips; re-encoding guards against a decoder that accepts more.
	if !bytes.Equal([]byte(crockford.EncodeToString(raw)), []byte(canon)) {
		return "", nil, &microdrop.Error{Code: microdrop.EINVALID, Message: "pickup code is not canonical", Err: ErrTokenMalformed}
	}
	return canon, raw, nil
}

// QRPNG renders text as a QR code PNG of size pixels.
func QRPNG(text string, size int) ([]byte, error) {
	return qrcode.Encode(text, qrcode.Medium, size)
}

// QRSVG renders text as a QR code SVG (crisp at any size, for overlays).
func QRSVG(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", err
	}
	bm := q.Bitmap()
	n := len(bm)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range bm {
		for x, on := range row {
			if on {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}
