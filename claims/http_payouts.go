package claims

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// WithPayouts switches the creator money routes on: balances, payouts, a
// payout run, statements and refunds. All are admin-only.
func (h *Handler) WithPayouts(p *Payouts) *Handler {
	h.payouts = p
	h.mux.HandleFunc("GET /api/creators/balances", h.adminOnly(h.creatorBalances))
	h.mux.HandleFunc("GET /api/creators/{id}/statement", h.adminOnly(h.statement))
	h.mux.HandleFunc("GET /api/payouts", h.adminOnly(h.listPayouts))
	h.mux.HandleFunc("POST /api/payouts/run", h.adminOnly(h.runPayouts))
	h.mux.HandleFunc("POST /api/holds/{id}/refund", h.adminOnly(h.refundHold))
	return h
}

func (h *Handler) creatorBalances(w http.ResponseWriter, r *http.Request) {
	bs, err := h.payouts.Balances(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"balances": bs})
}

func (h *Handler) listPayouts(w http.ResponseWriter, r *http.Request) {
	f := PayoutFilter{CreatorID: r.URL.Query().Get("creator"), State: PayoutState(r.URL.Query().Get("state"))}
	switch f.State {
	case "", PayoutPending, PayoutInTransit, PayoutPaid, PayoutReturned:
	default:
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "state must be pending, in_transit, paid or returned"))
		return
	}
	ps, err := h.payouts.store.Payouts(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ps == nil {
		ps = []Payout{}
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"payouts": ps})
}

func (h *Handler) runPayouts(w http.ResponseWriter, r *http.Request) {
	rep, err := h.payouts.Run(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, rep)
}

// RefundBody is the body of POST /api/holds/{id}/refund.
type RefundBody struct {
	// Key makes the refund idempotent: the same key refunds once.
	Key         string `json:"key"`
	AmountMinor int64  `json:"amount_minor"` // 0: all that is left
}

func (h *Handler) refundHold(w http.ResponseWriter, r *http.Request) {
	var b RefundBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	m, applied, err := h.svc.RefundHold(r.Context(), Refund{Key: b.Key, HoldID: r.PathValue("id"), AmountMinor: b.AmountMinor, At: h.svc.now()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"movement": m, "applied": applied})
}

// StatementPeriod reads from and to (YYYY-MM-DD, UTC; to inclusive) and
// the currency of a statement request. Without from, the period starts
// at the first day of to's month; without to, it ends today.
func StatementPeriod(q map[string][]string, now time.Time, defaultCurrency string) (from, to time.Time, currency string, err error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	day := func(name string) (time.Time, error) {
		s := get(name)
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return time.Time{}, microdrop.Errorf(microdrop.EINVALID, "%s: %q is not a date like 2026-11-30", name, s)
		}
		return t, nil
	}
	now = now.UTC()
	to = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	if get("to") != "" {
		if to, err = day("to"); err != nil {
			return
		}
	}
	from = time.Date(to.Year(), to.Month(), 1, 0, 0, 0, 0, time.UTC)
	if get("from") != "" {
		if from, err = day("from"); err != nil {
			return
		}
	}
	if from.After(to) {
		err = microdrop.Errorf(microdrop.EINVALID, "from (%s) is after to (%s)", from.Format("2006-01-02"), to.Format("2006-01-02"))
		return
	}
	if to.Sub(from) > 366*24*time.Hour {
		err = microdrop.Errorf(microdrop.EINVALID, "a statement covers at most 366 days")
		return
	}
	currency = strings.ToUpper(get("currency"))
	if currency == "" {
		currency = defaultCurrency
	}
	if !currencyPattern.MatchString(currency) {
		err = microdrop.Errorf(microdrop.EINVALID, "currency: %q must be three letters, like EUR", currency)
		return
	}
	return from, to.AddDate(0, 0, 1), currency, nil
}

// CreatorStatement is a creator's statement for a request's period.
func (p *Payouts) CreatorStatement(r *http.Request, creator string) (Statement, error) {
	if creator == "" || len(creator) > 64 || !idPattern.MatchString(creator) {
		return Statement{}, microdrop.Errorf(microdrop.EINVALID, "%q is not a creator id", creator)
	}
	cur := "EUR"
	if plan, ok := p.d.Plans[creator]; ok && plan.Currency != "" {
		cur = plan.Currency
	}
	from, to, cur, err := StatementPeriod(r.URL.Query(), p.d.Now(), cur)
	if err != nil {
		return Statement{}, err
	}
	return p.d.Service.Statement(r.Context(), p.store, creator, cur, from, to)
}

func (h *Handler) statement(w http.ResponseWriter, r *http.Request) {
	st, err := h.payouts.CreatorStatement(r, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.URL.Query().Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="statement-%s-%s-%s.csv"`, st.CreatorID,
			st.From.Format("20060102"), st.To.AddDate(0, 0, -1).Format("20060102")))
		_ = WriteStatementCSV(w, st)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, st)
}

// StatementCSVHeader is the first row of a statement CSV.
var StatementCSVHeader = []string{"creator_id", "drop_id", "sku", "limited_run_id", "currency", "paid_holds", "gross_minor", "fees_minor",
	"refunds_minor", "fees_back_minor", "net_minor", "payouts_minor"}

// WriteStatementCSV writes a statement: a row per drop, then the totals.
func WriteStatementCSV(w interface{ Write([]byte) (int, error) }, st Statement) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(StatementCSVHeader)
	row := func(d DropMoney) {
		i := func(n int64) string { return strconv.FormatInt(n, 10) }
		_ = cw.Write([]string{st.CreatorID, d.DropID, d.SKU, d.LimitedRunID, st.Currency, strconv.Itoa(d.PaidHolds), i(d.GrossMinor),
			i(d.FeesMinor), i(d.RefundsMinor), i(d.FeesBackMinor), i(d.Net), i(d.PayoutsMinor)})
	}
	for _, d := range st.Drops {
		row(d)
	}
	row(st.Totals)
	cw.Flush()
	return cw.Error()
}
