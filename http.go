package microdrop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds every JSON body the API reads.
const MaxBodyBytes = 64 << 10

// StatusOf maps a domain error code to an HTTP status.
func StatusOf(code string) int {
	switch code {
	case EINVALID:
		return http.StatusBadRequest
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EFORBIDDEN:
		return http.StatusForbidden
	case ENOTFOUND:
		return http.StatusNotFound
	case ECONFLICT:
		return http.StatusConflict
	case ESOLDOUT:
		return http.StatusGone
	case ERATELIMIT:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON every error answers with.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

// WriteError writes err as {"code","message"} with its status. Internal
// error text is never sent.
func WriteError(w http.ResponseWriter, err error) {
	code := ErrorCode(err)
	status := StatusOf(code)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		code, status = EINTERNAL, http.StatusServiceUnavailable
	}
	if ErrorReason(err) == ReasonUnavailable {
		status = http.StatusServiceUnavailable
	}
	WriteJSON(w, status, ErrorBody{Code: code, Message: ErrorMessage(err), Reason: ErrorReason(err)})
}

// WriteJSON writes v as JSON with status, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads one JSON object of at most MaxBodyBytes into v, refusing
// unknown fields, trailing data and non-JSON content types.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf(EINVALID, "send the body as application/json")
		}
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	return DecodeBody(body, v)
}

// DecodeBody decodes one JSON object from body with the same rules as
// DecodeJSON, for callers that have read the body already.
func DecodeBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return Errorf(EINVALID, "body is larger than %d bytes", MaxBodyBytes)
		case errors.Is(err, io.EOF):
			return Errorf(EINVALID, "body is empty; send a JSON object")
		case errors.As(err, &se):
			return Errorf(EINVALID, "body is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return Errorf(EINVALID, "field %q must be %s", te.Field, te.Type.Kind())
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return Errorf(EINVALID, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			msg := err.Error()
			if len(msg) > 200 || strings.Contains(msg, "json: ") && !strings.Contains(msg, "duration") {
				msg = "body does not match the expected JSON"
			}
			return Errorf(EINVALID, "%s", msg)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(EINVALID, "body has data after the JSON object")
	}
	return nil
}

// String is the body as one line, for logs and test failures.
func (b ErrorBody) String() string { return fmt.Sprintf("%s: %s", b.Code, b.Message) }
