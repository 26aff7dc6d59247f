package highlight

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"time"

	_ "golang.org/x/image/webp" // registers WebP with image.Decode
)

// Image limits: a product shot or avatar, never a poster-sized print.
const (
	MaxImageBytes = 10 << 20
	MaxImageSide  = 8192
	// MaxImagePixels bounds the decoded size (width × height × 4 bytes):
	// a small file can claim huge dimensions (a decompression bomb).
	MaxImagePixels = 40_000_000
)

// ErrBadImage means bytes that are not an accepted image: not JPEG, PNG or
// WebP, too large, or undecodable.
var ErrBadImage = errors.New("invalid image")

// Image is a validated image as microdrop stores and serves it: decoded and
// re-encoded (so EXIF, GPS and any other metadata are gone), named by the
// SHA-256 of the stored bytes.
type Image struct {
	SHA256 string `json:"sha256"`
	// Type is image/jpeg or image/png (WebP is stored as PNG: there is no
	// WebP encoder in the standard library, and a lossless PNG of the
	// decoded pixels keeps what was uploaded).
	Type   string `json:"type"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Bytes  int    `json:"bytes"`
	Data   []byte `json:"-"`
}

// Ext is the file extension of the stored image.
func (im Image) Ext() string {
	if im.Type == "image/jpeg" {
		return ".jpg"
	}
	return ".png"
}

// CleanImage validates b (JPEG, PNG or WebP within the limits) and
// re-encodes it without metadata. Anything else is ErrBadImage with a
// reason a person can act on.
func CleanImage(b []byte) (Image, error) {
	if len(b) == 0 {
		return Image{}, fmt.Errorf("%w: the upload is empty", ErrBadImage)
	}
	if len(b) > MaxImageBytes {
		return Image{}, fmt.Errorf("%w: %d bytes is over the %d MB limit", ErrBadImage, len(b), MaxImageBytes>>20)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return Image{}, fmt.Errorf("%w: not a JPEG, PNG or WebP image", ErrBadImage)
	}
	switch format {
	case "jpeg", "png", "webp":
	default:
		return Image{}, fmt.Errorf("%w: %s images are not accepted (JPEG, PNG or WebP)", ErrBadImage, format)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxImageSide || cfg.Height > MaxImageSide || cfg.Width*cfg.Height > MaxImagePixels {
		return Image{}, fmt.Errorf("%w: %d×%d is outside 1..%d pixels a side (%d megapixels at most)",
			ErrBadImage, cfg.Width, cfg.Height, MaxImageSide, MaxImagePixels/1_000_000)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return Image{}, fmt.Errorf("%w: the %s data is damaged", ErrBadImage, format)
	}
	var out bytes.Buffer
	im := Image{Width: cfg.Width, Height: cfg.Height}
	if format == "jpeg" {
		im.Type = "image/jpeg"
		err = jpeg.Encode(&out, img, &jpeg.Options{Quality: 90})
	} else {
		im.Type = "image/png"
		err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, img)
	}
	if err != nil {
		return Image{}, fmt.Errorf("re-encode image: %w", err)
	}
	im.Data = out.Bytes()
	im.Bytes = len(im.Data)
	sum := sha256.Sum256(im.Data)
	im.SHA256 = hex.EncodeToString(sum[:])
	return im, nil
}

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// CheckImageHash refuses anything but 64 lowercase hex digits, so a hash
// taken from a URL can name a file.
func CheckImageHash(h string) error {
	if !sha256Pattern.MatchString(h) {
		return fmt.Errorf("%w: %q is not a SHA-256 hex digest", ErrBadID, h)
	}
	return nil
}

// Signer signs the bytes microdrop vouches for (images, bundle manifests).
// The receipt key ring in claims will satisfy it; until then cmd/microdrop
// gives an Ed25519 key from the data dir (KeySigner).
type Signer interface {
	// Sign returns the id of the key that signed and the signature.
	Sign(b []byte) (keyID string, sig []byte)
}

// Verifier checks signatures offline from public keys alone.
type Verifier interface {
	Verify(keyID string, b, sig []byte) bool
}

// KeySigner signs with one Ed25519 key; its id is the first 16 hex digits
// of the SHA-256 of the public key.
type KeySigner struct {
	id   string
	priv ed25519.PrivateKey
}

var _ Signer = (*KeySigner)(nil)

// NewKeySigner wraps an Ed25519 private key.
func NewKeySigner(priv ed25519.PrivateKey) (*KeySigner, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("image signing key: not an Ed25519 private key")
	}
	return &KeySigner{id: KeyID(priv.Public().(ed25519.PublicKey)), priv: priv}, nil
}

// KeyID names a public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign signs b.
func (k *KeySigner) Sign(b []byte) (string, []byte) { return k.id, ed25519.Sign(k.priv, b) }

// Public is the verifying key.
func (k *KeySigner) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// PublicKeys verifies against a set of Ed25519 public keys by id.
type PublicKeys map[string]ed25519.PublicKey

// Verify reports whether sig is keyID's signature of b.
func (p PublicKeys) Verify(keyID string, b, sig []byte) bool {
	k, ok := p[keyID]
	return ok && len(k) == ed25519.PublicKeySize && ed25519.Verify(k, b, sig)
}

// imageStatement is what an image signature covers: the domain, so an
// image signature can never be replayed as another kind of statement, and
// the hash of the stored bytes.
func imageStatement(sha string) []byte { return []byte("microdrop image v1\n" + sha + "\n") }

// SignImage signs an image's hash.
func SignImage(s Signer, sha string) (keyID string, sig []byte) { return s.Sign(imageStatement(sha)) }

// VerifyImage checks an image signature against the bytes themselves.
func VerifyImage(v Verifier, data []byte, keyID string, sig []byte) bool {
	sum := sha256.Sum256(data)
	return v.Verify(keyID, imageStatement(hex.EncodeToString(sum[:])), sig)
}

// ErrNoImage means no stored image has that hash.
var ErrNoImage = errors.New("no such image")

// ImageRecord is a stored image: its metadata and microdrop's signature
// of its hash.
type ImageRecord struct {
	SHA256    string    `json:"sha256"`
	Type      string    `json:"type"`
	Width     int       `json:"width"`
	Height    int       `json:"height"`
	Bytes     int       `json:"bytes"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
	CreatedAt time.Time `json:"created_at"`
}

// Ext is the stored file's extension.
func (r ImageRecord) Ext() string { return Image{Type: r.Type}.Ext() }

// Images keeps validated images on disk, content-addressed
// (<dir>/<sha256>.jpg|.png), their records and signatures in the store.
type Images struct {
	Dir    string
	Store  Store
	Signer Signer
	Now    func() time.Time
}

// Put validates, strips and stores an upload. Bad bytes are ErrBadImage
// and nothing is written.
func (x *Images) Put(ctx context.Context, b []byte) (ImageRecord, error) {
	im, err := CleanImage(b)
	if err != nil {
		return ImageRecord{}, err
	}
	keyID, sig := SignImage(x.Signer, im.SHA256)
	now := time.Now
	if x.Now != nil {
		now = x.Now
	}
	rec := ImageRecord{SHA256: im.SHA256, Type: im.Type, Width: im.Width, Height: im.Height, Bytes: im.Bytes,
		KeyID: keyID, Signature: sig, CreatedAt: now().UTC()}
	if prev, err := x.Store.Image(ctx, im.SHA256); err == nil {
		return prev, nil // the same bytes: already stored and signed
	}
	if err := os.MkdirAll(x.Dir, 0o755); err != nil {
		return ImageRecord{}, err
	}
	final := filepath.Join(x.Dir, im.SHA256+im.Ext())
	tmp, err := os.CreateTemp(x.Dir, ".upload-*")
	if err != nil {
		return ImageRecord{}, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(im.Data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		return ImageRecord{}, fmt.Errorf("store image: %w", err)
	}
	if err := x.Store.SaveImage(ctx, rec); err != nil {
		return ImageRecord{}, err
	}
	return rec, nil
}

// Read returns a stored image's bytes, checked against its hash (a file
// changed on disk is an error, never served).
func (x *Images) Read(ctx context.Context, sha string) (ImageRecord, []byte, error) {
	rec, err := x.Store.Image(ctx, sha)
	if err != nil {
		return rec, nil, err
	}
	b, err := os.ReadFile(filepath.Join(x.Dir, rec.SHA256+rec.Ext()))
	if err != nil {
		return rec, nil, fmt.Errorf("%w: file of %s: %w", ErrNoImage, sha, err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != rec.SHA256 {
		return rec, nil, fmt.Errorf("image %s: the file on disk no longer matches its hash", sha)
	}
	return rec, b, nil
}
