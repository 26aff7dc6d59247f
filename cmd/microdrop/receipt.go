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
	"strings"
	"time"

	"github.com/microdrop/microdrop/claims"
)

// runReceipt verifies a receipt against published keys: fetched once from
// a server's /.well-known/microdrop-receipt-keys, or read from a saved
// copy, so the check itself needs nothing from microdrop.
func runReceipt(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: microdrop receipt verify --keys URL|FILE RECEIPT")
	}
	fs := flag.NewFlagSet("microdrop receipt verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keysFrom := fs.String("keys", "", "the published receipt keys: a server URL (its /.well-known/microdrop-receipt-keys) or a JSON file")
	asJSON := fs.Bool("json", false, "print the receipt as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keysFrom == "" {
		return errors.New("usage: microdrop receipt verify --keys URL|FILE RECEIPT")
	}
	keys, err := loadReceiptKeys(ctx, *keysFrom)
	if err != nil {
		return err
	}
	r, err := claims.VerifyReceipt(fs.Arg(0), keys)
	if err != nil {
		fmt.Fprintf(stdout, "INVALID: %v\n", err)
		return errors.New("receipt does not verify")
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	fmt.Fprintf(stdout, "VALID receipt signed by key %s\n  drop %s, sku %s, limited run %s, unit %d\n  %d %s (minor units) by %s at %s\n  holder %s\n",
		r.KeyID, r.DropID, r.SKU, r.LimitedRunID, r.Unit, r.Amount, r.Currency, r.Method, r.Time().Format(time.RFC3339), r.Holder)
	return nil
}

func loadReceiptKeys(ctx context.Context, from string) (claims.ReceiptKeys, error) {
	var keys claims.ReceiptKeys
	var body io.Reader
	if strings.HasPrefix(from, "http://") || strings.HasPrefix(from, "https://") {
		u := strings.TrimRight(from, "/")
		if !strings.HasSuffix(u, "/.well-known/microdrop-receipt-keys") {
			u += "/.well-known/microdrop-receipt-keys"
		}
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return keys, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return keys, fmt.Errorf("fetch receipt keys: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return keys, fmt.Errorf("fetch receipt keys: %s", resp.Status)
		}
		body = io.LimitReader(resp.Body, 1<<20)
	} else {
		f, err := os.Open(from)
		if err != nil {
			return keys, err
		}
		defer f.Close()
		body = io.LimitReader(f, 1<<20)
	}
	if err := json.NewDecoder(body).Decode(&keys); err != nil {
		return keys, fmt.Errorf("receipt keys: %w", err)
	}
	return keys, nil
}
