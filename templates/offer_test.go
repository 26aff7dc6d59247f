package templates

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current templates")

// sampleOffer is the drop of the golden pages and its two clips.
func sampleOffer(kind string) OfferView {
	sell := int64(41_250)
	v := OfferView{
		Kind: kind,
		Drop: OfferDrop{ID: "d_7Kq2", Title: "Black hoodie <limited>", SKU: "HOODIE-BLK-L", LimitedRunID: "run-2026-07",
			Creator: "creator42", Currency: "EUR", LivePriceMinor: 4500, PostStreamPriceMinor: 5400, Stock: 50, Wins: 50,
			SellThroughMS: &sell},
		Clips: []OfferClip{{Reason: "open", DurationMS: 60_040}, {Reason: "clip", Label: "chat goes wild", DurationMS: 12_000}},
		Link: "https://shop.example/c/creator42/HOODIE-BLK-L?drop=d_7Kq2&run=run-2026-07&utm_campaign=" + kind +
			"&utm_medium=post_stream&utm_source=microdrop",
	}
	return v
}

// TestOfferGolden renders each offer template and compares
// it with testdata/<kind>.golden (go test ./templates -run Golden -update
// rewrites them). It also checks what every offer must show.
func TestOfferGolden(t *testing.T) {
	for _, kind := range OfferKinds {
		t.Run(kind, func(t *testing.T) {
			var buf bytes.Buffer
			if err := OfferPage(sampleOffer(kind)).Render(context.Background(), &buf); err != nil {
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
