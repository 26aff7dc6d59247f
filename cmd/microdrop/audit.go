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
	if err := fs.Parse(args); err != nil {
		return err
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
