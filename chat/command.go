package chat

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/microdrop/microdrop/claims"
)

// Command words. They are also the keys of Permissions and Cooldowns.
const (
	CmdDrop    = "drop"
	CmdStock   = "stock"
	CmdClaim   = "claim"
	CmdClip    = "clip"
	CmdMyToken = "mytoken"
)

// Drop actions.
const (
	ActionOpen   = "open"
	ActionClose  = "close"
	ActionExtend = "extend"
)

// Limits on what chat may ask for. Twitch caps a chat line at 500 characters.
const (
	MaxTextLen  = 500
	MaxLabelLen = 100
)

// Sentinel parse errors; a *ParseError wraps one of the last two.
var (
	// ErrNotCommand: the line is ordinary chat, not for the bot.
	ErrNotCommand = errors.New("chat: not a command")
	// ErrUnknownCommand: the prefix was used with a word the bot does not know.
	ErrUnknownCommand = errors.New("chat: unknown command")
	// ErrBadArguments: a known command with arguments that do not parse.
	ErrBadArguments = errors.New("chat: bad arguments")
)

// ParseError says what was wrong with a command, in words fit for chat.
type ParseError struct {
	Command string // "drop", "claim", ... or the unknown word
	Msg     string // short, helpful, safe to send to chat
	Err     error  // ErrUnknownCommand or ErrBadArguments
}

func (e *ParseError) Error() string { return e.Msg }
func (e *ParseError) Unwrap() error { return e.Err }

// Command is one parsed chat command.
type Command struct {
	Name   string // CmdDrop, CmdStock, CmdClaim, CmdClip, CmdMyToken
	Action string // for CmdDrop: ActionOpen, ActionClose, ActionExtend

	// !drop open
	SKU        string
	Stock      int
	Duration   time.Duration // also !drop extend
	PriceMinor int64
	Currency   string // empty: the claims default
	Policy     claims.Policy
	// Budget overrides a window drop's latency budget (window=8s).
	Budget *time.Duration
	Code   string // claim code the drop requires; also !claim CODE
	Listen bool   // the word "listen": claimed with codes heard in the audio cue

	Label string // !clip
}

// Usage lines, quoted in help replies.
const (
	usageDropOpen   = "!drop open <sku> <qty> <duration> [price] [window|window=8s|fcfs|bucketed|raffle] [code|listen], e.g. !drop hoodie 50 90s"
	usageDropExtend = "!drop extend <duration>, e.g. !drop extend 30s"
	usageCommands   = "commands: !claim [code], !stock, !clip [label], !mytoken; mods: !drop open|close|extend"
)

// Parse reads one chat line. It returns ErrNotCommand for ordinary chat and
// a *ParseError for a command it cannot use; it never panics on any input.
func Parse(prefix, text string) (Command, error) {
	if prefix == "" {
		prefix = "!"
	}
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, prefix) {
		return Command{}, ErrNotCommand
	}
	rest := text[len(prefix):]
	if rest == "" || unicode.IsSpace(firstRune(rest)) {
		return Command{}, ErrNotCommand
	}
	if len(text) > MaxTextLen || !utf8.ValidString(text) {
		return Command{}, &ParseError{Command: "", Msg: "that command is too long", Err: ErrBadArguments}
	}
	word, args := cut(rest)
	name := strings.ToLower(word)
	switch name {
	case CmdDrop:
		return parseDrop(args)
	case CmdStock:
		return Command{Name: CmdStock}, nil
	case CmdMyToken:
		return Command{Name: CmdMyToken}, nil
	case CmdClaim:
		code, _ := cut(args)
		if code != "" && !isCode(code) {
			return Command{}, bad(CmdClaim, "a claim code is 3-16 letters or digits: !claim CODE")
		}
		return Command{Name: CmdClaim, Code: claims.NormalizeCode(code)}, nil
	case CmdClip:
		label := cleanLabel(args)
		return Command{Name: CmdClip, Label: label}, nil
	}
	if len(word) > 32 {
		word = word[:32]
	}
	return Command{}, &ParseError{Command: word, Msg: "unknown command " + prefix + sanitize(word) + "; " + usageCommands, Err: ErrUnknownCommand}
}

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

// cut splits off the first whitespace-separated word.
func cut(s string) (word, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeftFunc(s[i:], unicode.IsSpace)
}

func bad(cmd, msg string) *ParseError {
	return &ParseError{Command: cmd, Msg: msg, Err: ErrBadArguments}
}

func parseDrop(args string) (Command, error) {
	f := strings.Fields(args)
	if len(f) == 0 {
		return Command{}, bad(CmdDrop, "usage: "+usageDropOpen+"; !drop close; "+usageDropExtend)
	}
	switch strings.ToLower(f[0]) {
	case ActionClose:
		if len(f) > 1 {
			return Command{}, bad(CmdDrop, "!drop close takes no arguments")
		}
		return Command{Name: CmdDrop, Action: ActionClose}, nil
	case ActionExtend:
		if len(f) != 2 {
			return Command{}, bad(CmdDrop, "usage: "+usageDropExtend)
		}
		d, err := parseDuration(f[1])
		if err != nil {
			return Command{}, bad(CmdDrop, err.Error()+"; usage: "+usageDropExtend)
		}
		return Command{Name: CmdDrop, Action: ActionExtend, Duration: d}, nil
	case ActionOpen:
		f = f[1:]
	}
	return parseOpen(f)
}

// parseOpen reads <sku> <qty> <duration> [price] [policy] [code]. The
// optional ones are told apart by their shape and must keep that order: a
// price starts with a digit or a currency sign, a policy is one of three
// words, anything else is the claim code.
func parseOpen(f []string) (Command, error) {
	usage := "usage: " + usageDropOpen
	if len(f) < 3 {
		return Command{}, bad(CmdDrop, usage)
	}
	if len(f) > 6 {
		return Command{}, bad(CmdDrop, "too many words; "+usage)
	}
	c := Command{Name: CmdDrop, Action: ActionOpen, SKU: f[0]}
	if !isSKU(c.SKU) {
		return Command{}, bad(CmdDrop, "the sku is 1-64 letters, digits, '.', '_' or '-'; "+usage)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 1 || n > claims.MaxStock {
		return Command{}, bad(CmdDrop, fmt.Sprintf("quantity must be a whole number from 1 to %d, got %q", claims.MaxStock, clip(f[1])))
	}
	c.Stock = n
	if c.Duration, err = parseDuration(f[2]); err != nil {
		return Command{}, bad(CmdDrop, err.Error())
	}
	const (
		wantPrice = iota
		wantPolicy
		wantCode
		done
	)
	next := wantPrice
	for _, w := range f[3:] {
		switch {
		case next <= wantPrice && looksLikePrice(w):
			minor, cur, err := parsePrice(w)
			if err != nil {
				return Command{}, bad(CmdDrop, err.Error())
			}
			c.PriceMinor, c.Currency = minor, cur
			next = wantPolicy
		case next <= wantPolicy && strings.HasPrefix(strings.ToLower(w), "window="):
			// A moderator's own budget: every claim in the first 8s is simultaneous.
			b, err := claims.ParseDuration(strings.ToLower(w[len("window="):]))
			if err != nil || b > claims.MaxBudget {
				return Command{}, bad(CmdDrop, fmt.Sprintf("%q: the window's budget is a duration up to %s, like window=8s", clip(w), claims.MaxBudget))
			}
			c.Policy, c.Budget = claims.Window, &b
			next = wantCode
		case next <= wantPolicy && claims.Policy(strings.ToLower(w)).Valid():
			c.Policy = claims.Policy(strings.ToLower(w))
			next = wantCode
		case next <= wantCode && claims.Policy(strings.ToLower(w)).Valid():
			// "fcfs fcfs" is a slip, not the claim code FCFS: a drop nobody
			// can claim without typing a policy name helps no one.
			return Command{}, bad(CmdDrop, fmt.Sprintf("the policy is given twice (%q); a claim code cannot be fcfs, bucketed or raffle", clip(w)))
		case next <= wantCode && strings.EqualFold(w, "listen") && !c.Listen:
			// A listen drop's codes rotate in the cue; "listen" is never
			// taken as a typed claim code.
			c.Listen = true
		case next <= wantCode:
			if !isCode(w) {
				return Command{}, bad(CmdDrop, fmt.Sprintf("%q is not a price, a policy (window, window=8s, fcfs, bucketed, raffle) or a claim code (3-16 letters or digits)", clip(w)))
			}
			c.Code = claims.NormalizeCode(w)
			next = done
		default:
			return Command{}, bad(CmdDrop, fmt.Sprintf("%q is out of place; %s", clip(w), usage))
		}
	}
	return c, nil
}

// parseDuration reads 90s, 2m, 1m30s. A bare number is refused: 90 could
// mean seconds or minutes.
func parseDuration(s string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("duration %q needs a unit, like %ss or %sm", clip(s), clip(s), clip(s))
	}
	d, err := time.ParseDuration(strings.ToLower(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (try 90s, 2m or 1m30s)", clip(s))
	}
	if d < time.Second {
		return 0, fmt.Errorf("duration must be at least 1s")
	}
	if d > claims.MaxDuration {
		return 0, fmt.Errorf("duration must be at most %s", claims.MaxDuration)
	}
	return d.Round(time.Millisecond), nil
}

var currencySigns = [...]struct{ sign, code string }{{"$", "USD"}, {"€", "EUR"}, {"£", "GBP"}}

func looksLikePrice(w string) bool {
	if w == "" {
		return false
	}
	if strings.EqualFold(w, "free") {
		return true
	}
	for _, c := range currencySigns {
		if strings.HasPrefix(w, c.sign) {
			return true
		}
	}
	return w[0] >= '0' && w[0] <= '9'
}

// parsePrice reads 25, 25.50, $25, €4.99, 12.50EUR or free into minor units.
func parsePrice(w string) (int64, string, error) {
	if strings.EqualFold(w, "free") {
		return 0, "", nil
	}
	cur := ""
	for _, c := range currencySigns {
		if strings.HasPrefix(w, c.sign) {
			cur, w = c.code, w[len(c.sign):]
			break
		}
	}
	if len(w) > 3 {
		if suf := w[len(w)-3:]; isLetters(suf) {
			if cur != "" && !strings.EqualFold(cur, suf) {
				return 0, "", fmt.Errorf("price %q names two currencies", clip(w))
			}
			cur, w = strings.ToUpper(suf), w[:len(w)-3]
		}
	}
	errBad := fmt.Errorf("price %q is not an amount like 25, 25.50 or $25", clip(w))
	whole, frac, hasFrac := strings.Cut(w, ".")
	if whole == "" || !isDigits(whole) || len(whole) > 9 {
		return 0, "", errBad
	}
	if hasFrac && (len(frac) == 0 || len(frac) > 2 || !isDigits(frac)) {
		return 0, "", errBad
	}
	n, _ := strconv.ParseInt(whole, 10, 64)
	minor := n * 100
	if hasFrac {
		f, _ := strconv.ParseInt(frac, 10, 64)
		if len(frac) == 1 {
			f *= 10
		}
		minor += f
	}
	if minor > math.MaxInt32*100 {
		return 0, "", errBad
	}
	return minor, cur, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return s != ""
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isCode(s string) bool {
	if len(s) < 3 || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

func isSKU(s string) bool {
	if len(s) < 1 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// cleanLabel keeps a clip label printable and short.
func cleanLabel(s string) string {
	s = strings.TrimSpace(sanitize(strings.Join(strings.Fields(s), " ")))
	if utf8.RuneCountInString(s) > MaxLabelLen {
		s = string([]rune(s)[:MaxLabelLen])
	}
	return s
}

// sanitize drops control and format characters so echoed text cannot mangle
// a chat line.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
}

// clip shortens user input quoted back in an error.
func clip(s string) string {
	s = sanitize(s)
	if utf8.RuneCountInString(s) > 24 {
		return string([]rune(s)[:24]) + "…"
	}
	return s
}
