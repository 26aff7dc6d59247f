package overlay_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/microdrop/microdrop/overlay"
)

// Generated keys are stored and reused, so OBS keeps working across
// restarts; a configured key always wins; a corrupt file is an error.
func TestLoadKeysSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	k1, gen, err := overlay.LoadKeys(dir, map[string]string{"cfg": "configured-key-123"}, []string{"local", "cfg"})
	if err != nil || len(gen) != 1 || gen[0] != "local" || k1["cfg"] != "configured-key-123" || len(k1["local"]) < overlay.MinKeyLength {
		t.Fatalf("first start: keys %v generated %v err %v", k1, gen, err)
	}
	k2, gen, err := overlay.LoadKeys(dir, nil, []string{"local"})
	if err != nil || len(gen) != 0 || k2["local"] != k1["local"] {
		t.Fatalf("restart: keys %v generated %v err %v; want the stored key %q", k2, gen, err, k1["local"])
	}
	if err := os.WriteFile(filepath.Join(dir, overlay.KeysFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := overlay.LoadKeys(dir, nil, []string{"local"}); err == nil {
		t.Fatal("a corrupt keys file must be reported, not silently replaced")
	}
}
