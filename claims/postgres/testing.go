package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultTestURL is the database tests use unless MICRODROP_TEST_POSTGRES
// names another.
const DefaultTestURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// TestURL creates a fresh schema for one test (dropped when it ends) and
// returns a postgres URL whose search_path selects it, so parallel tests and
// runs never share tables. Without a reachable server the test is skipped,
// unless CI=true, where it fails.
func TestURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("MICRODROP_TEST_POSTGRES")
	if base == "" {
		base = DefaultTestURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		msg := "PostgreSQL is not reachable at " + base + " (" + err.Error() + "); start one, e.g.\n" +
			"  docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:16\n" +
			"or set MICRODROP_TEST_POSTGRES to a database URL"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "mdtest_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// MustOpen opens a ledger on a fresh schema, closed when the test ends.
func MustOpen(tb testing.TB) *Ledger {
	tb.Helper()
	return MustOpenURL(tb, TestURL(tb), Options{})
}

// MustOpenURL opens a ledger on url (another replica of the same schema,
// for instance), closed when the test ends.
func MustOpenURL(tb testing.TB, u string, o Options) *Ledger {
	tb.Helper()
	l, err := Open(context.Background(), u, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}
