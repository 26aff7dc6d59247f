package microdrop_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/microdrop/microdrop"
)

var hostile = map[string]string{
	"NUL":          "ann\x00",
	"ESC sequence": "ann\x1b[2J",
	"C1":           "ann\u009b",
	"RTL override": "ann\u202egnp.exe",
	"isolate":      "ann\u2066x",
	"zero width":   "an\u200bn",
	"ZWJ":          "an\u200dn",
	"BOM":          "\ufeffann",
	"invalid":      "ann\xff",
	"newline":      "ann\nbob",
	"line sep":     "ann\u2028",
	"filler":       "\u3164",
}

func TestCheckTextRefusesAndNamesTheField(t *testing.T) {
	for name, s := range hostile {
		err := microdrop.CheckText("login", s, 64)
		if microdrop.ErrorCode(err) != microdrop.EINVALID || !strings.Contains(microdrop.ErrorMessage(err), "login") {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, ok := range []string{"Ann", "Zoë", "日本語", "ann_01", "🎉", "a b"} {
		if err := microdrop.CheckText("login", ok, 64); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	if err := microdrop.CheckText("title", strings.Repeat("x", 121), 120); err == nil {
		t.Error("over-long text accepted")
	}
}

func TestDisplayTextStrips(t *testing.T) {
	for name, s := range hostile {
		got := microdrop.DisplayText(s, 25)
		if microdrop.CheckText("x", got, 25) != nil {
			t.Errorf("%s: %q still refused after stripping", name, got)
		}
	}
	if got := microdrop.DisplayText("  Zoë \u202e  Lee\x00 ", 0); got != "Zoë Lee" {
		t.Errorf("got %q", got)
	}
	if got := microdrop.DisplayText(strings.Repeat("é", 40), 25); utf8.RuneCountInString(got) != 25 {
		t.Errorf("cut to %d runes", utf8.RuneCountInString(got))
	}
}

func FuzzDisplayText(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := microdrop.DisplayText(s, 25)
		if err := microdrop.CheckText("x", got, 25); err != nil {
			t.Fatalf("DisplayText(%q) = %q, which CheckText refuses: %v", s, got, err)
		}
		if microdrop.CheckText("x", s, 0) == nil && utf8.RuneCountInString(s) <= 25 && strings.Join(strings.Fields(s), " ") != got {
			t.Fatalf("clean text %q changed to %q", s, got)
		}
	})
}
