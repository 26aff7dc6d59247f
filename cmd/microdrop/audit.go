package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// runAudit recomputes a drop's winners, from a running server (--url) or
// straight from the SQLite ledger in a data dir.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "server to ask (e.g. http://localhost:8080); default: read the ledger in --data")
	data := fs.String("data", "./microdrop-data", "data dir holding ledger.db")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	money := fs.Bool("money", false, "prove the books instead: every currency balances, no wallet is negative, every hold's state matches its postings")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *money {
		return auditMoney(ctx, *url, *data, *asJSON, stdout)
	}
	if fs.NArg() != 1 {
		return errors.New("usage: microdrop audit [--url U | --data DIR] [--json] DROP_ID")
	}
	id := fs.Arg(0)
	var rep claims.AuditReport
	var heard string // a listen drop's entries by step, when the ledger is at hand
	if *url != "" {
		u := strings.TrimRight(strings.TrimSpace(*url), "/") + "/api/drops/" + id + "/audit"
		if err := getJSON(ctx, u, os.Getenv("MICRODROP_ADMIN_TOKEN"), &rep); err != nil {
			return fmt.Errorf("audit %s: %w", id, err)
		}
	} else {
		path := filepath.Join(*data, "ledger.db")
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no ledger at %s (use --data or --url)", path)
		}
		l, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		d, err := l.Drop(ctx, id)
		if err != nil {
			return fmt.Errorf("audit %s: %s", id, microdrop.ErrorMessage(err))
		}
		es, err := l.Entries(ctx, id)
		if err != nil {
			return err
		}
		rep = claims.Audit(d, es)
		if d.Priced() {
			hs, err := l.Holds(ctx, claims.HoldFilter{DropID: id})
			if err != nil {
				return err
			}
			rep = claims.AuditPaid(d, es, hs)
		}
		if d.Listening() {
			heard = claims.HeardSteps(es)
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	verdict := "MATCH: the recorded winners are the ones the policy and seed give"
	if !rep.Match {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(stdout, "drop %s (%s, %s): %s\n", rep.DropID, rep.Policy, rep.State, verdict)
	fmt.Fprintf(stdout, "  entries %d, awarded %d of %d, recomputed %d, oversold %v, users over cap %d\n",
		rep.Entries, rep.Awarded, rep.Stock, rep.Recomputed, rep.Oversold, rep.OverCapUsers)
	if rep.BudgetMS > 0 {
		fmt.Fprintf(stdout, "  window    the first %s (until %s): one draw over every claim in it\n",
			time.Duration(rep.BudgetMS)*time.Millisecond, rep.WindowEndsAt.UTC().Format(time.RFC3339Nano))
	}
	if rep.Passes > 0 {
		fmt.Fprintf(stdout, "  %d unpaid units passed on, each replayed in the drop's fair order\n", rep.Passes)
	}
	fmt.Fprintf(stdout, "  seed hash %s\n", rep.SeedHash)
	if rep.Seed != "" {
		fmt.Fprintf(stdout, "  seed      %s (hash verified: %v)\n", rep.Seed, rep.SeedVerified)
	}
	if heard != "" {
		fmt.Fprintf(stdout, "  listen drop, entries by the step of the code heard: %s\n", heard)
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(stdout, "  problems:\n    %s\n", strings.Join(rep.Problems, "\n    "))
	}
	if !rep.Match {
		return errors.New("audit found problems")
	}
	return nil
}

// getJSON fetches url with the admin bearer into out; an error answer comes
// back as the server's *microdrop.Error.
func getJSON(ctx context.Context, url, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb microdrop.ErrorBody
		_ = json.Unmarshal(raw, &eb)
		return &microdrop.Error{Code: eb.Code, Reason: eb.Reason, Message: eb.Message}
	}
	return json.Unmarshal(raw, out)
}

// auditMoney proves the books from a server (--url) or the SQLite ledger.
func auditMoney(ctx context.Context, url, data string, asJSON bool, stdout io.Writer) error {
	var rep claims.MoneyReport
	if url != "" {
		if err := getJSON(ctx, strings.TrimRight(url, "/")+"/api/money/audit", os.Getenv("MICRODROP_ADMIN_TOKEN"), &rep); err != nil {
			return fmt.Errorf("money audit: %w", err)
		}
	} else {
		path := filepath.Join(data, "ledger.db")
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no ledger at %s (use --data or --url)", path)
		}
		l, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		ms, err := l.Movements(ctx, "")
		if err != nil {
			return err
		}
		hs, err := l.Holds(ctx, claims.HoldFilter{})
		if err != nil {
			return err
		}
		ps, err := l.Payouts(ctx, claims.PayoutFilter{})
		if err != nil {
			return err
		}
		rep = claims.AuditMoneyAndPayouts(ms, hs, ps)
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		verdict := "BALANCED: every currency sums to zero, every hold matches its postings and refunds, every payout its movements"
		if !rep.Balanced {
			verdict = "NOT BALANCED"
		}
		fmt.Fprintf(stdout, "books: %s\n  movements %d, holds %d\n", verdict, rep.Movements, rep.Holds)
		for c, t := range rep.Totals {
			fmt.Fprintf(stdout, "  %s: total %d, revenue %d\n", c, t, rep.Revenue[c])
		}
		if len(rep.Problems) > 0 {
			fmt.Fprintf(stdout, "  problems:\n    %s\n", strings.Join(rep.Problems, "\n    "))
		}
	}
	if !rep.Balanced {
		return errors.New("money audit found problems")
	}
	return nil
}
