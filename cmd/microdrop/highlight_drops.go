package main

import (
	"context"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// dropReader is the part of a claims ledger the highlight export reads.
type dropReader interface {
	Drops(ctx context.Context, f claims.DropFilter) ([]*claims.Drop, error)
	Entries(ctx context.Context, dropID string) ([]claims.Entry, error)
}

// ledgerDrops lets the highlight export read drops and claims from the
// claims ledger: package highlight declares what it needs and never
// imports claims, so the copy into its words happens here.
type ledgerDrops struct{ l dropReader }

var _ highlight.DropSource = ledgerDrops{}

func (x ledgerDrops) ChannelDrops(ctx context.Context, channel string, limit int) ([]highlight.Drop, error) {
	ds, err := x.l.Drops(ctx, claims.DropFilter{Channel: channel, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]highlight.Drop, 0, len(ds))
	for _, d := range ds {
		hd := highlight.Drop{
			ID: d.ID, Channel: d.Channel, SKU: d.SKU, Title: d.Title, LimitedRunID: d.LimitedRunID, CreatorID: d.CreatorID,
			Currency: d.Currency, PriceMinor: d.PriceMinor, Policy: string(d.Policy), State: string(d.State),
			CloseReason: d.CloseReason, OpensAt: d.OpensAt, ClosesAt: d.ClosesAt, Grace: d.Grace, ClosedAt: d.ClosedAt,
			Stock: d.Stock, Remaining: d.Remaining, SeedHash: d.SeedHash,
			Final: d.State.Final(), SoldOut: d.State == claims.SoldOut,
		}
		if hd.Final {
			hd.Seed = d.Seed
		}
		out = append(out, hd)
	}
	return out, nil
}

func (x ledgerDrops) Claims(ctx context.Context, dropID string) ([]highlight.Claim, error) {
	es, err := x.l.Entries(ctx, dropID)
	if err != nil {
		return nil, err
	}
	out := make([]highlight.Claim, len(es))
	paid := map[int64]claims.Hold{}
	books, _ := x.l.(claims.Books)
	if books != nil {
		hs, err := books.Holds(ctx, claims.HoldFilter{DropID: dropID, State: claims.HoldPaid})
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			paid[h.Seq] = h
		}
	}
	for i, e := range es {
		out[i] = highlight.Claim{Seq: e.Seq, UserID: e.UserID, Outcome: e.Outcome, Won: e.Outcome == claims.OutcomeWon,
			Unit: e.Unit, ArrivedAt: e.ArrivedAt, DecidedAt: e.DecidedAt, Redeemed: e.Redeemed}
		// A claim's hold is the drop's entry: its payment and refunds
		// carry the drop's creator and limited run through to the bundle.
		if h, ok := paid[e.Seq]; ok {
			ms, err := books.Movements(ctx, h.ID)
			if err != nil {
				return nil, err
			}
			out[i].PaidMinor, out[i].RefundedMinor = h.AmountMinor, claims.Refunded(ms, h)
		}
	}
	return out, nil
}
