package claims

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// PayoutFiles pays payouts out by writing a payout file for accounting:
// one CSV per payout, named after it, in Dir. Writing it again (a resumed
// run) replaces it with the same content, so a payout is listed once.
type PayoutFiles struct {
	Dir string
}

var _ PayoutRail = PayoutFiles{}

// PayoutFileName is a payout's file in the payout directory.
func PayoutFileName(payoutID string) string { return payoutID + ".csv" }

// PayoutFileHeader is the first row of a payout file.
var PayoutFileHeader = []string{"payout_id", "level", "creator_id", "limited_run_id", "drop_id", "sku", "currency", "amount_minor", "amount"}

// Pay writes the payout's file: a row per drop, then a total per limited
// run, then the creator's total.
func (f PayoutFiles) Pay(_ context.Context, p Payout) (string, error) {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return "", fmt.Errorf("payout files: %w", err)
	}
	name := PayoutFileName(p.ID)
	tmp, err := os.CreateTemp(f.Dir, "."+name+".*.partial")
	if err != nil {
		return "", fmt.Errorf("payout files: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := csv.NewWriter(tmp)
	row := func(level, run, drop, sku string, amount int64) {
		_ = w.Write([]string{p.ID, level, p.CreatorID, run, drop, sku, p.Currency, strconv.FormatInt(amount, 10), formatMoney(amount, p.Currency)})
	}
	_ = w.Write(PayoutFileHeader)
	runs := map[string]int64{}
	var total int64
	for _, l := range p.Lines {
		row("drop", l.LimitedRunID, l.DropID, l.SKU, l.AmountMinor)
		runs[l.LimitedRunID] += l.AmountMinor
		total += l.AmountMinor
	}
	names := make([]string, 0, len(runs))
	for r := range runs {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		row("limited_run", r, "", "", runs[r])
	}
	if total != p.AmountMinor {
		return "", fmt.Errorf("payout %s: lines sum to %d, not %d", p.ID, total, p.AmountMinor)
	}
	row("creator", "", "", "", total)
	w.Flush()
	if err := w.Error(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("payout files: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("payout files: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("payout files: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(f.Dir, name)); err != nil {
		return "", fmt.Errorf("payout files: %w", err)
	}
	return name, nil
}
