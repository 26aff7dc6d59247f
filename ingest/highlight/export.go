package highlight

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop/templates"
)

// ErrNothingToExport means the selection holds no ready clip and the
// session no drop.
var ErrNothingToExport = errors.New("nothing to export")

// ErrBadSelection means a selected highlight is unknown, from another
// session or not ready.
var ErrBadSelection = errors.New("invalid selection")

// ExportDeps is what an Exporter needs.
type ExportDeps struct {
	Store Store
	Drops DropSource
	// Dir is the highlights directory clips were captured to.
	Dir string
	// Salt keys the hash of user ids in claims.csv. It never goes into a
	// bundle: with it, the small space of platform ids could be searched.
	Salt []byte
	// PublicURL is the microdrop server's address as viewers reach it
	// (https://drops.example): offer links go to its claim page,
	// PublicURL/c/{drop}.
	PublicURL string
	// MarkupPercent sets the post-stream price above the live price
	// (default 20: the live-only price is the better deal).
	MarkupPercent int
	// Vertical renders 9:16 clips; nil (no ffmpeg) leaves only the 16:9
	// remux, and asking for a vertical clip is ErrNoFFmpeg.
	Vertical *Verticalizer
	// Creators brand offer pages, by creator id (else channel).
	Creators map[string]Creator
	// Images holds product images (nil: bundles carry none).
	Images *Images
	// Signer signs manifest.json (manifest.sig); Keys are the public keys
	// its signatures and the images' verify with, copied into the
	// manifest so a bundle verifies offline. Nil: an unsigned bundle.
	Signer Signer
	Keys   PublicKeys
	Now    func() time.Time
}

// Creator is how a creator's offers look and where they sell.
type Creator struct {
	Name  string
	Color string
	// Avatar is an image file (validated and copied into the bundle) or
	// an http(s) URL.
	Avatar string
	// ShopURL, when set, is where buy links go instead of the claim page.
	ShopURL string
}

// Exporter writes a session's bundle.
type Exporter struct {
	d ExportDeps
}

// NewExporter checks deps.
func NewExporter(d ExportDeps) (*Exporter, error) {
	if d.Store == nil || d.Drops == nil || d.Dir == "" {
		return nil, errors.New("highlight export: store, drops and dir are required")
	}
	if len(d.Salt) < 16 {
		return nil, errors.New("highlight export: a salt of at least 16 bytes is required")
	}
	if d.PublicURL == "" {
		d.PublicURL = "http://localhost:8080"
	}
	if d.MarkupPercent == 0 {
		d.MarkupPercent = 20
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Exporter{d: d}, nil
}

// Progress is told how many steps of an export are done.
type Progress func(done, total int)

// Plan is what an export will write, checked before any byte is.
type Plan struct {
	Session Session
	Clips   []Highlight
	Drops   []Drop
	// Vertical names the clips that also get a 9:16 version (see
	// PlanVertical), Overlay what is burned into them.
	Vertical map[string]bool
	Overlay  string
}

// AllClips, as PlanVertical's ids, asks for a vertical version of every
// clip of the plan.
const AllClips = "all"

// PlanVertical asks for 9:16 versions of the clips ids name (AllClips:
// every clip of p) with overlay (OverlayQR or OverlayBio; "" is OverlayQR).
// An id not in the plan, an unknown overlay or a missing ffmpeg is an
// error and leaves p as it was.
func (x *Exporter) PlanVertical(p *Plan, ids []string, overlay string) error {
	if len(ids) == 0 {
		return nil
	}
	if overlay == "" {
		overlay = OverlayQR
	}
	if overlay != OverlayQR && overlay != OverlayBio {
		return fmt.Errorf("%w: overlay %q is neither %q nor %q", ErrBadSelection, overlay, OverlayQR, OverlayBio)
	}
	in := map[string]bool{}
	for _, h := range p.Clips {
		in[h.ID] = true
	}
	want := map[string]bool{}
	for _, id := range ids {
		switch {
		case id == AllClips:
			for id := range in {
				want[id] = true
			}
		case !in[id]:
			return fmt.Errorf("%w: %q is not a clip of this export", ErrBadSelection, id)
		default:
			want[id] = true
		}
	}
	if x.d.Vertical == nil {
		return fmt.Errorf("%w: this server has no ffmpeg, so it exports 16:9 clips only", ErrNoFFmpeg)
	}
	p.Vertical, p.Overlay = want, overlay
	return nil
}

// Plan checks the session and selection (empty: every ready clip) and
// finds the session's drops. Bad input returns an error and nothing else.
func (x *Exporter) Plan(ctx context.Context, sessionID string, selected []string) (Plan, error) {
	s, err := x.d.Store.Session(ctx, sessionID)
	if err != nil {
		return Plan{}, err
	}
	all, err := x.d.Store.Highlights(ctx, s.ID)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Session: s}
	if len(selected) == 0 {
		for _, h := range all {
			if h.State == HighlightReady {
				p.Clips = append(p.Clips, h)
			}
		}
	} else {
		byID := map[string]Highlight{}
		for _, h := range all {
			byID[h.ID] = h
		}
		seen := map[string]bool{}
		for _, id := range selected {
			if err := CheckHighlightID(id); err != nil {
				return Plan{}, fmt.Errorf("%w: %q is not a highlight id", ErrBadSelection, id)
			}
			h, ok := byID[id]
			switch {
			case !ok:
				return Plan{}, fmt.Errorf("%w: highlight %s is not in session %s", ErrBadSelection, id, s.ID)
			case h.State != HighlightReady:
				return Plan{}, fmt.Errorf("%w: highlight %s is %s", ErrBadSelection, id, h.State)
			case seen[id]:
				continue
			}
			seen[id] = true
			p.Clips = append(p.Clips, h)
		}
	}
	for _, h := range p.Clips {
		if _, err := x.clipPath(h); err != nil {
			return Plan{}, err
		}
	}
	p.Drops, err = x.sessionDrops(ctx, s, p.Clips)
	if err != nil {
		return Plan{}, err
	}
	if len(p.Clips) == 0 && len(p.Drops) == 0 {
		return Plan{}, fmt.Errorf("%w: session %s has no ready clip and no drop", ErrNothingToExport, s.ID)
	}
	return p, nil
}

// clipPath is built from checked ids, never from the stored file name.
func (x *Exporter) clipPath(h Highlight) (string, error) {
	if err := CheckSessionID(h.SessionID); err != nil {
		return "", err
	}
	if err := CheckHighlightID(h.ID); err != nil {
		return "", err
	}
	return filepath.Join(x.d.Dir, h.SessionID, h.ID+".mp4"), nil
}

func (x *Exporter) sessionDrops(ctx context.Context, s Session, clips []Highlight) ([]Drop, error) {
	ds, err := x.d.Drops.ChannelDrops(ctx, s.Channel, 500)
	if err != nil {
		return nil, fmt.Errorf("read drops: %w", err)
	}
	ref := map[string]bool{}
	for _, h := range clips {
		if h.DropID != "" {
			ref[h.DropID] = true
		}
	}
	end := s.EndedAt
	if end.IsZero() {
		end = x.d.Now()
	}
	var out []Drop
	for _, d := range ds {
		if ref[d.ID] || (d.OpensAt.Before(end) && !d.EndsAt().Before(s.StartedAt)) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OpensAt.Before(out[j].OpensAt) })
	return out, nil
}

// Export writes the bundle of a session to w as a zip: clips/<id>.mp4,
// claims.csv, offers/<drop>-<kind>.html, manifest.schema.json, and last
// manifest.json with the SHA-256 of every other file.
func (x *Exporter) Export(ctx context.Context, sessionID string, selected []string, w io.Writer, progress Progress) (Manifest, error) {
	p, err := x.Plan(ctx, sessionID, selected)
	if err != nil {
		return Manifest{}, err
	}
	return x.Write(ctx, p, w, progress)
}

// Steps is how many progress steps Write reports for p.
func (p Plan) Steps() int { return len(p.Clips) + len(p.Vertical) + len(p.Drops) + 2 }

// Write writes a planned bundle.
func (x *Exporter) Write(ctx context.Context, p Plan, w io.Writer, progress Progress) (Manifest, error) {
	if progress == nil {
		progress = func(int, int) {}
	}
	total, done := p.Steps(), 0
	step := func() { done++; progress(done, total) }
	progress(0, total)

	m := Manifest{
		SchemaVersion: ManifestVersion, Generator: "microdrop", CreatedAt: x.d.Now().UTC(),
		Session: ManifestSession{ID: p.Session.ID, Path: p.Session.Path, Channel: p.Session.Channel,
			StartedAt: p.Session.StartedAt.UTC(), EndedAt: p.Session.EndedAt.UTC()},
		Drops: []ManifestDrop{}, Highlights: []ManifestClip{}, Offers: []ManifestOffer{},
		Privacy: ManifestPrivacy{UserIDs: "claims.csv user_hash is HMAC-SHA256(export salt, platform user id), hex, first 32 digits; the salt stays with the exporter"},
		Links:   ManifestLinkRules{PublicURL: strings.TrimRight(x.d.PublicURL, "/")},
		Images:  []ManifestImage{},
	}
	if len(x.d.Keys) > 0 {
		m.Keys = PublicKeys{}
		for id, k := range x.d.Keys {
			m.Keys[id] = k
		}
	}
	if p.Session.EndedAt.IsZero() {
		m.Session.EndedAt = time.Time{}
	}
	zw := zip.NewWriter(w)
	add := func(name string, method uint16, fill func(io.Writer) error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: m.CreatedAt})
		if err != nil {
			return err
		}
		h := sha256.New()
		cw := &counter{}
		if err := fill(io.MultiWriter(fw, h, cw)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m.Files = append(m.Files, ManifestFile{Path: name, SHA256: hex.EncodeToString(h.Sum(nil)), Bytes: cw.n})
		return nil
	}

	for _, h := range p.Clips {
		name := "clips/" + h.ID + ".mp4"
		mc := ManifestClip{ID: h.ID, DropID: h.DropID, Reason: h.Reason, Label: h.Label, At: h.At.UTC(),
			StreamTimeMS: h.StreamTime.Milliseconds(), File: name, TwitchClipURL: h.TwitchClipURL,
			Moments: make([]ManifestMoment, 0, len(h.Moments))}
		for _, mo := range h.Moments {
			mc.Moments = append(mc.Moments, ManifestMoment{Reason: mo.Reason, DropID: mo.DropID, Label: mo.Label, At: mo.At.UTC(),
				StreamTimeMS: mo.At.Sub(p.Session.StartedAt).Milliseconds()})
		}
		err := add(name, zip.Store, func(w io.Writer) error {
			path, err := x.clipPath(h)
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if !h.Trimmed() {
				if _, err := io.Copy(w, f); err != nil {
					return err
				}
				mc.ClipStartMS, mc.DurationMS = h.Start.Milliseconds(), h.Duration.Milliseconds()
				mc.TrimOutMS = h.Duration.Milliseconds()
				return nil
			}
			in, out := h.Span()
			start, dur, err := TrimMP4(w, f, in, out)
			if err != nil {
				return err
			}
			mc.ClipStartMS, mc.DurationMS = (h.Start + start).Milliseconds(), dur.Milliseconds()
			mc.TrimInMS, mc.TrimOutMS = in.Milliseconds(), out.Milliseconds()
			return nil
		})
		if err != nil {
			return m, err
		}
		m.Highlights = append(m.Highlights, mc)
		step()
	}

	var rows [][]string
	for _, d := range p.Drops {
		es, err := x.d.Drops.Claims(ctx, d.ID)
		if err != nil {
			return m, fmt.Errorf("read entries of %s: %w", d.ID, err)
		}
		cues, err := x.d.Store.Cues(ctx, d.ID)
		if err != nil {
			return m, fmt.Errorf("read cues of %s: %w", d.ID, err)
		}
		m.Drops = append(m.Drops, x.dropResult(d, es, cues))
		for _, e := range es {
			rows = append(rows, []string{d.ID, strconv.FormatInt(e.Seq, 10), x.userHash(e.UserID), e.Outcome,
				strconv.Itoa(e.Unit), rfc(e.ArrivedAt), rfc(e.DecidedAt), rfc(e.Redeemed),
				d.CreatorID, d.LimitedRunID, strconv.FormatInt(e.PaidMinor, 10), strconv.FormatInt(e.RefundedMinor, 10)})
		}
	}
	m.Creators = creatorRevenue(m.Drops)
	if err := x.addImages(ctx, &m, add); err != nil {
		return m, err
	}
	if err := x.addStills(ctx, &m, add); err != nil {
		return m, err
	}
	for i, h := range p.Clips {
		if x.d.Vertical == nil {
			break
		}
		name, err := x.addPoster(ctx, h, add)
		if err != nil {
			return m, fmt.Errorf("poster of %s: %w", h.ID, err)
		}
		m.Highlights[i].Poster = name
	}
	for i, h := range p.Clips {
		if !p.Vertical[h.ID] {
			continue
		}
		mv, err := x.addVertical(ctx, p, h, m, add)
		if err != nil {
			return m, fmt.Errorf("vertical clip of %s: %w", h.ID, err)
		}
		m.Highlights[i].Vertical = mv
		step()
	}

	err := add("claims.csv", zip.Deflate, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"drop_id", "seq", "user_hash", "outcome", "unit", "arrived_at", "decided_at", "redeemed_at",
			"creator_id", "limited_run_id", "paid_minor", "refunded_minor"})
		_ = cw.WriteAll(rows)
		return cw.Error()
	})
	if err != nil {
		return m, err
	}
	step()

	for _, d := range m.Drops {
		for _, kind := range templates.OfferKinds {
			name := "offers/" + d.ID + "-" + kind + ".html"
			v := x.offerView(m, kind, d)
			if err := add(name, zip.Deflate, func(w io.Writer) error {
				return templates.OfferPage(v).Render(ctx, w)
			}); err != nil {
				return m, err
			}
			m.Offers = append(m.Offers, ManifestOffer{DropID: d.ID, Kind: kind, File: name, URL: v.Link})
		}
		step()
	}
	if err := add("manifest.schema.json", zip.Deflate, func(w io.Writer) error {
		_, err := w.Write(ManifestSchema)
		return err
	}); err != nil {
		return m, err
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return m, err
	}
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: "manifest.json", Method: zip.Deflate, Modified: m.CreatedAt})
	if err != nil {
		return m, err
	}
	if _, err := fw.Write(buf.Bytes()); err != nil {
		return m, err
	}
	if x.d.Signer != nil {
		keyID, sig := x.d.Signer.Sign(manifestStatement(buf.Bytes()))
		sb, err := json.MarshalIndent(ManifestSignature{KeyID: keyID, Signature: sig}, "", "  ")
		if err != nil {
			return m, err
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: ManifestSigFile, Method: zip.Deflate, Modified: m.CreatedAt})
		if err != nil {
			return m, err
		}
		if _, err := fw.Write(sb); err != nil {
			return m, err
		}
	}
	if err := zw.Close(); err != nil {
		return m, err
	}
	step()
	return m, nil
}

// addVertical renders the 9:16 version of h into a temporary file (ffmpeg
// needs a seekable output for faststart) and adds it as vertical/<id>.mp4.
func (x *Exporter) addVertical(ctx context.Context, p Plan, h Highlight, m Manifest,
	add func(string, uint16, func(io.Writer) error) error) (*ManifestVertical, error) {
	src, err := x.clipPath(h)
	if err != nil {
		return nil, err
	}
	in, out := h.Span()
	j := VerticalJob{Src: src, In: in, Out: out, CropX: h.CropX, Overlay: p.Overlay, Title: h.Label}
	if j.Title == "" {
		j.Title = momentWords(h.Reason)
	}
	for _, d := range m.Drops {
		if d.ID == h.DropID {
			j.Title = d.Title
			j.Price = offerPriceLine(d)
			j.Link = x.buyLink(m, OfferVertical, d)
		}
	}
	if j.Link == "" {
		// A clip of no drop has nothing to claim: say where the link is.
		j.Overlay = OverlayBio
	}
	tmp, err := os.CreateTemp("", "microdrop-vertical-*.mp4")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := x.d.Vertical.Render(ctx, j, h.Duration, tmp.Name()); err != nil {
		return nil, err
	}
	name := "vertical/" + h.ID + ".mp4"
	if err := add(name, zip.Store, func(w io.Writer) error {
		f, err := os.Open(tmp.Name())
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}); err != nil {
		return nil, err
	}
	return &ManifestVertical{File: name, Width: VerticalWidth, Height: VerticalHeight,
		DurationMS: j.Length(h.Duration).Milliseconds(), CropX: j.CropX, Overlay: j.Overlay, Link: j.Link}, nil
}

// OfferVertical is the UTM campaign of links burned into vertical clips.
const OfferVertical = "vertical-clip"

// buyLink is where an offer or a vertical clip sends a buyer: the
// creator's shop when it has one, else the drop's claim page here.
func (x *Exporter) buyLink(m Manifest, kind string, d ManifestDrop) string {
	creator := d.CreatorID
	if creator == "" {
		creator = d.Channel
	}
	if shop := x.d.Creators[creator].ShopURL; shop != "" {
		return ShopLink(shop, kind, d)
	}
	return OfferLink(m.Links.PublicURL, kind, d)
}

func offerPriceLine(d ManifestDrop) string {
	if d.PostStreamPriceMinor == 0 {
		return "Free"
	}
	return templates.FormatPrice(d.PostStreamPriceMinor, d.Currency)
}

func momentWords(reason string) string {
	switch reason {
	case ReasonOpen:
		return "The drop opens"
	case ReasonSoldOut:
		return "Sold out"
	case ReasonClose:
		return "The drop closes"
	case ReasonSurge:
		return "Claim rush"
	}
	return "Clipped live"
}

func (x *Exporter) dropResult(d Drop, es []Claim, cues []CueRecord) ManifestDrop {
	md := ManifestDrop{
		ID: d.ID, Channel: d.Channel, SKU: d.SKU, Title: d.Title, LimitedRunID: d.LimitedRunID, CreatorID: d.CreatorID,
		Currency: d.Currency, LivePriceMinor: d.PriceMinor,
		PostStreamPriceMinor: d.PriceMinor * int64(100+x.d.MarkupPercent) / 100,
		Policy:               d.Policy, State: d.State, CloseReason: d.CloseReason,
		OpensAt: d.OpensAt.UTC(), ClosesAt: d.ClosesAt.UTC(), ClosedAt: d.ClosedAt.UTC(), GraceMS: d.Grace.Milliseconds(),
		Stock: d.Stock, Remaining: d.Remaining, Entries: len(es), SeedHash: d.SeedHash, CuesAired: len(cues),
	}
	if d.ClosedAt.IsZero() {
		md.ClosedAt = time.Time{}
	}
	for _, e := range es {
		if e.PaidMinor > 0 {
			md.PaidHolds++
			md.PaidMinor += e.PaidMinor
			md.RefundedMinor += e.RefundedMinor
		}
	}
	if d.Final && len(d.Seed) > 0 {
		md.Seed = hex.EncodeToString(d.Seed)
	}
	var lastWin time.Time
	for _, e := range es {
		if e.Won {
			md.Wins++
			if e.DecidedAt.After(lastWin) {
				lastWin = e.DecidedAt
			}
		}
		if !e.Redeemed.IsZero() {
			md.Redeemed++
		}
	}
	end := d.EndsAt()
	if !d.ClosedAt.IsZero() && d.ClosedAt.Before(end) {
		end = d.ClosedAt
	}
	if d.SoldOut {
		at := d.ClosedAt
		if at.IsZero() {
			at = lastWin
		}
		ms := at.Sub(d.OpensAt).Milliseconds()
		md.SellThroughMS = &ms
	}
	if mins := end.Sub(d.OpensAt).Minutes(); len(es) > 0 {
		if mins < 1.0/60 {
			mins = 1.0 / 60
		}
		md.ClaimsPerMinute = float64(int64(float64(len(es))/mins*100+0.5)) / 100
	}
	if len(cues) > 0 {
		ds := make([]int64, len(cues))
		for i, c := range cues {
			ds[i] = c.DelayMS
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		med := ds[len(ds)/2]
		md.CueToAirMS = &med
	}
	return md
}

func (x *Exporter) userHash(id string) string {
	m := hmac.New(sha256.New, x.d.Salt)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

func rfc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// offerView is what an offer page shows of a drop in the manifest. The
// page sits in offers/, so bundle files are one directory up.
func (x *Exporter) offerView(m Manifest, kind string, d ManifestDrop) templates.OfferView {
	creator := d.CreatorID
	if creator == "" {
		creator = d.Channel
	}
	cr := x.d.Creators[creator]
	v := templates.OfferView{Kind: kind, Link: x.buyLink(m, kind, d), Remaining: d.Remaining, ToShop: cr.ShopURL != "",
		Creator: templates.OfferCreator{Name: cr.Name, Color: cr.Color},
		Drop: templates.OfferDrop{ID: d.ID, Title: d.Title, SKU: d.SKU, LimitedRunID: d.LimitedRunID, Creator: creator,
			Currency: d.Currency, LivePriceMinor: d.LivePriceMinor, PostStreamPriceMinor: d.PostStreamPriceMinor,
			Stock: d.Stock, Wins: d.Wins, SellThroughMS: d.SellThroughMS}}
	for _, im := range m.Images {
		switch {
		case im.Role == ImageProduct && im.SHA256 == d.Image:
			v.Image = "../" + im.File
			v.ShareImage = m.Links.PublicURL + "/images/" + im.SHA256
		case im.Role == ImageAvatar && im.Creator == creator:
			v.Creator.Avatar = "../" + im.File
		}
	}
	if v.Creator.Avatar == "" && isHTTPURL(cr.Avatar) {
		v.Creator.Avatar = cr.Avatar
	}
	for _, c := range m.Highlights {
		if c.DropID == d.ID {
			oc := templates.OfferClip{DurationMS: c.DurationMS, Src: "../" + c.File}
			if c.Poster != "" {
				oc.Poster = "../" + c.Poster
			}
			if c.Vertical != nil {
				oc.Vertical = "../" + c.Vertical.File
			}
			for _, mo := range c.Moments {
				oc.Moments = append(oc.Moments, templates.ClipMoment{Reason: mo.Reason, Label: mo.Label})
			}
			v.Clips = append(v.Clips, oc)
		}
	}
	return v
}

func isHTTPURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// addImages puts every drop's product image and every creator's avatar
// file into images/, each once, with its signature.
func (x *Exporter) addImages(ctx context.Context, m *Manifest, add func(string, uint16, func(io.Writer) error) error) error {
	seen := map[string]bool{}
	put := func(mi ManifestImage, data []byte) error {
		mi.File = "images/" + mi.SHA256 + Image{Type: mi.Type}.Ext()
		m.Images = append(m.Images, mi)
		if seen[mi.File] {
			return nil
		}
		seen[mi.File] = true
		return add(mi.File, zip.Store, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
	}
	for i, d := range m.Drops {
		if x.d.Images == nil {
			break
		}
		sha, err := x.d.Store.DropImage(ctx, d.ID)
		if err != nil || sha == "" {
			if err != nil {
				return fmt.Errorf("image of drop %s: %w", d.ID, err)
			}
			continue
		}
		rec, data, err := x.d.Images.Read(ctx, sha)
		if err != nil {
			return fmt.Errorf("image of drop %s: %w", d.ID, err)
		}
		m.Drops[i].Image = sha
		if err := put(ManifestImage{Role: ImageProduct, DropID: d.ID, SHA256: rec.SHA256, Type: rec.Type, Width: rec.Width,
			Height: rec.Height, KeyID: rec.KeyID, Signature: rec.Signature}, data); err != nil {
			return err
		}
	}
	done := map[string]bool{}
	for _, d := range m.Drops {
		creator := d.CreatorID
		if creator == "" {
			creator = d.Channel
		}
		cr, ok := x.d.Creators[creator]
		if !ok || done[creator] || cr.Avatar == "" || isHTTPURL(cr.Avatar) {
			continue
		}
		done[creator] = true
		raw, err := os.ReadFile(cr.Avatar)
		if err != nil {
			return fmt.Errorf("avatar of %s: %w", creator, err)
		}
		im, err := CleanImage(raw)
		if err != nil {
			return fmt.Errorf("avatar of %s (%s): %w", creator, cr.Avatar, err)
		}
		mi := ManifestImage{Role: ImageAvatar, Creator: creator, SHA256: im.SHA256, Type: im.Type, Width: im.Width, Height: im.Height}
		if x.d.Signer != nil {
			mi.KeyID, mi.Signature = SignImage(x.d.Signer, im.SHA256)
		}
		if err := put(mi, im.Data); err != nil {
			return err
		}
	}
	return nil
}

// addStills puts each drop's evidence still into stills/, checked against
// the hash recorded at the moment, with the drop's aired cues beside it.
func (x *Exporter) addStills(ctx context.Context, m *Manifest, add func(string, uint16, func(io.Writer) error) error) error {
	for _, d := range m.Drops {
		ss, err := x.d.Store.Stills(ctx, d.ID)
		if err != nil {
			return fmt.Errorf("stills of %s: %w", d.ID, err)
		}
		if len(ss) == 0 {
			continue
		}
		cues, err := x.d.Store.Cues(ctx, d.ID)
		if err != nil {
			return fmt.Errorf("cues of %s: %w", d.ID, err)
		}
		mc := make([]ManifestCue, 0, len(cues))
		for _, c := range cues {
			mc = append(mc, ManifestCue{Stream: c.Stream, Code: c.Code, HeardAt: c.HeardAt.UTC(), DelayMS: c.DelayMS, SNRDB: c.SNRDB})
		}
		for i, st := range ss {
			if err := CheckImageHash(st.SHA256); err != nil {
				return fmt.Errorf("still of %s: %w", d.ID, err)
			}
			b, err := os.ReadFile(filepath.Join(x.d.Dir, st.File()))
			if err != nil {
				return fmt.Errorf("still of %s: %w", d.ID, err)
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != st.SHA256 {
				return fmt.Errorf("still of %s: the file no longer matches the hash recorded at the open", d.ID)
			}
			name := "stills/" + d.ID + st.Ext()
			if i > 0 {
				name = "stills/" + d.ID + "-" + strconv.Itoa(i+1) + st.Ext()
			}
			if err := add(name, zip.Store, func(w io.Writer) error {
				_, err := w.Write(b)
				return err
			}); err != nil {
				return err
			}
			m.Stills = append(m.Stills, ManifestStill{DropID: d.ID, File: name, SHA256: st.SHA256, Type: st.Type, Stream: st.Path,
				OpenedAt: st.OpenedAt.UTC(), FrameAt: st.ReceivedAt.UTC(), StreamTimeMS: st.StreamTime.Milliseconds(), Cues: mc})
		}
	}
	return nil
}

// addPoster adds the clip's poster frame (posters/<id>.jpg), half a
// second into what the export carries.
func (x *Exporter) addPoster(ctx context.Context, h Highlight, add func(string, uint16, func(io.Writer) error) error) (string, error) {
	src, err := x.clipPath(h)
	if err != nil {
		return "", err
	}
	in, out := h.Span()
	at := in + min(500*time.Millisecond, (out-in)/2)
	jpg, err := x.d.Vertical.Still(ctx, src, at)
	if err != nil {
		return "", err
	}
	name := "posters/" + h.ID + ".jpg"
	return name, add(name, zip.Store, func(w io.Writer) error {
		_, err := w.Write(jpg)
		return err
	})
}

// creatorRevenue sums the drops' payments per creator (a drop's creator,
// else its channel) and currency.
func creatorRevenue(ds []ManifestDrop) []ManifestCreator {
	var out []ManifestCreator
	idx := map[[2]string]int{}
	for _, d := range ds {
		if d.PaidMinor == 0 {
			continue
		}
		who := d.CreatorID
		if who == "" {
			who = d.Channel
		}
		k := [2]string{who, d.Currency}
		i, ok := idx[k]
		if !ok {
			out = append(out, ManifestCreator{CreatorID: who, Currency: d.Currency})
			i = len(out) - 1
			idx[k] = i
		}
		out[i].PaidMinor += d.PaidMinor
		out[i].RefundedMinor += d.RefundedMinor
		out[i].RevenueMinor = out[i].PaidMinor - out[i].RefundedMinor
	}
	return out
}
