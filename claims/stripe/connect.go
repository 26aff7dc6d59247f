package stripe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	stripego "github.com/stripe/stripe-go/v82"

	"github.com/microdrop/microdrop/claims"
)

// Connect pays creators through Stripe Connect: one Transfer from the
// platform's balance to the creator's connected account per payout. The
// idempotency key is the payout's id, so a run resumed after a crash
// sends the same request and Stripe answers with the transfer it already
// made instead of making a second.
type Connect struct {
	client *stripego.Client
	log    *slog.Logger
}

var _ claims.PayoutRail = (*Connect)(nil)

// NewConnect returns the Connect rail; only SecretKey (and APIBase) of c
// are used.
func NewConnect(c Config) (*Connect, error) {
	if c.SecretKey == "" {
		return nil, errors.New("stripe connect: secret_key is needed")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Connect{client: newClient(c), log: c.Logger.With("component", "stripe_connect")}, nil
}

func newClient(c Config) *stripego.Client {
	cfg := &stripego.BackendConfig{LeveledLogger: &stripego.LeveledLogger{Level: stripego.LevelNull}, MaxNetworkRetries: stripego.Int64(2)}
	if c.APIBase != "" {
		cfg.URL = stripego.String(strings.TrimRight(c.APIBase, "/"))
	}
	return stripego.NewClient(c.SecretKey, stripego.WithBackends(stripego.NewBackendsWithConfig(cfg)))
}

// TransferIdempotencyKey is the idempotency key of a payout's transfer.
func TransferIdempotencyKey(payoutID string) string { return "payout-" + payoutID }

// Pay makes the payout's transfer and returns its id.
func (c *Connect) Pay(ctx context.Context, p claims.Payout) (string, error) {
	if !strings.HasPrefix(p.Destination, "acct_") {
		return "", fmt.Errorf("payout %s names no connected account: %w", p.ID, claims.ErrPayoutRefused)
	}
	tp := &stripego.TransferCreateParams{
		Amount:        stripego.Int64(p.AmountMinor),
		Currency:      stripego.String(strings.ToLower(p.Currency)),
		Destination:   stripego.String(p.Destination),
		Description:   stripego.String("microdrop payout " + p.ID),
		TransferGroup: stripego.String(p.ID),
		Metadata:      map[string]string{"payout": p.ID, "creator": p.CreatorID},
	}
	tp.SetIdempotencyKey(TransferIdempotencyKey(p.ID))
	tr, err := c.client.V1Transfers.Create(ctx, tp)
	if err != nil {
		var se *stripego.Error
		if errors.As(err, &se) && se.HTTPStatusCode >= 400 && se.HTTPStatusCode < 500 &&
			se.HTTPStatusCode != http.StatusTooManyRequests && se.HTTPStatusCode != http.StatusConflict {
			// Stripe said no for good (an unknown account, a currency it
			// cannot take): the payout is returned to the balance.
			return "", fmt.Errorf("transfer for payout %s: %s: %w", p.ID, se.Msg, claims.ErrPayoutRefused)
		}
		return "", fmt.Errorf("transfer for payout %s: %w", p.ID, err)
	}
	c.log.Info("transfer made", "payout", p.ID, "transfer", tr.ID, "destination", p.Destination)
	return tr.ID, nil
}
