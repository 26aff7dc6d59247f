package ingest

import (
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
)

// RTSP credentials: publishing needs the publish user and password (or,
// without them, the WHIP token as the password of user "publish", or of any
// user over Basic); reading needs the read credentials when they
// are set. gortsplib answers 401 with a WWW-Authenticate challenge to a
// request without credentials and closes the connection on wrong ones.

// publishGuarded reports whether ANNOUNCE needs credentials.
func (c Config) publishGuarded() bool {
	return c.RTSPPublishPass != "" || c.WHIPToken != ""
}

func (h *rtspHandler) checkPublish(conn *gortsplib.ServerConn, req *base.Request, path string) (*base.Response, error) {
	cfg := h.s.cfg
	if !cfg.publishGuarded() {
		return nil, nil
	}
	user, pass := cfg.RTSPPublishUser, cfg.RTSPPublishPass
	if user == "" {
		user = "publish"
	}
	if pass == "" {
		pass = cfg.WHIPToken
	}
	// VerifyCredentials also arms the digest challenge sent with a 401.
	if conn.VerifyCredentials(req, user, pass) {
		return nil, nil
	}
	if cfg.RTSPPublishPass == "" && basicPassword(req, cfg.WHIPToken) {
		return nil, nil
	}
	h.s.log.Warn("rtsp publish refused: missing or wrong credentials (use rtsp://publish:<password>@host/path)", "path", path,
		"remote", conn.NetConn().RemoteAddr().String(), "credentials_sent", len(req.Header["Authorization"]) > 0)
	return &base.Response{StatusCode: base.StatusUnauthorized, StatusMessage: "Publishing Needs Credentials"}, liberrors.ErrServerAuth{}
}

func (h *rtspHandler) checkRead(conn *gortsplib.ServerConn, req *base.Request, path string) (*base.Response, error) {
	cfg := h.s.cfg
	if cfg.RTSPReadPass == "" {
		return nil, nil
	}
	user := cfg.RTSPReadUser
	if user == "" {
		user = "read"
	}
	if conn.VerifyCredentials(req, user, cfg.RTSPReadPass) {
		return nil, nil
	}
	if cfg.publishGuarded() {
		if r, _ := h.checkPublish(conn, req, path); r == nil {
			return nil, nil
		}
	}
	h.s.log.Warn("rtsp read refused: missing or wrong credentials", "path", path)
	return &base.Response{StatusCode: base.StatusUnauthorized, StatusMessage: "Reading Needs Credentials"}, liberrors.ErrServerAuth{}
}

// basicPassword accepts HTTP Basic credentials with any user name and the
// given password (the WHIP token, which has no user of its own).
func basicPassword(req *base.Request, want string) bool {
	for _, h := range req.Header["Authorization"] {
		enc, ok := strings.CutPrefix(h, "Basic ")
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil {
			continue
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if ok && subtle.ConstantTimeCompare([]byte(pass), []byte(want)) == 1 {
			return true
		}
	}
	return false
}
