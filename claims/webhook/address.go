package webhook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/microdrop/microdrop/claims"
)

// Shipping addresses are kept apart from the outbox: its rows go to every
// endpoint, an address only to endpoints marked for fulfilment, added to
// the body when a delivery is sent. Callers check that the viewer holds
// the hold; the store does not know viewers.

// SetShippingAddress saves where the holder of holdID wants it sent.
func (s *Store) SetShippingAddress(ctx context.Context, holdID string, a claims.ShippingAddress, now time.Time) error {
	if err := a.Check(); err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO webhook_addresses (hold_id, address, updated_at) VALUES (?,?,?)
		ON CONFLICT (hold_id) DO UPDATE SET address = excluded.address, updated_at = excluded.updated_at`, holdID, string(b), ns(now))
	return err
}

// ShippingAddress is the address given for holdID (nil when none was).
func (s *Store) ShippingAddress(ctx context.Context, holdID string) (*claims.ShippingAddress, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, "SELECT address FROM webhook_addresses WHERE hold_id = ?", holdID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a claims.ShippingAddress
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return nil, fmt.Errorf("shipping address of %s: %w", holdID, err)
	}
	return &a, nil
}

// SetShippingAddress saves a holder's shipping address; the caller has
// checked that the viewer holds holdID.
func (h *Handler) SetShippingAddress(ctx context.Context, holdID string, a claims.ShippingAddress) error {
	return h.store.SetShippingAddress(ctx, holdID, a, h.worker.d.Now())
}

// ShippingAddress is the address given for holdID, for its holder only
// (the caller checks).
func (h *Handler) ShippingAddress(ctx context.Context, holdID string) (*claims.ShippingAddress, error) {
	return h.store.ShippingAddress(ctx, holdID)
}

// bodyFor is what a delivery sends to ep: the outbox body, and for an
// endpoint marked for fulfilment the hold's shipping address when its
// holder gave one.
func (w *Worker) bodyFor(ctx context.Context, ep Endpoint, d Delivery) ([]byte, error) {
	if !ep.Fulfilment {
		return d.Body, nil
	}
	var b claims.EventBody
	if err := json.Unmarshal(d.Body, &b); err != nil {
		return nil, fmt.Errorf("event %s: %w", d.EventID, err)
	}
	if b.Data.HoldID == "" {
		return d.Body, nil
	}
	a, err := w.d.Store.ShippingAddress(ctx, b.Data.HoldID)
	if err != nil || a == nil {
		return d.Body, err
	}
	b.Data.ShippingAddress = a
	return json.Marshal(b)
}
