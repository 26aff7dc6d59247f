package templates

import (
	"fmt"
	"strconv"
	"strings"
)

// Offer kinds.
const (
	OfferBundle     = "post-stream-bundle"
	OfferRestock    = "last-chance-restock"
	OfferTeaser     = "highlight-reel-teaser"
	offerKindsCount = 3
)

// OfferKinds lists every offer template, in bundle order.
var OfferKinds = [offerKindsCount]string{OfferBundle, OfferRestock, OfferTeaser}

// OfferView is what an offer page shows. The export (package
// ingest/highlight) fills it from its manifest.
type OfferView struct {
	Kind  string
	Drop  OfferDrop
	Clips []OfferClip
	// Link is the creator-attributed buy link.
	Link string
	// Remaining units of the limited run, offered post-stream.
	Remaining int
	// Creator brands the page.
	Creator OfferCreator
	// Image is the product image: a path relative to the page (in a
	// bundle, ../images/<sha256>.jpg) or an absolute URL; "" for none.
	Image string
	// ShareImage is the absolute URL link previews show (Open Graph,
	// Twitter card): the product image as the server serves it.
	ShareImage string
	// PageURL is the page's own absolute URL, where it has one.
	PageURL string
	// ToShop: Link goes to the creator's shop rather than microdrop's
	// claim page.
	ToShop bool
}

// OfferCreator is how the creator appears: name, accent colour (#rrggbb)
// and avatar (relative path or URL; "" for initials).
type OfferCreator struct {
	Name   string
	Color  string
	Avatar string
}

// OfferDrop is the drop an offer sells, with how it went live.
type OfferDrop struct {
	ID           string
	Title        string
	SKU          string
	LimitedRunID string
	// Creator is the name the page credits (the creator id, else the channel).
	Creator              string
	Currency             string
	LivePriceMinor       int64
	PostStreamPriceMinor int64
	Stock                int
	Wins                 int
	// SellThroughMS is open to sold out; nil when it did not sell out.
	SellThroughMS *int64
}

// OfferClip is one of the drop's highlight clips.
type OfferClip struct {
	// Moments are the moments the clip covers, oldest first.
	Moments    []ClipMoment
	DurationMS int64
	// Src is the 16:9 clip, Poster its first-second frame (JPEG) and
	// Vertical its 9:16 version, as paths relative to the page; "" when
	// absent.
	Src, Poster, Vertical string
}

// ClipMoment is one moment a clip covers: why it was captured and the
// label chat gave it.
type ClipMoment struct {
	Reason string
	Label  string
}

// FormatPrice renders minor units: 2500 USD is "USD 25.00"; zero-decimal
// currencies (JPY, KRW) have no fraction.
func FormatPrice(minor int64, currency string) string {
	switch currency {
	case "JPY", "KRW", "VND", "CLP", "ISK":
		return currency + " " + strconv.FormatInt(minor, 10)
	}
	neg := ""
	if minor < 0 {
		neg, minor = "-", -minor
	}
	return fmt.Sprintf("%s %s%d.%02d", currency, neg, minor/100, minor%100)
}

// offerPrice is a price as an offer shows it: "Free" for nothing.
func offerPrice(minor int64, currency string) string {
	if minor == 0 {
		return "Free"
	}
	return FormatPrice(minor, currency)
}

// FormatMS renders milliseconds as seconds with one decimal.
func FormatMS(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s"
}

func offerTitle(kind string) string {
	switch kind {
	case OfferBundle:
		return "Post-stream bundle"
	case OfferRestock:
		return "Last-chance restock"
	case OfferTeaser:
		return "Highlight reel"
	}
	return "Offer"
}

func sellThrough(d OfferDrop) string {
	if d.SellThroughMS == nil {
		return ""
	}
	return FormatMS(*d.SellThroughMS)
}

func reasonText(r string) string {
	switch r {
	case "open":
		return "The drop opens"
	case "sold_out":
		return "Sold out"
	case "close":
		return "The drop closes"
	case "clip":
		return "Clipped by chat"
	case "surge":
		return "Claim rush"
	}
	return r
}

func liveResult(d OfferDrop) string {
	s := strconv.Itoa(d.Wins) + " of " + strconv.Itoa(d.Stock) + " claimed"
	if t := sellThrough(d); t != "" {
		s += ", sold out in " + t
	}
	return s
}

func momentTitle(m ClipMoment) string {
	if m.Label == "" {
		return reasonText(m.Reason)
	}
	return reasonText(m.Reason) + ": " + m.Label
}

// momentsTitle names every moment of a clip: "The drop opens + Sold out".
func momentsTitle(ms []ClipMoment) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += " + "
		}
		s += momentTitle(m)
	}
	return s
}

func leftText(n int) string { return strconv.Itoa(n) + " left from the live drop." }

// stockLine says how much of the limited run is left.
func stockLine(v OfferView) string {
	switch {
	case v.Drop.Stock <= 0:
		return ""
	case v.Remaining <= 0:
		return "Sold out live: all " + strconv.Itoa(v.Drop.Stock) + " claimed"
	}
	return strconv.Itoa(v.Remaining) + " of " + strconv.Itoa(v.Drop.Stock) + " left"
}

const defaultAccent = "#7c3aed"

// accentCSS sets the page's accent; anything but #rrggbb falls back to
// the default, so config text never reaches the stylesheet unchecked.
func accentCSS(color string) string {
	if !hexColor(color) {
		color = defaultAccent
	}
	return ":root{--accent:" + color + "}"
}

func hexColor(s string) bool {
	if len(s) != 7 || s[0] != '#' {
		return false
	}
	for _, c := range s[1:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// initials stand in for a missing avatar.
func initials(name string) string {
	for _, r := range name {
		if r != ' ' && r != '@' && r != '_' {
			return strings.ToUpper(string(r))
		}
	}
	return "?"
}

func creatorName(v OfferView) string {
	if v.Creator.Name != "" {
		return v.Creator.Name
	}
	return v.Drop.Creator
}

// offerDescription is the one line a link preview shows.
func offerDescription(v OfferView) string {
	d := v.Drop
	s := d.Title + " from the stream of " + creatorName(v) + ": "
	if d.LivePriceMinor == 0 && d.PostStreamPriceMinor == 0 {
		s += "free"
	} else {
		s += offerPrice(d.PostStreamPriceMinor, d.Currency) + " after the stream (" + offerPrice(d.LivePriceMinor, d.Currency) + " live)"
	}
	if l := stockLine(v); l != "" {
		s += ". " + l
	}
	return s + "."
}

func buyText(v OfferView) string {
	switch {
	case v.Drop.LivePriceMinor == 0 && v.Drop.PostStreamPriceMinor == 0:
		return "Claim it"
	case v.ToShop:
		return "Buy in the shop · " + offerPrice(v.Drop.PostStreamPriceMinor, v.Drop.Currency)
	}
	return "Get it · " + offerPrice(v.Drop.PostStreamPriceMinor, v.Drop.Currency)
}

func twitterCard(v OfferView) string {
	if v.ShareImage != "" {
		return "summary_large_image"
	}
	return "summary"
}

// heroClip is the clip the page plays: the first with a file.
func heroClip(v OfferView) (OfferClip, bool) {
	for _, c := range v.Clips {
		if c.Src != "" {
			return c, true
		}
	}
	return OfferClip{}, false
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }
