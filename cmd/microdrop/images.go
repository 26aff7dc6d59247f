package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// imageSigningKeyFile holds the seed of the Ed25519 key that signs product
// images and bundle manifests, created on first start. The receipt key
// ring (claims) will take this job over; until then the key lives here.
const imageSigningKeyFile = "image-signing-key"

// imageSigner loads (or creates) the signing key in the data dir and writes
// its public half beside it (image-signing-key.pub, base64), the file
// `microdrop verify --key` pins.
func imageSigner(data string) (*highlight.KeySigner, highlight.PublicKeys, error) {
	secret, _, err := readOrCreateSecret(filepath.Join(data, imageSigningKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("image signing key: %w", err)
	}
	seed := sha256.Sum256([]byte("microdrop image signing key v1\n" + secret))
	s, err := highlight.NewKeySigner(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		return nil, nil, err
	}
	pub := s.Public()
	if err := os.WriteFile(filepath.Join(data, imageSigningKeyFile+".pub"), []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return nil, nil, fmt.Errorf("image signing key: %w", err)
	}
	return s, highlight.PublicKeys{highlight.KeyID(pub): pub}, nil
}

// creatorsOf copies the config's creators into the export's words.
func creatorsOf(c Config) map[string]highlight.Creator {
	out := make(map[string]highlight.Creator, len(c.Creators))
	for id, cr := range c.Creators {
		out[id] = highlight.Creator{Name: cr.Name, Color: cr.Color, Avatar: cr.Avatar, ShopURL: cr.ShopURL}
	}
	return out
}

// dropExists asks the ledger whether a drop id is known.
func dropExists(l interface {
	Drop(ctx context.Context, id string) (*claims.Drop, error)
}) func(ctx context.Context, id string) (bool, error) {
	return func(ctx context.Context, id string) (bool, error) {
		_, err := l.Drop(ctx, id)
		if microdrop.ErrorCode(err) == microdrop.ENOTFOUND {
			return false, nil
		}
		return err == nil, err
	}
}
