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
		Clips: []OfferClip{{Moments: []ClipMoment{{Reason: "open"}}, DurationMS: 60_040,
			Src: "../clips/h0123456789abcdef.mp4", Poster: "../posters/h0123456789abcdef.jpg", Vertical: "../vertical/h0123456789abcdef.mp4"},
			{Moments: []ClipMoment{{Reason: "clip", Label: "chat goes wild"}}, DurationMS: 12_000, Src: "../clips/h1123456789abcdef.mp4"}},
		Creator:    OfferCreator{Name: "Creator 42", Color: "#ff3d7f", Avatar: "../images/avatar.png"},
		Image:      "../images/" + strings.Repeat("1e", 32) + ".jpg",
		ShareImage: "https://drops.example/images/" + strings.Repeat("1e", 32),
		Remaining:  12,
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

// TestOfferFreeDropAndNoRun: a free drop shows "Free", with no price
// struck through (it showed "USD 0.00" struck beside "USD 0.00"), and a
// drop without a limited-run id shows no limited run (it showed
// "limited run ." with nothing in it).
func TestOfferFreeDropAndNoRun(t *testing.T) {
	for _, kind := range OfferKinds {
		v := sampleOffer(kind)
		v.Drop.LivePriceMinor, v.Drop.PostStreamPriceMinor, v.Drop.Currency = 0, 0, "USD"
		v.Drop.LimitedRunID = ""
		var buf bytes.Buffer
		if err := OfferPage(v).Render(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		if !strings.Contains(page, `<span id="post-price">Free</span>`) {
			t.Errorf("%s: a free drop does not say Free", kind)
		}
		for _, bad := range []string{"<s ", "USD 0.00", "limited run", `id="run"`} {
			if strings.Contains(page, bad) {
				t.Errorf("%s: a free drop without a run id shows %q:\n%s", kind, bad, page)
			}
		}
	}
}

// TestOfferPostable: the page carries what makes a posted link worth
// clicking: the product image and the clip with its poster, the creator's
// name, colour and avatar, how much of the run is left, and Open Graph and
// Twitter card tags with the absolute image URL. A colour that is not
// #rrggbb never reaches the stylesheet.
func TestOfferPostable(t *testing.T) {
	v := sampleOffer(OfferRestock)
	var buf bytes.Buffer
	if err := OfferPage(v).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		`<img class="product" id="product-image" src="../images/` + strings.Repeat("1e", 32) + `.jpg"`,
		`poster="../posters/h0123456789abcdef.jpg" src="../clips/h0123456789abcdef.mp4"`,
		`<img class="avatar" id="avatar" src="../images/avatar.png"`, `<span id="creator-name">Creator 42</span>`,
		`:root{--accent:#ff3d7f}`, `<p id="left">12 of 50 left</p>`, `<progress id="stock-bar" max="50" value="12">`,
		`<meta property="og:image" content="https://drops.example/images/` + strings.Repeat("1e", 32) + `">`,
		`<meta name="twitter:card" content="summary_large_image">`, `<meta property="og:title" content="Black hoodie &lt;limited&gt; · Last-chance restock">`,
		`EUR 54.00 after the stream (EUR 45.00 live). 12 of 50 left.`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("offer page lacks %s", want)
		}
	}
	v.Creator.Color = "red;}body{display:none"
	v.ShareImage = ""
	buf.Reset()
	if err := OfferPage(v).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	page = buf.String()
	if strings.Contains(page, "display:none") || !strings.Contains(page, ":root{--accent:"+defaultAccent+"}") {
		t.Errorf("a bad colour reached the stylesheet")
	}
	if strings.Contains(page, "og:image") || !strings.Contains(page, `content="summary"`) {
		t.Errorf("a page without a share image claims one")
	}
}

// TestEditorHeaderShowsTrimAndMoments: a saved trim shows in the clip's
// header (it showed only in the form's inputs), and a clip covering two
// moments names both.
func TestEditorHeaderShowsTrimAndMoments(t *testing.T) {
	v := EditorView{LoggedIn: true, Session: &EditorSession{ID: "live-20260704T180000Z", Channel: "c", Path: "live"},
		Clips: []EditorClip{{ID: "h0123456789abcdef", Reason: "open", Ready: true, State: "ready", Duration: "62.7",
			In: "1.5", Out: "4.0", Trimmed: true,
			Moments: []ClipMoment{{Reason: "open"}, {Reason: "sold_out"}}}}}
	var buf bytes.Buffer
	if err := EditorPage(v).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	h2 := page[strings.Index(page, "<h2>"):strings.Index(page, "</h2>")]
	for _, want := range []string{"trimmed to 1.5–4.0 s of 62.7 s", "The drop opens + Sold out"} {
		if !strings.Contains(h2, want) {
			t.Errorf("the clip's header lacks %q: %s", want, h2)
		}
	}
}
