package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	mdnats "github.com/microdrop/microdrop/claims/nats"
	"github.com/microdrop/microdrop/claims/nats/natstest"
	"github.com/microdrop/microdrop/claims/postgres"
)

const replicaAdminToken = "replica-test-admin-token-0123456789"

// startReplica runs one replica as a child process in its own process
// group (so the test can really kill it), sharing Postgres and NATS.
func startReplica(t *testing.T, pgURL, busURL string) *server {
	return startServer(t, t.TempDir(), freePort(t), []string{"--ledger", pgURL, "--bus", busURL},
		"MICRODROP_ADMIN_TOKEN="+replicaAdminToken, "MICRODROP_TOKEN_KEYS=replica-test-token-key-0123456789",
		"MICRODROP_CLAIM_RATE=1000000", "MICRODROP_CLAIM_BURST=1000000", "MICRODROP_LOG_LEVEL=info")
}

func apiCall(ctx context.Context, c *http.Client, method, url string, in, out any) (int, error) {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+replicaAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode, nil
}

// Three replicas behind a round-robin client share Postgres and NATS; the
// replica deciding the drop is killed with SIGKILL mid-burst. Afterwards:
// no oversell, nobody over the cap, every acknowledged win is in Postgres,
// and a subscriber got every event in the stream, in order, including every
// win decided after the kill.
func TestThreeReplicasSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three replicas")
	}
	pgURL := postgres.TestURL(t)
	busURL := natstest.BusURL(t)
	reps := []*server{}
	for i := 0; i < 3; i++ {
		reps = append(reps, startReplica(t, pgURL, busURL))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The overlay-like subscriber: a Bus subscription of its own, as each
	// replica's overlay hub has.
	servers, o, err := mdnats.ParseURL(busURL)
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := mdnats.Open(ctx, servers, o)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	sub := watcher.Subscribe(1 << 16)

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	const stock, capPerUser, users, total, conc = 1000, 2, 800, 3000, 48
	var opened claims.DropResponse
	grace := claims.Duration(0)
	if _, err := apiCall(ctx, client, "POST", reps[0].url+"/api/drops", claims.OpenRequest{Channel: "replicas", SKU: "hoodie", Stock: stock,
		Cap: capPerUser, Duration: claims.Duration(time.Hour), Grace: &grace, Policy: claims.FCFS}, &opened); err != nil || opened.Drop == nil {
		t.Fatalf("open: %v", err)
	}
	id := opened.Drop.ID

	var next, errs, rejected atomic.Int64
	var killedAt atomic.Int64
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				if i == 400 {
					reps[0].kill() // the drop's decider, mid-burst
					killedAt.Store(time.Now().UnixNano())
					t.Logf("killed %s (pid %d) after %d claims", reps[0].url, reps[0].cmd.Process.Pid, i)
				}
				user := fmt.Sprintf("user%04d", i%users)
				var res claims.ClaimResult
				status, err := apiCall(ctx, client, "POST", reps[i%3].url+"/api/drops/"+id+"/claims", claims.ClaimBody{UserID: user, Login: user}, &res)
				switch {
				case err != nil || status >= 500:
					errs.Add(1) // never acknowledged: a viewer would retry
				case status >= 300:
					rejected.Add(1)
				case res.Token != "":
					mu.Lock()
					acked[res.Token] = user
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("burst: %d acknowledged wins, %d rejected, %d errors (claims sent to the killed replica or in flight at the kill)",
		len(acked), rejected.Load(), errs.Load())

	// Close through a survivor; it reaches whichever replica took over.
	var closed claims.DropResponse
	if status, err := apiCall(ctx, client, "POST", reps[1].url+"/api/drops/"+id+"/close", nil, &closed); err != nil || (status != 200 && status != 409) {
		t.Fatalf("close via survivor: %d %v", status, err)
	}

	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var state string
	var remaining int
	for i := 0; ; i++ {
		if err := conn.QueryRow(ctx, "SELECT state, remaining FROM drops WHERE id = $1", id).Scan(&state, &remaining); err != nil {
			t.Fatal(err)
		}
		if claims.State(state).Final() || i > 200 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !claims.State(state).Final() {
		t.Fatalf("drop still %s after close", state)
	}
	type win struct {
		user    string
		unit    int
		decided int64
	}
	rows, err := conn.Query(ctx, "SELECT token, user_id, unit, decided_at FROM entries WHERE drop_id = $1 AND outcome = 'won'", id)
	if err != nil {
		t.Fatal(err)
	}
	wins := map[string]win{}
	perUser := map[string]int{}
	for rows.Next() {
		var tok string
		var w win
		if err := rows.Scan(&tok, &w.user, &w.unit, &w.decided); err != nil {
			t.Fatal(err)
		}
		wins[tok] = w
		perUser[w.user]++
		if perUser[w.user] > capPerUser {
			t.Errorf("user %s holds %d units, cap %d", w.user, perUser[w.user], capPerUser)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(wins) > stock || remaining != stock-len(wins) {
		t.Fatalf("%d wins of stock %d, remaining %d: oversold or stock disagrees", len(wins), stock, remaining)
	}
	for tok, user := range acked {
		if w, ok := wins[tok]; !ok || w.user != user {
			t.Fatalf("acknowledged win %s for %s is not in Postgres", tok, user)
		}
	}
	if len(acked) == 0 || errs.Load() == total {
		t.Fatal("the burst did not exercise anything")
	}

	// The subscriber saw the drop's events in stream order.
	var final microdrop.Kind = microdrop.DropClosed
	if state == string(claims.SoldOut) {
		final = microdrop.SoldOut
	}
	var got []microdrop.Event
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case e := <-sub.C():
			if len(got) > 0 && e.Seq <= got[len(got)-1].Seq {
				t.Fatalf("event seq %d after %d", e.Seq, got[len(got)-1].Seq)
			}
			got = append(got, e)
			done = e.DropID == id && e.Kind == final
		case <-timeout:
			t.Fatalf("subscriber saw %d events and not the drop's %s", len(got), final)
		}
	}
	type unitKey struct {
		user string
		unit int
	}
	seen := map[unitKey]bool{}
	for _, e := range got {
		if e.Kind == microdrop.Claimed && e.DropID == id {
			k := unitKey{e.Claim.UserID, e.Claim.Units}
			if seen[k] {
				t.Fatalf("win %v announced twice", k)
			}
			seen[k] = true
		}
	}
	lost, afterKill := 0, 0
	for _, w := range wins {
		if w.decided > killedAt.Load() {
			afterKill++
		}
		if seen[unitKey{w.user, w.unit}] {
			continue
		}
		if w.decided > killedAt.Load() {
			t.Fatalf("win of %s unit %d, decided after the kill by a survivor, was never announced", w.user, w.unit)
		}
		lost++ // committed by the killed replica just before it died, not yet published
	}
	if afterKill == 0 {
		t.Fatal("no win was decided after the kill: the takeover was not exercised")
	}
	if len(seen) > len(wins) {
		t.Fatalf("%d wins announced, %d in Postgres", len(seen), len(wins))
	}
	t.Logf("%d wins in Postgres (%d acknowledged, %d decided after the kill), %d events, %d wins committed by the killed replica but not announced", len(wins), len(acked), afterKill, len(got), lost)
}
