package overlay

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// KeysFile is where generated overlay keys are kept in the data directory,
// so an OBS browser source keeps working across restarts.
const KeysFile = "overlay-keys.json"

// LoadKeys returns an overlay key for every channel: the configured one, or
// one generated earlier and stored in dir, or a new one that is stored now.
// generated lists the channels whose key was created by this call.
func LoadKeys(dir string, configured map[string]string, channels []string) (keys map[string]string, generated []string, err error) {
	path := filepath.Join(dir, KeysFile)
	stored := map[string]string{}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &stored); err != nil {
			return nil, nil, fmt.Errorf("overlay keys %s: %w (fix or delete the file)", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("overlay keys: %w", err)
	}
	all := slices.Clone(channels)
	for ch := range configured {
		all = append(all, ch)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	keys = make(map[string]string, len(all))
	changed := false
	for _, ch := range all {
		switch {
		case configured[ch] != "":
			keys[ch] = configured[ch]
		case len(stored[ch]) >= MinKeyLength:
			keys[ch] = stored[ch]
		default:
			k, err := newKey()
			if err != nil {
				return nil, nil, err
			}
			stored[ch], keys[ch] = k, k
			generated = append(generated, ch)
			changed = true
		}
	}
	if changed {
		b, _ := json.MarshalIndent(stored, "", "  ")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
			return nil, nil, fmt.Errorf("store overlay keys: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, nil, fmt.Errorf("store overlay keys: %w", err)
		}
	}
	return keys, generated, nil
}

// newKey is 20 characters of lowercase base32: 100 random bits, safe in a URL.
func newKey() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	for i, b := range raw {
		raw[i] = alphabet[b&31]
	}
	return string(raw), nil
}
