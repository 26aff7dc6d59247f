package overlay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/templates"
)

// maxFormBytes bounds every form body.
const maxFormBytes = 16 << 10

// adminGET lets a GET through with the admin token or session.
func (s *Server) adminGET(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.admin.Check(r); err != nil {
			httpError(w, http.StatusUnauthorized, "sign in at /dashboard first")
			return
		}
		next(w, r)
	}
}

// adminForm checks the admin credential and, for the session cookie, the
// form's CSRF token and the request's origin, before anything changes.
func (s *Server) adminForm(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			httpError(w, http.StatusBadRequest, "the form could not be read (too large or malformed)")
			return
		}
		err := s.admin.Check(r)
		if microdrop.ErrorCode(err) == microdrop.EUNAUTHORIZED {
			if strings.HasPrefix(r.URL.Path, "/redeem") {
				render(w, r, http.StatusUnauthorized, templates.RedeemPage(templates.RedeemView{Error: "sign in first"}))
			} else {
				render(w, r, http.StatusUnauthorized, templates.Dashboard(templates.DashboardView{Error: "sign in first"}))
			}
			return
		}
		if err != nil {
			httpError(w, http.StatusForbidden, microdrop.ErrorMessage(err))
			return
		}
		next(w, r)
	}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		httpError(w, http.StatusBadRequest, "the form could not be read")
		return
	}
	if !microdrop.SameOrigin(r) {
		httpError(w, http.StatusForbidden, "sign in from this site's own login form")
		return
	}
	next := r.PostFormValue("next")
	if next != "/redeem" {
		next = "/dashboard"
	}
	if !s.admin.CheckToken(strings.TrimSpace(r.PostFormValue("token"))) {
		s.log.Warn("dashboard login refused", "remote", r.RemoteAddr)
		view := templates.DashboardView{Error: "that is not the admin token"}
		render(w, r, http.StatusUnauthorized, templates.Dashboard(view))
		return
	}
	s.admin.SetCookie(w)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.admin.Logout(w, r)
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	if !s.admin.Allowed(r) {
		render(w, r, http.StatusOK, templates.Dashboard(templates.DashboardView{}))
		return
	}
	v := s.dashboardView(r.Context())
	v.CSRF = s.admin.CSRFToken(r)
	if id := r.URL.Query().Get("done"); id != "" && len(id) <= 128 {
		switch what := r.URL.Query().Get("what"); what {
		case "opened", "closed", "extended":
			v.Notice = what + " " + id
		case "enabled":
			v.Notice = "enabled webhook endpoint " + id + "; its failed deliveries are retried"
		case "redelivering":
			v.Notice = "redelivering " + id
		}
	}
	render(w, r, http.StatusOK, templates.Dashboard(v))
}

func (s *Server) dashboardView(ctx context.Context) templates.DashboardView {
	v := templates.DashboardView{
		LoggedIn: true, Channels: s.channels,
		GraceS: formatSeconds(s.grace), LocalMode: s.viewers.Local(),
		Form: templates.DashboardForm{Stock: "50", Currency: "USD", Duration: "90s", Price: "25.00"},
	}
	if len(s.channels) > 0 {
		v.Form.Channel = s.channels[0]
	}
	for _, ch := range s.channels {
		v.Overlays = append(v.Overlays, templates.DashboardOverlay{Channel: ch, URL: s.OverlayURL(ch)})
	}
	if s.payouts != nil {
		v.Creators = s.dashCreators(ctx)
	}
	ds, err := s.claims.Recent(ctx, "", 20)
	if err != nil {
		s.log.Warn("dashboard: list drops", "err", err)
		v.Error = "could not list drops: " + microdrop.ErrorMessage(err)
	}
	for _, d := range ds {
		dd := dashDrop(s.publicURL, d)
		if d.Priced() {
			dd.Holds = s.dashHolds(ctx, d)
		}
		v.Drops = append(v.Drops, dd)
	}
	if s.streams != nil {
		v.Streams = s.streams()
	}
	if s.alerts != nil {
		v.Alerts = s.alerts()
	}
	var alerts []templates.DashboardAlert
	v.Webhooks, alerts = s.dashWebhooks(ctx)
	v.WebhooksOn = s.webhooks != nil
	v.Alerts = append(v.Alerts, alerts...)
	v.RTSPURL, v.WHIPURL = s.publish[0], s.publish[1]
	return v
}

func dashDrop(pub string, d *claims.Drop) templates.DashboardDrop {
	dd := templates.DashboardDrop{
		ID: d.ID, Channel: d.Channel, Title: d.Title, SKU: d.SKU, State: string(d.State),
		Stock: d.Stock, Remaining: d.Remaining, Price: formatPrice(d.PriceMinor, d.Currency),
		ClosesAt: d.ClosesAt.Local().Format("15:04:05"), GraceS: formatSeconds(d.Grace),
		ClaimURL: claims.ClaimURL(pub, d), Live: !d.State.Final(),
	}
	if d.Policy == claims.Window {
		dd.BudgetS, dd.BudgetBasis = formatSeconds(d.Budget), d.BudgetBasis
	}
	return dd
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func formatPrice(minor int64, cur string) string {
	if minor == 0 {
		return "free"
	}
	return fmt.Sprintf("%d.%02d %s", minor/100, minor%100, cur)
}

// parsePrice reads "25", "25.5" or "25.00" as minor units (cents).
func parsePrice(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 || whole == "" && frac == "" {
		return 0, fmt.Errorf("price %q: use a number with at most two decimals, like 25.00", s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err1 := strconv.ParseInt(defaultStr(whole, "0"), 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil || w < 0 || w > 1e9 || f < 0 {
		return 0, fmt.Errorf("price %q: use a number with at most two decimals, like 25.00", s)
	}
	return w*100 + f, nil
}

func defaultStr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// openRequest reads the open-drop form. Every field is checked here or by
// claims.OpenDrop; a bad one is reported and nothing is opened.
func openRequest(r *http.Request) (claims.OpenRequest, templates.DashboardForm, error) {
	f := templates.DashboardForm{
		Channel: r.PostFormValue("channel"), SKU: strings.TrimSpace(r.PostFormValue("sku")),
		Title: strings.TrimSpace(r.PostFormValue("title")), Stock: strings.TrimSpace(r.PostFormValue("stock")),
		Price: r.PostFormValue("price"), Currency: strings.TrimSpace(r.PostFormValue("currency")),
		Duration: strings.TrimSpace(r.PostFormValue("duration")), Grace: strings.TrimSpace(r.PostFormValue("grace")),
		Policy: r.PostFormValue("policy"), Code: strings.TrimSpace(r.PostFormValue("code")),
		Budget: strings.TrimSpace(r.PostFormValue("budget")),
		Listen: r.PostFormValue("listen") != "",
	}
	req := claims.OpenRequest{Channel: f.Channel, SKU: f.SKU, Title: f.Title, Currency: f.Currency,
		Policy: claims.Policy(f.Policy), ClaimCode: f.Code, Listen: f.Listen, By: "dashboard"}
	stock, err := strconv.Atoi(f.Stock)
	if err != nil {
		return req, f, fmt.Errorf("stock must be a whole number, not %q", f.Stock)
	}
	req.Stock = stock
	if req.PriceMinor, err = parsePrice(f.Price); err != nil {
		return req, f, err
	}
	dur, err := claims.ParseDuration(f.Duration)
	if err != nil {
		return req, f, fmt.Errorf("duration: %w", err)
	}
	req.Duration = claims.Duration(dur)
	if f.Grace != "" {
		g, err := claims.ParseDuration(f.Grace)
		if err != nil {
			return req, f, fmt.Errorf("grace: %w", err)
		}
		gd := claims.Duration(g)
		req.Grace = &gd
	}
	if f.Budget != "" {
		b, err := claims.ParseDuration(f.Budget)
		if err != nil {
			return req, f, fmt.Errorf("budget: %w", err)
		}
		bd := claims.Duration(b)
		req.Budget = &bd
	}
	return req, f, nil
}

func (s *Server) formError(w http.ResponseWriter, r *http.Request, status int, msg string, form *templates.DashboardForm) {
	v := s.dashboardView(r.Context())
	v.CSRF = s.admin.CSRFToken(r)
	v.Error = msg
	if form != nil {
		v.Form = *form
	}
	render(w, r, status, templates.Dashboard(v))
}

func (s *Server) openDrop(w http.ResponseWriter, r *http.Request) {
	req, form, err := openRequest(r)
	if err != nil {
		s.formError(w, r, http.StatusBadRequest, err.Error(), &form)
		return
	}
	d, err := s.claims.OpenDrop(r.Context(), req)
	if err != nil {
		s.failForm(w, r, err, &form)
		return
	}
	http.Redirect(w, r, "/dashboard?what=opened&done="+url.QueryEscape(d.ID), http.StatusSeeOther)
}

func (s *Server) failForm(w http.ResponseWriter, r *http.Request, err error, form *templates.DashboardForm) {
	code := microdrop.ErrorCode(err)
	if code == microdrop.EINTERNAL {
		s.log.Error("dashboard action failed", "path", r.URL.Path, "err", err)
	}
	s.formError(w, r, microdrop.StatusOf(code), microdrop.ErrorMessage(err), form)
}

func (s *Server) closeDrop(w http.ResponseWriter, r *http.Request) {
	d, err := s.claims.CloseDrop(r.Context(), r.PathValue("id"), "dashboard")
	if err != nil {
		s.failForm(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/dashboard?what=closed&done="+url.QueryEscape(d.ID), http.StatusSeeOther)
}

func (s *Server) extendDrop(w http.ResponseWriter, r *http.Request) {
	by, err := claims.ParseDuration(strings.TrimSpace(r.PostFormValue("by")))
	if err != nil {
		s.formError(w, r, http.StatusBadRequest, "extend by: "+err.Error(), nil)
		return
	}
	d, err := s.claims.ExtendDrop(r.Context(), r.PathValue("id"), by, "dashboard")
	if err != nil {
		s.failForm(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/dashboard?what=extended&done="+url.QueryEscape(d.ID), http.StatusSeeOther)
}

// LiveDrop is a channel's drop in the dashboard's live view.
type LiveDrop struct {
	Channel   string  `json:"channel"`
	ID        string  `json:"id"`
	Title     string  `json:"title"`
	State     string  `json:"state"`
	Stock     int     `json:"stock"`
	Remaining int     `json:"remaining"`
	ClosesMS  float64 `json:"closes_ms"`
	GraceMS   int64   `json:"grace_ms"`
}

// Live is what /dashboard/live.json returns.
type Live struct {
	ServerMS   float64        `json:"server_ms"`
	Drops      []LiveDrop     `json:"drops"`
	Feed       []FeedItem     `json:"feed"`
	Rejections []claims.Count `json:"rejections"`
	Outcomes   []claims.Count `json:"outcomes"`
	Series     []Point        `json:"series"`
	Hub        HubStats       `json:"hub"`
}

func (s *Server) dashboardLive(w http.ResponseWriter, r *http.Request) {
	m := s.claims.Metrics()
	l := Live{ServerMS: unixMS(s.now()), Feed: s.feed.latest(), Rejections: m.Rejections(),
		Outcomes: m.Outcomes(), Series: s.stats.series(), Hub: s.hub.Stats(), Drops: []LiveDrop{}}
	// The same drops the page listed: live ones from memory, the rest from the ledger.
	ds, err := s.claims.Recent(r.Context(), "", 20)
	if err != nil {
		s.log.Warn("dashboard: list drops", "err", err)
	}
	for _, d := range ds {
		l.Drops = append(l.Drops, LiveDrop{Channel: d.Channel, ID: d.ID, Title: d.Title, State: string(d.StateAt(s.now())),
			Stock: d.Stock, Remaining: d.Remaining, ClosesMS: unixMS(d.ClosesAt), GraceMS: d.Grace.Milliseconds()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(l)
}

// dashHolds is a priced drop's holds for the streamer; nil when the books
// cannot say (the table still lists the drop).
func (s *Server) dashHolds(ctx context.Context, d *claims.Drop) *templates.DashboardHolds {
	sum, err := s.claims.HoldSummary(ctx, d.ID)
	if err != nil {
		s.log.Warn("dashboard: hold summary", "drop", d.ID, "err", err)
		return nil
	}
	h := &templates.DashboardHolds{Paid: sum.Paid, Passed: sum.Passed, Unsold: sum.Unsold,
		Revenue: fmt.Sprintf("%d.%02d %s", sum.Revenue/100, sum.Revenue%100, sum.Currency)}
	for _, a := range sum.Awaiting {
		h.Awaiting = append(h.Awaiting, templates.DashboardDue{Who: a.UserID, PayBy: a.Deadline.Local().Format("15:04:05")})
	}
	return h
}
