package claims

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A receipt proves a purchase without naming the buyer. Its text is
//
//	MDR1.<payload>.<signature>
//
// where payload is the base64url (no padding) of the receipt's compact
// JSON and signature the base64url of the Ed25519 signature over
// "MDR1." + payload, by the key the payload's "kid" names. The published
// keys (GET /.well-known/microdrop-receipt-keys) verify it offline. The
// holder is a keyed hash of the platform user id, different per creator,
// so receipts of two creators cannot be joined and none carries a name
// or an email.
type Receipt struct {
	KeyID        string `json:"kid"`
	HoldID       string `json:"hold"`
	DropID       string `json:"drop"`
	SKU          string `json:"sku"`
	LimitedRunID string `json:"run,omitempty"`
	Unit         int    `json:"unit"`
	Amount       int64  `json:"amount"`
	Currency     string `json:"cur"`
	PaidAt       int64  `json:"at"` // Unix seconds
	Holder       string `json:"holder"`
	Method       string `json:"method"`
}

const receiptPrefix = "MDR1."

// Receipt errors.
var (
	ErrReceiptMalformed = errors.New("receipt malformed")
	ErrReceiptForged    = errors.New("receipt signature invalid")
	ErrReceiptKey       = errors.New("receipt signed by an unknown key")
)

// ReceiptKey is one public receipt key.
type ReceiptKey struct {
	ID        string `json:"kid"`
	PublicKey string `json:"public_key"` // base64url, 32 bytes
}

// ReceiptKeys is the published key set.
type ReceiptKeys struct {
	Keys []ReceiptKey `json:"keys"`
}

// ReceiptSigner signs receipts with the first of its keys and verifies
// with all of them, so a key is rotated by putting a new one first and
// keeping the old until its receipts no longer matter.
type ReceiptSigner struct {
	keys   []ed25519.PrivateKey
	ids    []string
	holder []byte
}

// NewReceiptSigner takes 32-byte Ed25519 seeds, newest first, and the
// secret the holder ids are keyed with.
func NewReceiptSigner(holderSecret []byte, seeds ...[]byte) (*ReceiptSigner, error) {
	if len(seeds) == 0 || len(holderSecret) < 16 {
		return nil, errors.New("receipts: need at least one key seed and a holder secret of 16+ bytes")
	}
	s := &ReceiptSigner{holder: append([]byte(nil), holderSecret...)}
	for _, seed := range seeds {
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("receipts: a key seed is %d bytes, not %d", len(seed), ed25519.SeedSize)
		}
		k := ed25519.NewKeyFromSeed(seed)
		s.keys = append(s.keys, k)
		s.ids = append(s.ids, keyID(k.Public().(ed25519.PublicKey)))
	}
	return s, nil
}

func keyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:6])
}

// Keys is the public key set to publish.
func (s *ReceiptSigner) Keys() ReceiptKeys {
	var ks ReceiptKeys
	for i, k := range s.keys {
		ks.Keys = append(ks.Keys, ReceiptKey{ID: s.ids[i], PublicKey: base64.RawURLEncoding.EncodeToString(k.Public().(ed25519.PublicKey))})
	}
	return ks
}

// HolderID is the pseudonymous holder of a creator's receipts: HMAC of the
// platform user id under a key derived per creator.
func (s *ReceiptSigner) HolderID(creatorID, userID string) string {
	m := hmac.New(sha256.New, s.holder)
	m.Write([]byte("creator\x00" + creatorID))
	perCreator := m.Sum(nil)
	m = hmac.New(sha256.New, perCreator)
	m.Write([]byte(userID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Sign returns the receipt's text, signed with the newest key.
func (s *ReceiptSigner) Sign(r Receipt) (string, error) {
	r.KeyID = s.ids[0]
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	signed := receiptPrefix + base64.RawURLEncoding.EncodeToString(b)
	return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.keys[0], []byte(signed))), nil
}

// Verify checks a receipt against this signer's own keys.
func (s *ReceiptSigner) Verify(text string) (Receipt, error) {
	return VerifyReceipt(text, s.Keys())
}

// receiptMaxLen bounds the text a verifier looks at.
const receiptMaxLen = 2048

// ParseReceipt splits a receipt's text into its receipt, the signed part
// and the signature, without checking the signature.
func ParseReceipt(text string) (Receipt, []byte, []byte, error) {
	var r Receipt
	text = strings.TrimSpace(text)
	if len(text) > receiptMaxLen || !strings.HasPrefix(text, receiptPrefix) {
		return r, nil, nil, ErrReceiptMalformed
	}
	rest := text[len(receiptPrefix):]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return r, nil, nil, ErrReceiptMalformed
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:dot])
	if err != nil {
		return r, nil, nil, ErrReceiptMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(rest[dot+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return r, nil, nil, ErrReceiptMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() {
		return Receipt{}, nil, nil, ErrReceiptMalformed
	}
	if r.KeyID == "" || r.HoldID == "" || r.DropID == "" || r.Amount <= 0 || !currencyPattern.MatchString(r.Currency) || r.Holder == "" {
		return Receipt{}, nil, nil, ErrReceiptMalformed
	}
	return r, []byte(receiptPrefix + rest[:dot]), sig, nil
}

// VerifyReceipt checks a receipt offline against published keys.
func VerifyReceipt(text string, keys ReceiptKeys) (Receipt, error) {
	r, signed, sig, err := ParseReceipt(text)
	if err != nil {
		return Receipt{}, err
	}
	for _, k := range keys.Keys {
		if k.ID != r.KeyID {
			continue
		}
		pub, err := base64.RawURLEncoding.DecodeString(k.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return Receipt{}, fmt.Errorf("key %s: %w", k.ID, ErrReceiptKey)
		}
		if !ed25519.Verify(pub, signed, sig) {
			return Receipt{}, ErrReceiptForged
		}
		return r, nil
	}
	return Receipt{}, ErrReceiptKey
}

// Time is when the receipt's hold was paid.
func (r Receipt) Time() time.Time { return time.Unix(r.PaidAt, 0).UTC() }
