package templates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current templates")

func sampleManifest() Manifest {
	sell := int64(41_250)
	cue := int64(2_340)
	t0 := time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)
	return Manifest{
		SchemaVersion: ManifestVersion, Generator: "microdrop", CreatedAt: t0.Add(3 * time.Hour),
		Session: ManifestSession{ID: "live-20260704T180000Z", Path: "live", Channel: "ninjacat", StartedAt: t0, EndedAt: t0.Add(2 * time.Hour)},
		Drops: []ManifestDrop{{
			ID: "d_7Kq2", Channel: "ninjacat", SKU: "HOODIE-BLK-L", Title: "Black hoodie <limited>", LimitedRunID: "run-2026-07",
			CreatorID: "creator42", Currency: "EUR", LivePriceMinor: 4500, PostStreamPriceMinor: 5400, Policy: "bucketed",
			State: "sold_out", OpensAt: t0.Add(30 * time.Minute), ClosesAt: t0.Add(32 * time.Minute), ClosedAt: t0.Add(30*time.Minute + 41250*time.Millisecond),
			GraceMS: 5000, Stock: 50, Wins: 50, Remaining: 0, Entries: 812, SellThroughMS: &sell, ClaimsPerMinute: 1181.09,
			CueToAirMS: &cue, CuesAired: 1, SeedHash: strings.Repeat("ab", 32),
		}},
		Highlights: []ManifestClip{
			{ID: "h0123456789abcdef", DropID: "d_7Kq2", Reason: "open", At: t0.Add(30 * time.Minute), StreamTimeMS: 1_800_000,
				ClipStartMS: 1_779_960, DurationMS: 60_040, TrimOutMS: 60_040, File: "clips/h0123456789abcdef.mp4"},
			{ID: "h1123456789abcdef", DropID: "d_7Kq2", Reason: "clip", Label: "chat goes wild", At: t0.Add(31 * time.Minute),
				StreamTimeMS: 1_860_000, ClipStartMS: 1_845_000, DurationMS: 12_000, TrimInMS: 5_000, TrimOutMS: 17_000,
				File: "clips/h1123456789abcdef.mp4"},
		},
		Offers:  []ManifestOffer{},
		Files:   []ManifestFile{{Path: "claims.csv", SHA256: strings.Repeat("0f", 32), Bytes: 1234}},
		Privacy: ManifestPrivacy{UserIDs: "hashed"},
		Links:   ManifestLinkRules{ShopURL: "https://shop.example"},
	}
}

// TestOfferGolden renders each offer template from a manifest and compares
// it with testdata/<kind>.golden (go test ./templates -run Golden -update
// rewrites them). It also checks what every offer must show.
func TestOfferGolden(t *testing.T) {
	m := sampleManifest()
	for _, kind := range OfferKinds {
		t.Run(kind, func(t *testing.T) {
			var buf bytes.Buffer
			if err := OfferPage(NewOfferView(m, kind, m.Drops[0])).Render(context.Background(), &buf); err != nil {
				t.Fatal(err)
			}
			page := buf.String()
			for _, want := range []string{
				`<span class="sku" id="sku">HOODIE-BLK-L</span>`,
				`<span class="run" id="run">run-2026-07</span>`,
				`<s id="live-price">EUR 45.00</s>`,
				`<span id="post-price">EUR 54.00</span>`,
				`href="https://shop.example/c/creator42/HOODIE-BLK-L?`,
				"Black hoodie &lt;limited&gt;",
			} {
				if !strings.Contains(page, want) {
					t.Errorf("%s lacks %s", kind, want)
				}
			}
			golden := filepath.Join("testdata", kind+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s differs from %s (run with -update if the change is intended)\n--- got ---\n%s", kind, golden, page)
			}
		})
	}
}

func TestOfferLinkCarriesCreatorInPath(t *testing.T) {
	d := ManifestDrop{ID: "d1", Channel: "chan", SKU: "S/1", LimitedRunID: "r 1"}
	got := OfferLink("https://shop.example/", OfferTeaser, d)
	want := "https://shop.example/c/chan/S%2F1?drop=d1&run=r+1&utm_campaign=highlight-reel-teaser&utm_medium=post_stream&utm_source=microdrop"
	if got != want {
		t.Errorf("link without creator id:\n got %s\nwant %s", got, want)
	}
}

// TestManifestSchema checks the committed schema against a good manifest
// and catches each kind of mistake the validator claims to catch.
func TestManifestSchema(t *testing.T) {
	good, err := json.Marshal(sampleManifest())
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateManifest(good); err != nil {
		t.Fatalf("a good manifest is refused: %v", err)
	}
	for name, mutate := range map[string]func(map[string]any){
		"missing field":      func(m map[string]any) { delete(m, "files") },
		"wrong version":      func(m map[string]any) { m["schema_version"] = 2 },
		"wrong type":         func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["stock"] = "50" },
		"float for integer":  func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["wins"] = 1.5 },
		"negative":           func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["remaining"] = -1 },
		"bad hash":           func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["sha256"] = "xyz" },
		"traversal in path":  func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["path"] = "../etc/passwd" },
		"unknown reason":     func(m map[string]any) { m["highlights"].([]any)[0].(map[string]any)["reason"] = "boring" },
		"extra property":     func(m map[string]any) { m["user_names"] = []any{"alice"} },
		"null where integer": func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["stock"] = nil },
	} {
		var generic map[string]any
		if err := json.Unmarshal(good, &generic); err != nil {
			t.Fatal(err)
		}
		mutate(generic)
		bad, _ := json.Marshal(generic)
		if err := ValidateManifest(bad); !errors.Is(err, ErrManifestInvalid) {
			t.Errorf("%s: %v, want ErrManifestInvalid", name, err)
		}
	}
}

func TestFormatPrice(t *testing.T) {
	for _, c := range []struct {
		minor int64
		cur   string
		want  string
	}{{4500, "EUR", "EUR 45.00"}, {5, "USD", "USD 0.05"}, {1200, "JPY", "JPY 1200"}, {-250, "USD", "USD -2.50"}} {
		if got := FormatPrice(c.minor, c.cur); got != c.want {
			t.Errorf("FormatPrice(%d, %s) = %s, want %s", c.minor, c.cur, got, c.want)
		}
	}
}
