package highlight_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// manifestSchema compiles the committed schema with a maintained
// validator, formats asserted (date-time included).
func manifestSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(highlight.ManifestSchema))
	if err != nil {
		t.Fatalf("manifest.schema.json is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const loc = "manifest.schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		t.Fatalf("manifest.schema.json does not compile: %v", err)
	}
	return sch
}

// checkManifest fails the test unless raw satisfies the schema.
func checkManifest(t testing.TB, raw []byte) {
	t.Helper()
	if err := validateManifest(manifestSchema(t), raw); err != nil {
		t.Fatalf("manifest does not match its schema: %v\n%s", err, raw)
	}
}

func validateManifest(sch *jsonschema.Schema, raw []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func sampleManifest() highlight.Manifest {
	sell := int64(41_250)
	cue := int64(2_340)
	t0 := time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)
	return highlight.Manifest{
		SchemaVersion: highlight.ManifestVersion, Generator: "microdrop", CreatedAt: t0.Add(3 * time.Hour),
		Session: highlight.ManifestSession{ID: "live-20260704T180000Z", Path: "live", Channel: "ninjacat", StartedAt: t0, EndedAt: t0.Add(2 * time.Hour)},
		Drops: []highlight.ManifestDrop{{
			ID: "d_7Kq2", Channel: "ninjacat", SKU: "HOODIE-BLK-L", Title: "Black hoodie <limited>", LimitedRunID: "run-2026-07",
			CreatorID: "creator42", Currency: "EUR", LivePriceMinor: 4500, PostStreamPriceMinor: 5400, Policy: "bucketed",
			State: "sold_out", OpensAt: t0.Add(30 * time.Minute), ClosesAt: t0.Add(32 * time.Minute), ClosedAt: t0.Add(30*time.Minute + 41250*time.Millisecond),
			GraceMS: 5000, Stock: 50, Wins: 50, Remaining: 0, Entries: 812, SellThroughMS: &sell, ClaimsPerMinute: 1181.09,
			CueToAirMS: &cue, CuesAired: 1, SeedHash: strings.Repeat("ab", 32),
		}},
		Highlights: []highlight.ManifestClip{
			{ID: "h0123456789abcdef", DropID: "d_7Kq2", Reason: "open", At: t0.Add(30 * time.Minute), StreamTimeMS: 1_800_000,
				ClipStartMS: 1_779_960, DurationMS: 62_740, TrimOutMS: 62_740, File: "clips/h0123456789abcdef.mp4",
				Moments: []highlight.ManifestMoment{{Reason: "open", DropID: "d_7Kq2", At: t0.Add(30 * time.Minute), StreamTimeMS: 1_800_000},
					{Reason: "sold_out", DropID: "d_7Kq2", At: t0.Add(30*time.Minute + 2700*time.Millisecond), StreamTimeMS: 1_802_700}}},
			{ID: "h1123456789abcdef", DropID: "d_7Kq2", Reason: "clip", Label: "chat goes wild", At: t0.Add(31 * time.Minute),
				StreamTimeMS: 1_860_000, ClipStartMS: 1_845_000, DurationMS: 12_000, TrimInMS: 5_000, TrimOutMS: 17_000,
				File:    "clips/h1123456789abcdef.mp4",
				Moments: []highlight.ManifestMoment{{Reason: "clip", DropID: "d_7Kq2", Label: "chat goes wild", At: t0.Add(31 * time.Minute), StreamTimeMS: 1_860_000}}},
		},
		Offers:  []highlight.ManifestOffer{},
		Files:   []highlight.ManifestFile{{Path: "claims.csv", SHA256: strings.Repeat("0f", 32), Bytes: 1234}},
		Privacy: highlight.ManifestPrivacy{UserIDs: "hashed"},
		Links:   highlight.ManifestLinkRules{PublicURL: "https://drops.example"},
		Images: []highlight.ManifestImage{{Role: highlight.ImageProduct, DropID: "d_7Kq2", File: "images/" + strings.Repeat("1e", 32) + ".jpg",
			SHA256: strings.Repeat("1e", 32), Type: "image/jpeg", Width: 800, Height: 800, KeyID: "0123456789abcdef", Signature: make([]byte, 64)}},
		Keys: highlight.PublicKeys{"0123456789abcdef": make([]byte, 32)},
	}
}

// TestManifestSchema checks the committed schema against a good manifest
// and that it catches each kind of mistake a bundle reader would trip on.
func TestManifestSchema(t *testing.T) {
	sch := manifestSchema(t)
	good, err := json.Marshal(sampleManifest())
	if err != nil {
		t.Fatal(err)
	}
	if err := validateManifest(sch, good); err != nil {
		t.Fatalf("a good manifest is refused: %v", err)
	}
	for name, mutate := range map[string]func(map[string]any){
		"missing field":      func(m map[string]any) { delete(m, "files") },
		"wrong version":      func(m map[string]any) { m["schema_version"] = highlight.ManifestVersion - 1 },
		"wrong type":         func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["stock"] = "50" },
		"float for integer":  func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["wins"] = 1.5 },
		"negative":           func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["remaining"] = -1 },
		"bad hash":           func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["sha256"] = "xyz" },
		"traversal in path":  func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["path"] = "../etc/passwd" },
		"unknown reason":     func(m map[string]any) { m["highlights"].([]any)[0].(map[string]any)["reason"] = "boring" },
		"extra property":     func(m map[string]any) { m["user_names"] = []any{"alice"} },
		"null where integer": func(m map[string]any) { m["drops"].([]any)[0].(map[string]any)["stock"] = nil },
		"not a date-time":    func(m map[string]any) { m["created_at"] = "2026-07-04T25:61:00Z" },
		"clip without moments": func(m map[string]any) {
			m["highlights"].([]any)[0].(map[string]any)["moments"] = []any{}
		},
		"unknown moment": func(m map[string]any) {
			m["highlights"].([]any)[1].(map[string]any)["moments"].([]any)[0].(map[string]any)["reason"] = "boring"
		},
		"relative link": func(m map[string]any) { m["links"].(map[string]any)["public_url"] = "/c" },
	} {
		var generic map[string]any
		if err := json.Unmarshal(good, &generic); err != nil {
			t.Fatal(err)
		}
		mutate(generic)
		bad, _ := json.Marshal(generic)
		var verr *jsonschema.ValidationError
		if err := validateManifest(sch, bad); !errors.As(err, &verr) {
			t.Errorf("%s: %v, want a schema validation error", name, err)
		}
	}
}

// TestOfferLinkIsTheClaimPage: offer links go to the claim page route
// the server serves (/c/{drop}) under the public URL; before, they named
// /c/{creator}/{sku}, which no route serves. The creator (the channel when
// the drop names none) and the run ride along; an empty run is left out.
func TestOfferLinkIsTheClaimPage(t *testing.T) {
	d := highlight.ManifestDrop{ID: "d1", Channel: "chan", SKU: "S/1", LimitedRunID: "r 1"}
	got := highlight.OfferLink("https://drops.example/", "highlight-reel-teaser", d)
	want := "https://drops.example/c/d1?creator=chan&run=r+1&utm_campaign=highlight-reel-teaser&utm_medium=post_stream&utm_source=microdrop"
	if got != want {
		t.Errorf("link without creator id:\n got %s\nwant %s", got, want)
	}
	d.CreatorID, d.LimitedRunID = "creator42", ""
	got = highlight.OfferLink("http://127.0.0.1:9090", "post-stream-bundle", d)
	want = "http://127.0.0.1:9090/c/d1?creator=creator42&utm_campaign=post-stream-bundle&utm_medium=post_stream&utm_source=microdrop"
	if got != want {
		t.Errorf("link without run:\n got %s\nwant %s", got, want)
	}
}
