package templates

import (
	"fmt"
	"strconv"
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
	// Remaining units offered post-stream (the restock page).
	Remaining int
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
