package claims

import (
	"bytes"
	"crypto/rand"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

func FuzzDecodeOpenRequest(f *testing.F) {
	f.Add([]byte(`{"channel":"streamer","sku":"hoodie","stock":50,"duration":"90s","policy":"bucketed"}`))
	f.Add([]byte(`{"stages":[{"offset":"0s","cap":1,"eligible":{"subscribers":true}}]}`))
	f.Add([]byte(`{"grace":"-5s"}`))
	f.Add([]byte(`{"channel":"streamer","sku":"hoodie","stock":50,"duration":"90s","policy":"window","budget":"6s"}`))
	f.Add([]byte(`{"channel":"streamer","sku":"hoodie","stock":50,"duration":"90s","policy":"fcfs","budget":"3m"}`))
	f.Add([]byte(`{"stock":1e400}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req OpenRequest
		err := microdrop.DecodeBody(bytes.NewReader(body), &req)
		if err != nil {
			if microdrop.ErrorCode(err) != microdrop.EINVALID || microdrop.ErrorMessage(err) == "" {
				t.Fatalf("decode error is not a clear invalid error: %v", err)
			}
			return
		}
		// A decoded request is validated, never trusted: validation must
		// not panic and must give a clear error or a drop.
		s := &Service{opts: Options{}, now: fixedNow, rand: rand.Reader}
		s.opts.fill()
		s.budgets = newBudgets(s.opts.Budget)
		if d, err := s.validateOpen(&req, fixedNow()); err == nil && (d.Stock < 1 || d.Cap < 1 || d.ClosesAt.Before(d.OpensAt)) {
			t.Fatalf("validation let through %+v", d)
		} else if err != nil && microdrop.ErrorCode(err) != microdrop.EINVALID {
			t.Fatalf("validation error is not invalid: %v", err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	s, _ := NewTokenSigner([]byte("fuzz-key-0123456789"))
	f.Add(s.New())
	f.Add("abcd-efgh-jkmn-pqrs")
	f.Add("OOOOIIIILLLL0000")
	f.Add("")
	f.Add("ÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅ")
	f.Fuzz(func(t *testing.T, text string) {
		canon, raw, err := ParseToken(text)
		if err != nil {
			if microdrop.ErrorCode(err) != microdrop.EINVALID {
				t.Fatalf("parse error not invalid: %v", err)
			}
			return
		}
		if len(canon) != TokenLength || len(raw) != tokenIDBytes+tokenMACBytes {
			t.Fatalf("parsed %q into %q (%d bytes)", text, canon, len(raw))
		}
		again, _, err := ParseToken(canon)
		if err != nil || again != canon {
			t.Fatalf("canonical form does not round-trip: %q -> %q, %v", canon, again, err)
		}
		if _, err := s.Verify(text); err != nil && microdrop.ErrorCode(err) != microdrop.EFORBIDDEN {
			t.Fatalf("verify of a well-formed token: %v", err)
		}
	})
}

func fixedNow() time.Time { return time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC) }

func FuzzIDChars(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	for _, s := range []string{"", "a", "user_123-x", "has space", "ünïcode", strings.Repeat("a", 64), strings.Repeat("a", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := idPattern.MatchString(s), re.MatchString(s); got != want {
			t.Fatalf("idChars(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
