package cue

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSpecJavaScriptMatchesEncode runs the reference JavaScript printed in SPEC.md under
// Node and checks it produces Encode's waveform, so the SPEC the overlay engineer copies
// from cannot drift from the Go encoder. Node is optional on developer machines.
func TestSpecJavaScriptMatchesEncode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is required in CI to check SPEC.md's JavaScript: apt-get install -y nodejs")
		}
		t.Skip("node not installed (apt-get install -y nodejs); SPEC.md's JavaScript not checked")
	}
	spec, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(spec), "```js\n")
	js, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("SPEC.md has no ```js block")
	}
	codes := []uint32{0x12345678, 0, 0xFFFFFFFF, 0x80000001}
	harness := js + `
const ctx = { createBuffer: (ch, n, fs) => { const d = new Float32Array(n); return { getChannelData: () => d }; } };
const out = [];
for (const code of ` + mustJSON(t, codes) + `) for (const p of ["audible", "ultrasonic"]) {
  out.push({ code, p, syms: cueSymbols(code), x: Array.from(cueBuffer(ctx, code, p).getChannelData(0)) });
}
process.stdout.write(JSON.stringify(out));
`
	cmd := exec.Command(node, "-")
	cmd.Stdin = strings.NewReader(harness)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got []struct {
		Code uint32
		P    Profile
		Syms []byte
		X    []float64
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*len(codes) {
		t.Fatalf("node returned %d renderings", len(got))
	}
	for _, g := range got {
		want, _ := Encode(g.Code, g.P)
		if wantSyms := append(append([]byte{}, preamble[:]...), FrameSymbols(g.Code)...); string(g.Syms) != string(wantSyms) {
			t.Errorf("%#x %s: JS symbols %v, Go %v", g.Code, g.P, g.Syms, wantSyms)
		}
		if len(g.X) != len(want) {
			t.Fatalf("%#x %s: JS rendered %d samples, Go %d", g.Code, g.P, len(g.X), len(want))
		}
		var worst float64
		for i := range want {
			worst = max(worst, math.Abs(g.X[i]-float64(want[i])))
		}
		if worst > 1e-6 {
			t.Errorf("%#x %s: JS and Go differ by up to %g", g.Code, g.P, worst)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
