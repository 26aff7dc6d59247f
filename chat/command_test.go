package chat

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

func TestParse(t *testing.T) {
	tests := []struct {
		text string
		want Command
	}{
		{"!drop hoodie 50 90s", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second}},
		{"!drop open hoodie 50 2m", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 2 * time.Minute}},
		{"  !DROP OPEN tee-v2 5 1m30s  ", Command{Name: CmdDrop, Action: ActionOpen, SKU: "tee-v2", Stock: 5, Duration: 90 * time.Second}},
		{"!drop open hoodie 50 90s 25", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, PriceMinor: 2500}},
		{"!drop open hoodie 50 90s $24.99 raffle MOON42", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, PriceMinor: 2499, Currency: "USD", Policy: claims.Raffle, Code: "MOON42"}},
		{"!drop open hoodie 50 90s 12.5EUR fcfs", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, PriceMinor: 1250, Currency: "EUR", Policy: claims.FCFS}},
		{"!drop open hoodie 50 90s bucketed", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, Policy: claims.Bucketed}},
		{"!drop open hoodie 50 90s moon42", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, Code: "MOON42"}},
		{"!drop open hoodie 50 90s free raffle", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, Policy: claims.Raffle}},
		{"!drop open hoodie 50 90s fcfs listen", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, Policy: claims.FCFS, Listen: true}},
		{"!drop open hoodie 50 90s LISTEN", Command{Name: CmdDrop, Action: ActionOpen, SKU: "hoodie", Stock: 50, Duration: 90 * time.Second, Listen: true}},
		{"!claim 028771a4", Command{Name: CmdClaim, Code: "028771A4"}},
		{"!drop close", Command{Name: CmdDrop, Action: ActionClose}},
		{"!drop extend 30s", Command{Name: CmdDrop, Action: ActionExtend, Duration: 30 * time.Second}},
		{"!stock", Command{Name: CmdStock}},
		{"!stock please", Command{Name: CmdStock}},
		{"!claim", Command{Name: CmdClaim}},
		{"!claim moon42", Command{Name: CmdClaim, Code: "MOON42"}},
		{"!Claim MOON42 pls", Command{Name: CmdClaim, Code: "MOON42"}},
		{"!clip", Command{Name: CmdClip}},
		{"!clip what a  moment\t!", Command{Name: CmdClip, Label: "what a moment !"}},
		{"!mytoken", Command{Name: CmdMyToken}},
	}
	for _, tt := range tests {
		got, err := Parse("!", tt.text)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.text, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.text, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		text    string
		err     error
		mention string // the reply must say this
	}{
		{"hello chat", ErrNotCommand, ""},
		{"", ErrNotCommand, ""},
		{"!", ErrNotCommand, ""},
		{"! claim", ErrNotCommand, ""},
		{"!uptime", ErrUnknownCommand, "unknown command !uptime"},
		{"!drop", ErrBadArguments, "usage"},
		{"!drop hoodie", ErrBadArguments, "usage"},
		{"!drop hoodie 50", ErrBadArguments, "usage"},
		{"!drop hoodie fifty 90s", ErrBadArguments, "quantity"},
		{"!drop hoodie 0 90s", ErrBadArguments, "quantity"},
		{"!drop hoodie -3 90s", ErrBadArguments, "quantity"},
		{"!drop hoodie 50 90", ErrBadArguments, "needs a unit"},
		{"!drop hoodie 50 soon", ErrBadArguments, "not a duration"},
		{"!drop hoodie 50 500ms", ErrBadArguments, "at least 1s"},
		{"!drop hoodie 50 48h", ErrBadArguments, "at most"},
		{"!drop hoodie 50 -5s", ErrBadArguments, "at least 1s"},
		{"!drop h@odie 50 90s", ErrBadArguments, "sku"},
		{"!drop hoodie 50 90s 12.345", ErrBadArguments, "price"},
		{"!drop hoodie 50 90s $", ErrBadArguments, "price"},
		{"!drop hoodie 50 90s raffle 25", ErrBadArguments, "not a price"},
		{"!drop hoodie 50 90s MOON42 raffle", ErrBadArguments, "out of place"},
		{"!drop hoodie 50 90s 25 raffle MOON42 extra", ErrBadArguments, "too many"},
		{"!drop hoodie 50 90s x", ErrBadArguments, "claim code"},
		{"!drop hoodie 5 90s fcfs fcfs", ErrBadArguments, "policy is given twice"},
		{"!drop hoodie 5 90s 25 raffle Bucketed", ErrBadArguments, "policy is given twice"},
		{"!drop close now", ErrBadArguments, "no arguments"},
		{"!drop extend", ErrBadArguments, "usage"},
		{"!drop extend forever", ErrBadArguments, "not a duration"},
		{"!claim a!", ErrBadArguments, "3-16"},
		{"!claim " + strings.Repeat("x", 600), ErrBadArguments, "too long"},
	}
	for _, tt := range tests {
		_, err := Parse("!", tt.text)
		if !errors.Is(err, tt.err) {
			t.Errorf("Parse(%q) = %v, want %v", tt.text, err, tt.err)
			continue
		}
		if tt.mention != "" && !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("Parse(%q) says %q, want it to mention %q", tt.text, err, tt.mention)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	if c, err := Parse("?", "?claim"); err != nil || c.Name != CmdClaim {
		t.Fatalf("custom prefix: %+v %v", c, err)
	}
	if _, err := Parse("?", "!claim"); !errors.Is(err, ErrNotCommand) {
		t.Fatalf("other prefix should be plain chat, got %v", err)
	}
}

func TestRoleFromBadges(t *testing.T) {
	for _, tt := range []struct {
		badges []string
		want   Role
	}{
		{nil, Viewer},
		{[]string{"premium", "sub-gifter"}, Viewer},
		{[]string{"subscriber"}, Subscriber},
		{[]string{"founder"}, Subscriber},
		{[]string{"subscriber", "vip"}, VIP},
		{[]string{"moderator", "subscriber"}, Moderator},
		{[]string{"broadcaster", "subscriber"}, Broadcaster},
	} {
		if got := RoleFromBadges(tt.badges...); got != tt.want {
			t.Errorf("RoleFromBadges(%v) = %v, want %v", tt.badges, got, tt.want)
		}
	}
}

// FuzzParse: no input panics, errors are the documented ones, and what
// parses is within the limits the claims service will accept.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"!drop hoodie 50 90s", "!drop open tee 5 1m30s $9.99 raffle MOON", "!claim ABC", "!clip wow", "!drop extend 30s", "!mytoken", "!stock", "hi"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse("!", text)
		if err != nil {
			if !errors.Is(err, ErrNotCommand) && !errors.Is(err, ErrUnknownCommand) && !errors.Is(err, ErrBadArguments) {
				t.Fatalf("Parse(%q): undocumented error %v", text, err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("Parse(%q): reply too long for chat: %d", text, len(err.Error()))
			}
			return
		}
		switch c.Name {
		case CmdDrop:
			switch c.Action {
			case ActionOpen:
				if !isSKU(c.SKU) || c.Stock < 1 || c.Stock > claims.MaxStock || c.Duration < time.Second || c.Duration > claims.MaxDuration || c.PriceMinor < 0 {
					t.Fatalf("Parse(%q) = %+v: out of range", text, c)
				}
				if c.Policy != "" && !c.Policy.Valid() {
					t.Fatalf("Parse(%q): policy %q", text, c.Policy)
				}
			case ActionExtend:
				if c.Duration < time.Second {
					t.Fatalf("Parse(%q): extend %v", text, c.Duration)
				}
			case ActionClose:
			default:
				t.Fatalf("Parse(%q): action %q", text, c.Action)
			}
		case CmdClaim:
			if c.Code != "" && !isCode(c.Code) {
				t.Fatalf("Parse(%q): code %q", text, c.Code)
			}
		case CmdClip:
			if len([]rune(c.Label)) > MaxLabelLen {
				t.Fatalf("Parse(%q): label too long", text)
			}
		case CmdStock, CmdMyToken:
		default:
			t.Fatalf("Parse(%q): name %q", text, c.Name)
		}
	})
}

func TestParseWindowBudget(t *testing.T) {
	got, err := Parse("!", "!drop hoodie 50 90s $25 window=8s MOON42")
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy != claims.Window || got.Budget == nil || *got.Budget != 8*time.Second || got.PriceMinor != 2500 || got.Code != "MOON42" {
		t.Fatalf("Parse: %+v", got)
	}
	if got, err := Parse("!", "!drop hoodie 50 90s window"); err != nil || got.Policy != claims.Window || got.Budget != nil {
		t.Fatalf("plain window: %+v %v", got, err)
	}
	for _, text := range []string{"!drop hoodie 50 90s window=3m", "!drop hoodie 50 90s window=soon"} {
		if _, err := Parse("!", text); !errors.Is(err, ErrBadArguments) || !strings.Contains(err.Error(), "window=8s") {
			t.Errorf("Parse(%q): %v, want a bad-arguments error showing window=8s", text, err)
		}
	}
}
