package highlight

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
)

// ErrBundleInvalid means a bundle failed verification: a file's hash, a
// missing or extra file, or a signature.
var ErrBundleInvalid = errors.New("bundle does not verify")

// BundleReport is what VerifyBundle checked.
type BundleReport struct {
	Files int
	// Images is how many image signatures verified; Stills how many
	// evidence stills are in the manifest.
	Images int
	// ManifestKey is the key id that signed manifest.json ("" when the
	// bundle is unsigned).
	ManifestKey string
	// KeysFromBundle: no key was pinned, so the signatures were checked
	// against the keys the manifest itself lists (proves the bundle is
	// whole, not who made it).
	KeysFromBundle bool
	// Problems lists every failure, one line each.
	Problems []string
}

// VerifyBundle checks a bundle (a zip opened as fs.FS, or a directory
// with os.DirFS) offline: every file the manifest lists has its SHA-256
// and size, no other file is there, every image signature verifies, and
// manifest.sig signs manifest.json. trusted pins the keys; nil takes the
// manifest's own keys (and says so). Any failure is ErrBundleInvalid, with
// each problem in the report.
func VerifyBundle(fsys fs.FS, trusted PublicKeys) (BundleReport, error) {
	var r BundleReport
	raw, err := fs.ReadFile(fsys, "manifest.json")
	if err != nil {
		return r, fmt.Errorf("%w: no manifest.json: %w", ErrBundleInvalid, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return r, fmt.Errorf("%w: manifest.json is not a manifest: %w", ErrBundleInvalid, err)
	}
	keys := trusted
	if keys == nil {
		keys, r.KeysFromBundle = m.Keys, true
	}
	bad := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }

	if len(m.Files) == 0 {
		bad("manifest.json lists no files")
	}
	hashes := map[string]string{}
	for _, f := range m.Files {
		if !fs.ValidPath(f.Path) {
			bad("%s: not a path inside the bundle", f.Path)
			continue
		}
		sum, n, err := hashFile(fsys, f.Path)
		switch {
		case err != nil:
			bad("%s: listed in the manifest, missing from the bundle", f.Path)
		case sum != f.SHA256 || n != f.Bytes:
			bad("%s: SHA-256 %s (%d bytes), the manifest says %s (%d bytes)", f.Path, sum, n, f.SHA256, f.Bytes)
		default:
			r.Files++
		}
		hashes[f.Path] = f.SHA256
	}
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if _, ok := hashes[p]; !ok && p != "manifest.json" && p != ManifestSigFile {
			bad("%s: in the bundle but not in the manifest", p)
		}
		return nil
	})
	for _, im := range m.Images {
		switch {
		case hashes[im.File] != im.SHA256:
			bad("%s: the image's hash %s is not the file's listed hash", im.File, im.SHA256)
		case im.KeyID == "":
			bad("%s: image is not signed", im.File)
		default:
			data, err := fs.ReadFile(fsys, im.File)
			if err != nil || !VerifyImage(keys, data, im.KeyID, im.Signature) {
				bad("%s: image signature by key %s does not verify", im.File, im.KeyID)
				continue
			}
			r.Images++
		}
	}
	for _, s := range m.Stills {
		if hashes[s.File] != s.SHA256 {
			bad("%s: the still's hash %s is not the file's listed hash", s.File, s.SHA256)
		}
	}
	if sb, err := fs.ReadFile(fsys, ManifestSigFile); err == nil {
		var sig ManifestSignature
		if err := json.Unmarshal(sb, &sig); err != nil || !keys.Verify(sig.KeyID, manifestStatement(raw), sig.Signature) {
			bad("manifest.json: signature by key %s does not verify", sig.KeyID)
		} else {
			r.ManifestKey = sig.KeyID
		}
	} else if trusted != nil {
		bad("manifest.json: not signed, and a key was pinned")
	}
	sort.Strings(r.Problems)
	if len(r.Problems) > 0 {
		return r, fmt.Errorf("%w: %d problems", ErrBundleInvalid, len(r.Problems))
	}
	return r, nil
}

func hashFile(fsys fs.FS, name string) (string, int64, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
