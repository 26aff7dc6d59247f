package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe"
)

// newPayouts is the payout runner for svc: Stripe Connect for creators
// with a connected account (when Stripe is configured), payout files in
// the data dir's payouts/ for the others.
func newPayouts(cfg Config, svc *claims.Service, now func() time.Time, log *slog.Logger) (*claims.Payouts, error) {
	plans, err := cfg.PayoutPlans()
	if err != nil {
		return nil, err
	}
	d := claims.PayoutsDeps{Service: svc, Plans: plans, Now: now, Logger: log,
		Files: claims.PayoutFiles{Dir: filepath.Join(cfg.Data, "payouts")}}
	if sc := cfg.Payments.Stripe; sc.SecretKey != "" {
		c, err := stripe.NewConnect(stripe.Config{SecretKey: sc.SecretKey, APIBase: sc.APIBase, Logger: log})
		if err != nil {
			return nil, err
		}
		d.Connect = c
	}
	return claims.NewPayouts(d)
}

// startPayouts runs the payout scheduler in serve and mounts its routes.
func (m *Main) startPayouts(svc *claims.Service) error {
	p, err := newPayouts(m.Config, svc, m.Now, m.Logger)
	if err != nil {
		return fmt.Errorf("payouts: %w", err)
	}
	m.Payouts = p
	m.api.WithPayouts(p)
	p.Start(m.PayoutTick)
	m.onClose("payouts", p.Close)
	return nil
}

// runPayoutsCmd is `microdrop payouts run`: one payout run against the
// ledger serve uses, resuming whatever a killed run left unfinished.
func runPayoutsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "run" {
		return errors.New("usage: microdrop payouts run [--config FILE] [--data DIR] [--ledger URL] [--json]")
	}
	fs := flag.NewFlagSet("microdrop payouts run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file serve runs with (creators' payout settings); also MICRODROP_CONFIG")
	data := fs.String("data", "", "data dir (SQLite ledger, payouts/); also MICRODROP_DATA")
	ledgerURL := fs.String("ledger", "", "ledger: empty for SQLite in the data dir, or postgres://...; also MICRODROP_LEDGER")
	asJSON := fs.Bool("json", false, "print the run's report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	m := NewMain(stdout, stderr)
	path := *configPath
	if path == "" {
		path = os.Getenv("MICRODROP_CONFIG")
	}
	if path != "" {
		if err := m.Config.LoadFile(path); err != nil {
			return err
		}
	}
	if err := m.Config.LoadEnv(os.LookupEnv); err != nil {
		return err
	}
	if *data != "" {
		m.Config.Data = *data
	}
	if *ledgerURL != "" {
		m.Config.Ledger = *ledgerURL
	}
	if err := m.Config.Validate(); err != nil {
		return err
	}
	m.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if m.Config.Ledger == "" {
		if _, err := os.Stat(filepath.Join(m.Config.Data, "ledger.db")); err != nil {
			return fmt.Errorf("no ledger at %s (use --data)", filepath.Join(m.Config.Data, "ledger.db"))
		}
	}
	// A payout run changes no hold, so its outbox events (payout.paid)
	// name no holder: no holder pseudonym is needed.
	ledger, _, err := m.openLedger(ctx, nil)
	if err != nil {
		return err
	}
	defer ledger.Close()
	// The service is only read through here (drops, books): it is not
	// started, so it decides nothing and signs no pickup token.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	signer, err := claims.NewTokenSigner(key)
	if err != nil {
		return err
	}
	svc, err := claims.New(claims.Deps{Ledger: ledger, Bus: microdrop.NewMemoryBus(), Signer: signer, Logger: m.Logger,
		Options: claims.Options{FeeBasisPoints: m.Config.Payments.FeeBasisPoints, Fees: m.Config.Fees()}})
	if err != nil {
		return err
	}
	p, err := newPayouts(m.Config, svc, time.Now, m.Logger)
	if err != nil {
		return err
	}
	rep, err := p.Run(ctx)
	if err != nil {
		return fmt.Errorf("payout run: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "payout run: %d resumed, %d started, %d paid, %d returned, %d waiting\n",
			rep.Resumed, rep.Created, len(rep.Paid), len(rep.Returned), len(rep.Waiting))
		for _, po := range rep.Paid {
			fmt.Fprintf(stdout, "paid %s  %s  %d %s  %s %s\n", po.ID, po.CreatorID, po.AmountMinor, po.Currency, po.Provider, po.Reference)
		}
		for _, po := range rep.Returned {
			fmt.Fprintf(stdout, "returned %s  %s  %d %s: %s\n", po.ID, po.CreatorID, po.AmountMinor, po.Currency, po.Note)
		}
		for _, e := range rep.Errors {
			fmt.Fprintln(stdout, "waiting:", e)
		}
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("%d payouts are not finished; the next run tries again", len(rep.Errors))
	}
	return nil
}
