package highlight

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/url"
	"strings"
	"time"
)

// ManifestVersion is the bundle manifest's schema version. Bump it, and
// manifest.schema.json's $id and const, on any change a reader would notice.
//
// Version 2: a clip lists the moments it covers (moments), and links name
// the server whose claim page offers link to (public_url, was shop_url).
//
// Version 3: a clip may carry a vertical 9:16 version (vertical) and a
// poster frame (poster); product images and avatars (images) with their
// Ed25519 signatures; a drop names its product image (image); keys holds
// the public keys signatures verify with; manifest.sig signs the manifest.
const ManifestVersion = 3

// ManifestSchema is the JSON Schema (draft 2020-12) of manifest.json.
//
//go:embed manifest.schema.json
var ManifestSchema []byte

// Manifest is manifest.json of an export bundle: what was sold, how it went,
// the clips, and the SHA-256 of every other file in the bundle.
type Manifest struct {
	SchemaVersion int               `json:"schema_version"`
	Generator     string            `json:"generator"`
	CreatedAt     time.Time         `json:"created_at"`
	Session       ManifestSession   `json:"session"`
	Drops         []ManifestDrop    `json:"drops"`
	Highlights    []ManifestClip    `json:"highlights"`
	Offers        []ManifestOffer   `json:"offers"`
	Files         []ManifestFile    `json:"files"`
	Privacy       ManifestPrivacy   `json:"privacy"`
	Links         ManifestLinkRules `json:"links"`
	Images        []ManifestImage   `json:"images"`
	// Stills are the evidence of each drop's moment on air.
	Stills []ManifestStill `json:"stills,omitempty"`
	// Creators is the revenue of the bundle's drops per creator (a drop's
	// creator, else its channel) and currency.
	Creators []ManifestCreator `json:"creators,omitempty"`
	// Keys are the Ed25519 public keys (by key id) that the bundle's
	// signatures verify with. A verifier should pin the key id it trusts:
	// whoever rewrites a bundle can also replace these.
	Keys PublicKeys `json:"keys,omitempty"`
}

// Image roles in a bundle.
const (
	ImageProduct = "product"
	ImageAvatar  = "avatar"
)

// ManifestImage is a validated image in images/ and microdrop's signature
// of its SHA-256 (see SignImage).
type ManifestImage struct {
	Role      string `json:"role"`
	DropID    string `json:"drop_id,omitempty"`
	Creator   string `json:"creator,omitempty"`
	File      string `json:"file"`
	SHA256    string `json:"sha256"`
	Type      string `json:"type"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	KeyID     string `json:"key_id,omitempty"`
	Signature []byte `json:"signature,omitempty"`
}

// ManifestStill is the evidence that a drop was on air: a still of the
// programme at the first keyframe after the open, and the cues the
// detector heard in the programme, with when.
type ManifestStill struct {
	DropID string `json:"drop_id"`
	// File is stills/<drop>.jpg; SHA256 its hash, as recorded at the
	// moment (the store keeps it since), equal to the file's.
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	// Type is image/jpeg (decoded by ffmpeg) or video/mp4 (the keyframe
	// itself, one frame, when the server had no ffmpeg).
	Type   string `json:"type"`
	Stream string `json:"stream"`
	// OpenedAt is the drop's open; FrameAt when the keyframe reached
	// microdrop and StreamTimeMS its place on the session timeline.
	OpenedAt     time.Time `json:"opened_at"`
	FrameAt      time.Time `json:"frame_at"`
	StreamTimeMS int64     `json:"stream_time_ms"`
	// Cues are the CueAired events of the drop: the code heard on air,
	// when, and the measured open-to-air delay.
	Cues []ManifestCue `json:"cues"`
}

// ManifestCue is one aired cue.
type ManifestCue struct {
	Stream  string    `json:"stream"`
	Code    uint32    `json:"code"`
	HeardAt time.Time `json:"heard_at"`
	DelayMS int64     `json:"delay_ms"`
	SNRDB   float64   `json:"snr_db"`
}

// ManifestSigFile is the detached signature of manifest.json in a bundle.
const ManifestSigFile = "manifest.sig"

// ManifestSignature is manifest.sig: an Ed25519 signature of the exact
// bytes of manifest.json (see manifestStatement).
type ManifestSignature struct {
	KeyID     string `json:"key_id"`
	Signature []byte `json:"signature"`
}

// manifestStatement is what a manifest signature covers: a domain line,
// then the manifest's SHA-256.
func manifestStatement(manifest []byte) []byte {
	sum := sha256.Sum256(manifest)
	return []byte("microdrop bundle manifest v1\n" + hex.EncodeToString(sum[:]) + "\n")
}

// ManifestSession is the stream session the bundle covers.
type ManifestSession struct {
	ID        string    `json:"id"`
	Path      string    `json:"path"`
	Channel   string    `json:"channel"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// ManifestDrop is one drop and its results.
type ManifestDrop struct {
	ID           string `json:"id"`
	Channel      string `json:"channel"`
	SKU          string `json:"sku"`
	Title        string `json:"title"`
	LimitedRunID string `json:"limited_run_id"`
	CreatorID    string `json:"creator_id"`
	Currency     string `json:"currency"`
	// LivePriceMinor is what viewers paid during the stream;
	// PostStreamPriceMinor what the offers ask afterwards.
	LivePriceMinor       int64     `json:"live_price_minor"`
	PostStreamPriceMinor int64     `json:"post_stream_price_minor"`
	Policy               string    `json:"policy"`
	State                string    `json:"state"`
	CloseReason          string    `json:"close_reason,omitempty"`
	OpensAt              time.Time `json:"opens_at"`
	ClosesAt             time.Time `json:"closes_at"`
	ClosedAt             time.Time `json:"closed_at,omitzero"`
	GraceMS              int64     `json:"grace_ms"`
	Stock                int       `json:"stock"`
	Wins                 int       `json:"wins"`
	Remaining            int       `json:"remaining"`
	Entries              int       `json:"entries"`
	Redeemed             int       `json:"redeemed"`
	// SellThroughMS is open to sold out; null when it did not sell out.
	SellThroughMS *int64 `json:"sell_through_ms"`
	// ClaimsPerMinute is entries per minute of the window (open to close
	// plus grace, or to the sell-out).
	ClaimsPerMinute float64 `json:"claims_per_minute"`
	// CueToAirMS is the median measured delay from open to the cue heard on
	// air; null when no CueAired was recorded.
	CueToAirMS *int64 `json:"cue_to_air_ms"`
	CuesAired  int    `json:"cues_aired"`
	SeedHash   string `json:"seed_hash"`
	Seed       string `json:"seed,omitempty"`
	// Image is the SHA-256 of the drop's product image in images/.
	Image string `json:"image,omitempty"`
	// PaidHolds are the units paid for, PaidMinor what was paid for them
	// and RefundedMinor what was paid back since.
	PaidHolds     int   `json:"paid_holds,omitempty"`
	PaidMinor     int64 `json:"paid_minor,omitempty"`
	RefundedMinor int64 `json:"refunded_minor,omitempty"`
}

// ManifestCreator is a creator's revenue from the bundle's drops: paid
// less refunded (before the platform's fee).
type ManifestCreator struct {
	CreatorID     string `json:"creator_id"`
	Currency      string `json:"currency"`
	PaidMinor     int64  `json:"paid_minor"`
	RefundedMinor int64  `json:"refunded_minor"`
	RevenueMinor  int64  `json:"revenue_minor"`
}

// ManifestClip is one highlight in the bundle.
type ManifestClip struct {
	ID           string    `json:"id"`
	DropID       string    `json:"drop_id,omitempty"`
	Reason       string    `json:"reason"`
	Label        string    `json:"label,omitempty"`
	At           time.Time `json:"at"`
	StreamTimeMS int64     `json:"stream_time_ms"`
	// ClipStartMS is the clip's first frame on the session timeline.
	ClipStartMS int64 `json:"clip_start_ms"`
	DurationMS  int64 `json:"duration_ms"`
	// TrimInMS and TrimOutMS are the editor's cut within the captured clip
	// (the file starts at the keyframe at or before TrimInMS).
	TrimInMS      int64  `json:"trim_in_ms"`
	TrimOutMS     int64  `json:"trim_out_ms"`
	File          string `json:"file"`
	TwitchClipURL string `json:"twitch_clip_url,omitempty"`
	// Moments are every drop moment the clip covers, oldest first; the
	// first is the clip's own (reason, drop_id, label, at).
	Moments []ManifestMoment `json:"moments"`
	// Poster is the clip's poster frame (posters/<id>.jpg), when ffmpeg
	// made one.
	Poster string `json:"poster,omitempty"`
	// Vertical is the clip's 9:16 version, when one was asked for.
	Vertical *ManifestVertical `json:"vertical,omitempty"`
}

// ManifestVertical is a 9:16 clip rendered from a highlight for Shorts,
// Reels and TikTok.
type ManifestVertical struct {
	File       string `json:"file"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	DurationMS int64  `json:"duration_ms"`
	// CropX is where the 9:16 window sat across the source (0 left, 1
	// right); Overlay what is burned in ("qr" or "bio") and Link the
	// claim link the QR carries.
	CropX   float64 `json:"crop_x"`
	Overlay string  `json:"overlay"`
	Link    string  `json:"link,omitempty"`
}

// ManifestMoment is one drop moment in a clip.
type ManifestMoment struct {
	Reason       string    `json:"reason"`
	DropID       string    `json:"drop_id,omitempty"`
	Label        string    `json:"label,omitempty"`
	At           time.Time `json:"at"`
	StreamTimeMS int64     `json:"stream_time_ms"`
}

// ManifestOffer is one rendered offer page.
type ManifestOffer struct {
	DropID string `json:"drop_id"`
	Kind   string `json:"kind"`
	File   string `json:"file"`
	URL    string `json:"url"`
}

// ManifestFile is one file of the bundle with its hash.
type ManifestFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// ManifestPrivacy says how viewers appear in claims.csv.
type ManifestPrivacy struct {
	UserIDs string `json:"user_ids"`
}

// ManifestLinkRules says where offer links point: the drop's claim page
// on the microdrop server, PublicURL/c/{drop_id}.
type ManifestLinkRules struct {
	PublicURL string `json:"public_url"`
}

// ShopLink is the buy link into a creator's own shop: the shop URL with
// the drop, SKU and run added as query parameters (it keeps its own).
func ShopLink(shop, kind string, d ManifestDrop) string {
	u, err := url.Parse(shop)
	if err != nil {
		return shop
	}
	q := u.Query()
	q.Set("drop", d.ID)
	q.Set("sku", d.SKU)
	if d.LimitedRunID != "" {
		q.Set("run", d.LimitedRunID)
	}
	q.Set("utm_source", "microdrop")
	q.Set("utm_medium", "post_stream")
	q.Set("utm_campaign", kind)
	u.RawQuery = q.Encode()
	return u.String()
}

// OfferLink is the buy link of an offer: the drop's claim page on the
// microdrop server (the route overlay serves, /c/{drop}), so the link
// works wherever the server is reachable. The creator and the limited run
// ride along as query parameters for attribution, with UTM parameters
// for analytics; the claim page ignores them.
func OfferLink(publicURL, kind string, d ManifestDrop) string {
	creator := d.CreatorID
	if creator == "" {
		creator = d.Channel
	}
	base := strings.TrimRight(publicURL, "/")
	q := url.Values{}
	q.Set("creator", creator)
	if d.LimitedRunID != "" {
		q.Set("run", d.LimitedRunID)
	}
	q.Set("utm_source", "microdrop")
	q.Set("utm_medium", "post_stream")
	q.Set("utm_campaign", kind)
	return base + "/c/" + url.PathEscape(d.ID) + "?" + q.Encode()
}
