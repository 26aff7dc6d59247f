package twitch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// createMarker calls Create Stream Marker directly instead of through
// helix: nicklaw5/helix v2.32.0 sends user_id and description as query
// parameters with no body, while Twitch reads them from a JSON body and
// answers such a request 400, so no marker was ever made.
func (c *Client) createMarker(ctx context.Context, description string) error {
	body, err := json.Marshal(struct {
		UserID      string `json:"user_id"`
		Description string `json:"description,omitempty"`
	}{c.chanID, description})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.APIURL, "/")+"/streams/markers", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Client-Id", c.cfg.ClientID)
	req.Header.Set("Authorization", "Bearer "+c.token())
	resp, err := c.cfg.HTTP.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("twitch: create stream marker: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(msg, &e)
		return fmt.Errorf("twitch: create stream marker: status %d: %s", resp.StatusCode, e.Message)
	}
	return nil
}
