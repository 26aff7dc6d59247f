package highlight

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Still is the evidence that a drop was on air: the programme's first
// keyframe after the open, as a JPEG (decoded by ffmpeg) or, without
// ffmpeg, as a one-frame MP4 that any player decodes, named by its SHA-256
// and recorded with it at the moment.
type Still struct {
	DropID    string `json:"drop_id"`
	SessionID string `json:"session_id"`
	Path      string `json:"path"`
	// Type is image/jpeg or video/mp4.
	Type   string `json:"type"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	// OpenedAt is the drop's open; StreamTime the keyframe's place on the
	// session timeline and ReceivedAt when it reached microdrop.
	OpenedAt   time.Time     `json:"opened_at"`
	StreamTime time.Duration `json:"stream_time"`
	ReceivedAt time.Time     `json:"received_at"`
}

// Ext is the still file's extension.
func (s Still) Ext() string {
	if s.Type == "image/jpeg" {
		return ".jpg"
	}
	return ".mp4"
}

// File is the still's name under the highlights directory: content
// addressed, so no id from outside ever names a file.
func (s Still) File() string { return filepath.Join("stills", s.SHA256+s.Ext()) }

// stillDecoder turns a one-frame MP4 into a JPEG (the Verticalizer, when
// ffmpeg is there).
type stillDecoder interface {
	Still(ctx context.Context, src string, at time.Duration) ([]byte, error)
}

type pendingStill struct {
	dropID string
	buf    *pathBuffer
	at     time.Time
}

// writeStill writes the keyframe u of b as the drop's still and records it.
func (c *Capturer) writeStill(ctx context.Context, p pendingStill, u accessUnit) error {
	var mp4 bytes.Buffer
	if _, err := writeClipMP4(&mp4, []accessUnit{u}, 0); err != nil {
		return err
	}
	data, typ := mp4.Bytes(), "video/mp4"
	if c.stills != nil {
		tmp, err := os.CreateTemp("", "microdrop-still-*.mp4")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		_, err = tmp.Write(mp4.Bytes())
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		jpg, err := c.stills.Still(ctx, tmp.Name(), 0)
		if err != nil {
			return fmt.Errorf("decode still: %w", err)
		}
		data, typ = jpg, "image/jpeg"
	}
	sum := sha256.Sum256(data)
	s := Still{DropID: p.dropID, SessionID: p.buf.session.ID, Path: p.buf.path, Type: typ, SHA256: hex.EncodeToString(sum[:]),
		Bytes: int64(len(data)), OpenedAt: p.at, StreamTime: u.dts, ReceivedAt: u.recv}
	dir := filepath.Join(c.cfg.Dir, "stills")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".still-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(c.cfg.Dir, s.File()))
	}
	if err != nil {
		return fmt.Errorf("write still: %w", err)
	}
	return c.store.SaveStill(ctx, s)
}
