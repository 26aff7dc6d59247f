package twitch

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nicklaw5/helix/v2"

	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
)

// TestMarkerSentAsJSONBody: Twitch reads Create Stream Marker's user_id
// and description from a JSON body. The library call (query parameters,
// no body) is refused as Twitch refuses it; the client's own call makes
// the marker, description included.
func TestMarkerSentAsJSONBody(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{})
	o := f.srv.Options()
	api, err := helix.NewClient(&helix.Options{ClientID: o.ClientID, UserAccessToken: o.Token, APIBaseURL: f.srv.APIURL()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := api.CreateStreamMarker(&helix.CreateStreamMarkerParams{UserID: o.Broadcaster.ID, Description: "via query"})
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("query-parameter marker answered %d, want 400 as Twitch answers", r.StatusCode)
	}
	// A JSON body sent without its content type is refused too.
	req, _ := http.NewRequest(http.MethodPost, f.srv.APIURL()+"/streams/markers", bytes.NewReader([]byte(`{"user_id":"2002"}`)))
	req.Header.Set("Client-Id", o.ClientID)
	req.Header.Set("Authorization", "Bearer "+o.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("body without Content-Type answered %d, want 400", resp.StatusCode)
	}
	if n := len(f.srv.State().Markers); n != 0 {
		t.Fatalf("%d markers made from refused requests", n)
	}
	if err := f.client.createMarker(context.Background(), "microdrop clip: big moment"); err != nil {
		t.Fatal(err)
	}
	st := f.srv.State()
	if len(st.Markers) != 1 || st.Markers[0].UserID != "2002" || !strings.Contains(st.Markers[0].Description, "big moment") {
		t.Fatalf("markers %+v", st.Markers)
	}
}

// TestMarkerNotEditor: a bot that is not an editor of the channel is
// refused (403) and the drop goes on.
func TestMarkerNotEditor(t *testing.T) {
	f := mustSetup(t, twitchtest.Options{NotEditor: true})
	if err := f.client.createMarker(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("not an editor: %v", err)
	}
	f.openDrop(t, 1)
}
