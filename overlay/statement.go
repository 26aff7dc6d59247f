package overlay

import (
	"context"
	"net/http"
	"net/url"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/templates"
)

// dashCreators is every creator's balance for the dashboard.
func (s *Server) dashCreators(ctx context.Context) []templates.DashboardCreator {
	bs, err := s.payouts.Balances(ctx)
	if err != nil {
		s.log.Warn("dashboard: creator balances", "err", err)
		return []templates.DashboardCreator{}
	}
	out := make([]templates.DashboardCreator, 0, len(bs))
	for _, b := range bs {
		plan, _ := s.payouts.Plan(b.CreatorID)
		out = append(out, templates.DashboardCreator{ID: b.CreatorID, Currency: b.Currency,
			Available: templates.FormatPrice(b.Available, b.Currency), Pending: templates.FormatPrice(b.Pending, b.Currency),
			InTransit: templates.FormatPrice(b.InTransit, b.Currency), PaidOut: templates.FormatPrice(b.PaidOut, b.Currency),
			Schedule:     plan.String(),
			StatementURL: "/dashboard/creators/" + url.PathEscape(b.CreatorID) + "/statement?currency=" + url.QueryEscape(b.Currency)})
	}
	return out
}

// statement is a creator's statement page (or, with format=csv, its CSV):
// admin only; a bad period is answered 400 with the reason.
func (s *Server) statement(w http.ResponseWriter, r *http.Request) {
	if s.payouts == nil {
		httpError(w, http.StatusNotFound, "payouts are off")
		return
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	st, err := s.payouts.CreatorStatement(r, id)
	if err != nil {
		status := http.StatusInternalServerError
		if microdrop.ErrorCode(err) == microdrop.EINVALID {
			status = http.StatusBadRequest
		}
		if q.Get("format") == "csv" {
			httpError(w, status, microdrop.ErrorMessage(err))
			return
		}
		render(w, r, status, templates.StatementPage(templates.StatementView{Error: microdrop.ErrorMessage(err), CreatorID: id,
			From: q.Get("from"), To: q.Get("to"), Currency: q.Get("currency")}))
		return
	}
	to := st.To.AddDate(0, 0, -1).Format("2006-01-02")
	from := st.From.Format("2006-01-02")
	if q.Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="statement-`+st.CreatorID+"-"+from+"-"+to+`.csv"`)
		_ = claims.WriteStatementCSV(w, st)
		return
	}
	money := func(n int64) string { return templates.FormatPrice(n, st.Currency) }
	row := func(d claims.DropMoney) templates.StatementRow {
		return templates.StatementRow{DropID: d.DropID, SKU: d.SKU, Run: d.LimitedRunID, PaidHolds: d.PaidHolds, Gross: money(d.GrossMinor),
			Fees: money(d.FeesMinor - d.FeesBackMinor), Refunds: money(d.RefundsMinor), Net: money(d.Net), Paid: money(d.PayoutsMinor)}
	}
	csvQ := url.Values{"from": {from}, "to": {to}, "currency": {st.Currency}, "format": {"csv"}}
	v := templates.StatementView{CreatorID: st.CreatorID, Currency: st.Currency, From: from, To: to, Total: row(st.Totals),
		CSVURL: "/dashboard/creators/" + url.PathEscape(st.CreatorID) + "/statement?" + csvQ.Encode()}
	for _, d := range st.Drops {
		v.Rows = append(v.Rows, row(d))
	}
	for _, p := range st.Payouts {
		v.Payouts = append(v.Payouts, templates.StatementPayout{ID: p.ID, State: string(p.State), Amount: money(p.AmountMinor),
			Provider: p.Provider, Reference: p.Reference, At: p.CreatedAt.Format("2006-01-02 15:04 UTC")})
	}
	render(w, r, http.StatusOK, templates.StatementPage(v))
}
