package highlight_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// productImage draws a hoodie-ish picture: a gradient with a block, so a
// screenshot shows something and re-encoding has real pixels to keep.
func productImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(40 + 120*x/w), uint8(20 + 60*y/h), uint8(140 + 100*y/h), 255}
			if x > w/4 && x < 3*w/4 && y > h/5 && y < 4*h/5 {
				c = color.RGBA{24, 24, 28, 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

// exifMarker is metadata a phone camera would leave in a photo.
const exifMarker = "GPS 52.5200N 13.4050E secret-serial-0042"

// jpegWithEXIF is a JPEG carrying an EXIF (APP1) segment right after SOI.
func jpegWithEXIF(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, productImage(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	payload := append([]byte("Exif\x00\x00"), exifMarker...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{}, b[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, b[2:]...)
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testSigner(t testing.TB) *highlight.KeySigner {
	t.Helper()
	s, err := highlight.NewKeySigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCleanImage: a JPEG with EXIF comes back without it, still a JPEG of
// the same size; PNG stays PNG; anything else is ErrBadImage.
func TestCleanImage(t *testing.T) {
	raw := jpegWithEXIF(t, 320, 240)
	if !bytes.Contains(raw, []byte(exifMarker)) {
		t.Fatal("the test JPEG carries no EXIF")
	}
	im, err := highlight.CleanImage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if im.Type != "image/jpeg" || im.Width != 320 || im.Height != 240 || bytes.Contains(im.Data, []byte(exifMarker)) || bytes.Contains(im.Data, []byte("Exif")) {
		t.Errorf("cleaned JPEG: %s %dx%d, EXIF left: %v", im.Type, im.Width, im.Height, bytes.Contains(im.Data, []byte("Exif")))
	}
	if _, err := jpeg.Decode(bytes.NewReader(im.Data)); err != nil {
		t.Errorf("the cleaned JPEG does not decode: %v", err)
	}
	p, err := highlight.CleanImage(pngBytes(t, productImage(64, 48)))
	if err != nil || p.Type != "image/png" || p.Width != 64 || len(p.SHA256) != 64 {
		t.Errorf("PNG: %+v %v", p, err)
	}
	gif := []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")
	huge := pngBytes(t, image.NewGray(image.Rect(0, 0, highlight.MaxImageSide+1, 1)))
	for name, b := range map[string][]byte{
		"empty": nil, "text": []byte("<svg xmlns='http://www.w3.org/2000/svg'/>"), "gif": gif,
		"truncated jpeg": raw[:len(raw)/2], "too wide": huge, "too many bytes": make([]byte, highlight.MaxImageBytes+1),
	} {
		if _, err := highlight.CleanImage(b); !errors.Is(err, highlight.ErrBadImage) {
			t.Errorf("%s: %v, want ErrBadImage", name, err)
		}
	}
}

// TestImagesPutRead: a stored image is named by the hash of its stored
// bytes, signed, read back checked; a file changed on disk is refused.
func TestImagesPutRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := highlight.OpenSQLite(ctx, filepath.Join(dir, "highlights.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	signer := testSigner(t)
	imgs := &highlight.Images{Dir: filepath.Join(dir, "images"), Store: store, Signer: signer}
	rec, err := imgs.Put(ctx, jpegWithEXIF(t, 200, 200))
	if err != nil {
		t.Fatal(err)
	}
	again, err := imgs.Put(ctx, jpegWithEXIF(t, 200, 200))
	if err != nil || again.SHA256 != rec.SHA256 {
		t.Errorf("the same upload stored twice: %v %s vs %s", err, again.SHA256, rec.SHA256)
	}
	_, b, err := imgs.Read(ctx, rec.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	keys := highlight.PublicKeys{highlight.KeyID(signer.Public()): signer.Public()}
	if !highlight.VerifyImage(keys, b, rec.KeyID, rec.Signature) {
		t.Error("the stored image's signature does not verify")
	}
	if highlight.VerifyImage(keys, append(b, 0), rec.KeyID, rec.Signature) {
		t.Error("a changed image verifies")
	}
	if err := os.WriteFile(filepath.Join(dir, "images", rec.SHA256+".jpg"), append(b, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := imgs.Read(ctx, rec.SHA256); err == nil {
		t.Error("a file changed on disk was read back")
	}
	if _, err := imgs.Put(ctx, []byte("not an image")); !errors.Is(err, highlight.ErrBadImage) {
		t.Errorf("bad upload: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "images"))
	if len(ents) != 1 {
		t.Errorf("images dir holds %d files after one good and one bad upload", len(ents))
	}
	if err := store.SetDropImage(ctx, "d1", "00"+rec.SHA256[2:]); !errors.Is(err, highlight.ErrNoImage) {
		t.Errorf("a drop linked to an unknown image: %v", err)
	}
}

// FuzzCleanImage: any bytes either come back as a JPEG or PNG that
// decodes again, within the limits, named by its own hash, or are
// ErrBadImage; nothing panics.
func FuzzCleanImage(f *testing.F) {
	f.Add(jpegWithEXIF(f, 16, 16))
	f.Add(pngBytes(f, productImage(8, 8)))
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	f.Add([]byte("RIFF\x1a\x00\x00\x00WEBPVP8 "))
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := highlight.CleanImage(b)
		if err != nil {
			if !errors.Is(err, highlight.ErrBadImage) {
				t.Fatalf("error outside ErrBadImage: %v", err)
			}
			return
		}
		if im.Width < 1 || im.Height < 1 || im.Width > highlight.MaxImageSide || im.Height > highlight.MaxImageSide {
			t.Fatalf("accepted a %dx%d image", im.Width, im.Height)
		}
		again, err := highlight.CleanImage(im.Data)
		if err != nil || again.Width != im.Width || again.Height != im.Height || again.Type != im.Type {
			t.Fatalf("a cleaned image does not clean again: %v", err)
		}
	})
}
