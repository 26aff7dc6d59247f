package main

import (
	"archive/zip"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// runVerify checks an export bundle offline: every file's SHA-256 against
// the manifest, every image signature and the manifest's signature.
func runVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "the public key to trust (image-signing-key.pub from the server's data dir); "+
		"without it the keys listed in the bundle are used, which proves the bundle is whole, not who made it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: microdrop verify [--key image-signing-key.pub] bundle.zip|DIR")
	}
	var trusted highlight.PublicKeys
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("--key: %w", err)
		}
		pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("--key: %s does not hold a base64 Ed25519 public key", *keyFile)
		}
		trusted = highlight.PublicKeys{highlight.KeyID(pub): pub}
	}
	bundle, closeFn, err := openBundle(fs.Arg(0))
	if err != nil {
		return err
	}
	defer closeFn()
	rep, err := highlight.VerifyBundle(bundle, trusted)
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "FAIL", p)
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", fs.Arg(0), err)
	}
	signed := "unsigned manifest"
	if rep.ManifestKey != "" {
		signed = "manifest signed by key " + rep.ManifestKey
	}
	fmt.Fprintf(stdout, "ok: %d files match their SHA-256, %d image signatures verify, %s\n", rep.Files, rep.Images, signed)
	if rep.KeysFromBundle {
		fmt.Fprintln(stdout, "note: checked with the keys the bundle lists; pass --key image-signing-key.pub to pin the server's key")
	}
	return nil
}

// openBundle opens a bundle zip or an unpacked bundle directory.
func openBundle(path string) (fs.FS, func() error, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		return os.DirFS(path), func() error { return nil }, nil
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is neither a bundle zip nor a directory: %w", path, err)
	}
	return zr, zr.Close, nil
}
