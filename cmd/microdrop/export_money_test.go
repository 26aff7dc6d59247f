package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// A bundle exported after a paid drop, through serve and `microdrop
// export`: claims.csv names each claim's creator, limited run, paid and
// refunded amounts, the manifest adds paid/refunded per drop and revenue
// per creator, `microdrop verify` passes it with the server's pinned key,
// and a copy whose claims.csv was altered fails verify.
func TestExportBundleOfPaidDropVerifies(t *testing.T) {
	data := t.TempDir()
	m := NewMain(io.Discard, io.Discard)
	env := func(k string) (string, bool) {
		if k == "MICRODROP_ADMIN_TOKEN" {
			return testAdminToken, true
		}
		return "", false
	}
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", data}, env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.HTTPAddr
	var open claims.DropResponse
	if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "hoodie", "stock": 2, "price_minor": 4500,
		"currency": "EUR", "duration": "1m", "grace": "0s", "policy": "fcfs", "pay": []string{"wallet"}, "creator_id": "crea", "limited_run_id": "run-7"}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	id := open.Drop.ID
	holds := map[string]string{}
	for _, u := range []string{"ann", "ben"} {
		var won claims.ClaimResult
		if st, err := api(t, "POST", base+"/api/drops/"+id+"/claims", map[string]any{"user_id": u}, &won); st != 200 || won.HoldID == "" {
			t.Fatalf("claim: %d %v", st, err)
		}
		holds[u] = won.HoldID
	}
	if st, _ := api(t, "POST", base+"/api/wallets/ann/topup", map[string]any{"key": "k1", "amount_minor": 4500, "currency": "EUR"}, nil); st != 200 {
		t.Fatalf("top-up: %d", st)
	}
	if st, _ := api(t, "POST", base+"/api/holds/"+holds["ann"]+"/pay", map[string]any{"user_id": "ann", "method": "wallet"}, nil); st != 200 {
		t.Fatalf("pay: %d", st)
	}
	if st, _ := api(t, "POST", base+"/api/holds/"+holds["ann"]+"/refund", map[string]any{"key": "r1", "amount_minor": 1000}, nil); st != 200 {
		t.Fatalf("refund: %d", st)
	}
	if st, _ := api(t, "POST", base+"/api/drops/"+id+"/close", map[string]any{}, nil); st != 200 {
		t.Fatalf("close: %d", st)
	}

	store, err := highlight.OpenSQLite(ctx, highlightsDB(data))
	if err != nil {
		t.Fatal(err)
	}
	start := open.Drop.OpensAt.Add(-time.Minute)
	session := highlight.Session{ID: highlight.SessionID("live", start), Path: "live", Channel: "streamer", StartedAt: start, EndedAt: time.Now().Add(time.Minute)}
	if err := store.SaveSession(ctx, session); err != nil {
		t.Fatal(err)
	}
	store.Close()
	bundle := filepath.Join(t.TempDir(), "bundle.zip")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"export", "--data", data, "--session", session.ID, "--out", bundle, "--public-url", base}, &out, &errOut); err != nil {
		t.Fatalf("export: %v\n%s", err, errOut.String())
	}
	files := unzip(t, bundle)
	var man highlight.Manifest
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
		t.Fatal(err)
	}
	if len(man.Drops) != 1 {
		t.Fatalf("manifest drops %+v", man.Drops)
	}
	d := man.Drops[0]
	if d.ID != id || d.CreatorID != "crea" || d.LimitedRunID != "run-7" || d.PaidHolds != 1 || d.PaidMinor != 4500 || d.RefundedMinor != 1000 {
		t.Fatalf("manifest drop %+v", d)
	}
	if len(man.Creators) != 1 || man.Creators[0] != (highlight.ManifestCreator{CreatorID: "crea", Currency: "EUR", PaidMinor: 4500, RefundedMinor: 1000, RevenueMinor: 3500}) {
		t.Fatalf("manifest creators %+v", man.Creators)
	}
	rows, err := csv.NewReader(bytes.NewReader(files["claims.csv"])).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("claims.csv: %v\n%s", err, files["claims.csv"])
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, k := range []string{"creator_id", "limited_run_id", "paid_minor", "refunded_minor", "user_hash"} {
		if _, ok := col[k]; !ok {
			t.Fatalf("claims.csv has no %s column: %v", k, rows[0])
		}
	}
	paidRows := 0
	for _, r := range rows[1:] {
		if r[col["creator_id"]] != "crea" || r[col["limited_run_id"]] != "run-7" || r[col["user_hash"]] == "ann" || r[col["user_hash"]] == "ben" {
			t.Fatalf("claims.csv row %v", r)
		}
		switch r[col["paid_minor"]] {
		case "4500":
			paidRows++
			if r[col["refunded_minor"]] != "1000" {
				t.Fatalf("the paid claim's row %v", r)
			}
		case "0":
			if r[col["refunded_minor"]] != "0" {
				t.Fatalf("the unpaid claim's row %v", r)
			}
		default:
			t.Fatalf("claims.csv row %v", r)
		}
	}
	if paidRows != 1 {
		t.Fatalf("%d paid rows in claims.csv", paidRows)
	}

	pub := filepath.Join(data, imageSigningKeyFile+".pub")
	out.Reset()
	if err := run(ctx, []string{"verify", "--key", pub, bundle}, &out, &errOut); err != nil || !strings.Contains(out.String(), "ok: ") ||
		!strings.Contains(out.String(), "manifest signed by key") {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	// Claim the refund never happened, in a copy of the zip.
	tampered := filepath.Join(t.TempDir(), "tampered.zip")
	f, err := os.Create(tampered)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, b := range files {
		if name == "claims.csv" {
			b = bytes.Replace(b, []byte(",4500,1000"), []byte(",4500,0"), 1)
			if bytes.Equal(b, files[name]) {
				t.Fatal("nothing to tamper with in claims.csv")
			}
		}
		w, _ := zw.Create(name)
		_, _ = w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out.Reset()
	err = run(ctx, []string{"verify", "--key", pub, tampered}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), "FAIL claims.csv") {
		t.Fatalf("verify of a bundle with an altered claims.csv: %v\n%s", err, out.String())
	}
}

func unzip(t *testing.T, path string) map[string][]byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}
