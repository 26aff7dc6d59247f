package claims_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims"
)

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, ed25519.SeedSize) }

func TestReceiptSignVerifyRotate(t *testing.T) {
	old, err := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), seed(1))
	if err != nil {
		t.Fatal(err)
	}
	r := claims.Receipt{HoldID: "d1-3", DropID: "d1", SKU: "hoodie", LimitedRunID: "run1", Unit: 1, Amount: 4500, Currency: "EUR",
		PaidAt: 1700000000, Holder: old.HolderID("crea", "twitch:123"), Method: "wallet"}
	text, err := old.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	// Rotated: a new key signs, the old one still verifies.
	rotated, _ := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), seed(2), seed(1))
	got, err := claims.VerifyReceipt(text, rotated.Keys())
	if err != nil || got.HoldID != "d1-3" || got.Amount != 4500 || got.KeyID != old.Keys().Keys[0].ID {
		t.Fatalf("verify with rotated keys: %+v %v", got, err)
	}
	newer, _ := rotated.Sign(r)
	if _, err := claims.VerifyReceipt(newer, old.Keys()); !errors.Is(err, claims.ErrReceiptKey) {
		t.Fatalf("a receipt of an unpublished key: %v", err)
	}
	// One changed byte of the payload breaks the signature.
	parts := strings.Split(text, ".")
	forged := claims.Receipt(got)
	forged.Amount = 1
	other, _ := old.Sign(forged)
	tampered := parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2]
	if _, err := claims.VerifyReceipt(tampered, old.Keys()); !errors.Is(err, claims.ErrReceiptForged) {
		t.Fatalf("tampered receipt: %v", err)
	}
	if strings.Contains(text, "twitch") || strings.Contains(text, "123") && strings.Contains(text, "twitch:123") {
		t.Fatalf("receipt carries the platform id: %s", text)
	}
	if old.HolderID("crea", "twitch:123") == old.HolderID("other", "twitch:123") {
		t.Fatal("holder ids of two creators can be joined")
	}
}

func FuzzParseReceipt(f *testing.F) {
	s, _ := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), seed(1))
	good, _ := s.Sign(claims.Receipt{HoldID: "d1-1", DropID: "d1", SKU: "x", Unit: 1, Amount: 1, Currency: "EUR", Holder: "h"})
	f.Add(good)
	f.Add("MDR1.e30.AAAA")
	f.Add("")
	f.Add("MDR1..")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := s.Verify(text)
		if err == nil {
			// Whatever verifies must re-sign to a receipt that verifies.
			again, serr := s.Sign(r)
			if serr != nil {
				t.Fatal(serr)
			}
			if _, err := s.Verify(again); err != nil {
				t.Fatalf("re-signed receipt fails: %v", err)
			}
		}
	})
}
