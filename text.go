package microdrop

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text from outside (logins, display names, SKU, title, chat text) passes
// one check at every edge, so what the overlay puts on stream is what a
// person can read: no invalid UTF-8, no control characters (NUL, ESC
// sequences, C1), no bidi overrides or isolates (U+202A-U+202E,
// U+2066-U+2069), no zero-width or other invisible format characters
// (U+200B-U+200F, U+2060, U+FEFF, ...), no line or paragraph separators.

// badRune reports a rune the check refuses.
func badRune(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) ||
		r == '\u180e' || r == '\u3164' || r == '\uffa0' // invisible fillers outside Cf
}

// CheckText refuses s with an EINVALID error naming field when it holds
// anything badRune refuses or more than maxRunes characters (no bound when
// maxRunes is 0). Tabs and newlines are refused too: none of our fields is
// multi-line.
func CheckText(field, s string, maxRunes int) error {
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s is not valid UTF-8", field)
	}
	n := 0
	for _, r := range s {
		if badRune(r) {
			return Errorf(EINVALID, "%s holds a control, bidi or invisible character (U+%04X); send plain text", field, r)
		}
		n++
	}
	if maxRunes > 0 && n > maxRunes {
		return Errorf(EINVALID, "%s is longer than %d characters", field, maxRunes)
	}
	return nil
}

// DisplayText is s made safe to show where refusing would lose a platform's
// real name or message: invalid bytes and refused runes are dropped, runs of
// space collapse, and it is cut to maxRunes (no cut when 0).
func DisplayText(s string, maxRunes int) string {
	var b strings.Builder
	n, space := 0, false
	for _, r := range strings.ToValidUTF8(s, "") {
		if badRune(r) {
			continue
		}
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if maxRunes > 0 && n >= maxRunes {
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
			if maxRunes > 0 && n >= maxRunes {
				break
			}
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
