package highlight

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/microdrop/microdrop"
)

// ImageHandlerDeps is what the image routes need.
type ImageHandlerDeps struct {
	Images *Images
	Admin  interface{ Check(r *http.Request) error }
	// DropExists reports whether a drop id is known to the ledger, so a
	// product image is never linked to a drop that does not exist.
	DropExists func(ctx context.Context, id string) (bool, error)
	Logger     *slog.Logger
}

// NewImageHandler serves product images:
//
//	POST /api/images              admin: upload (multipart field "image", or the raw body)
//	GET  /api/images/{sha}        the image's record and signature (JSON)
//	PUT  /api/drops/{id}/image    admin: {"sha256": "..."} makes it the drop's product image
//	GET  /images/{sha}            the bytes, cached forever: the name is the content
func NewImageHandler(d ImageHandlerDeps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	h := &imageHandler{d: d, log: d.Logger.With("component", "images")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/images", h.upload)
	mux.HandleFunc("GET /api/images/{sha}", h.record)
	mux.HandleFunc("PUT /api/drops/{id}/image", h.setDrop)
	mux.HandleFunc("GET /images/{sha}", h.serve)
	return mux
}

type imageHandler struct {
	d   ImageHandlerDeps
	log *slog.Logger
}

// imageView is the JSON of a stored image.
type imageView struct {
	ImageRecord
	URL string `json:"url"`
}

func viewOf(rec ImageRecord) imageView {
	return imageView{ImageRecord: rec, URL: "/images/" + rec.SHA256}
}

func (h *imageHandler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadImage), errors.Is(err, ErrBadID):
		// These messages are ours, written for the uploader.
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "%s", err.Error()))
	case errors.Is(err, ErrNoImage):
		microdrop.WriteError(w, microdrop.Errorf(microdrop.ENOTFOUND, "no such image"))
	default:
		h.log.Error("image", "err", err)
		microdrop.WriteError(w, err)
	}
}

func (h *imageHandler) upload(w http.ResponseWriter, r *http.Request) {
	// Room for multipart framing around the largest accepted image; set
	// before the admin check, which may parse a cookie-sent form.
	r.Body = http.MaxBytesReader(w, r.Body, MaxImageBytes+64<<10)
	if err := h.d.Admin.Check(r); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	var body []byte
	var err error
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		var f io.ReadCloser
		f, _, err = r.FormFile("image")
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(f, MaxImageBytes+1))
			f.Close()
		}
		if r.MultipartForm != nil {
			_ = r.MultipartForm.RemoveAll()
		}
	} else {
		body, err = io.ReadAll(r.Body)
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		h.fail(w, fmt.Errorf("%w: the upload is over the %d MB limit", ErrBadImage, MaxImageBytes>>20))
		return
	case errors.Is(err, http.ErrMissingFile):
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "send the image as the multipart field \"image\" or as the request body"))
		return
	case err != nil:
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "the upload could not be read"))
		return
	}
	rec, err := h.d.Images.Put(r.Context(), body)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.log.Info("image stored", "sha256", rec.SHA256, "type", rec.Type, "bytes", rec.Bytes)
	microdrop.WriteJSON(w, http.StatusCreated, viewOf(rec))
}

func (h *imageHandler) record(w http.ResponseWriter, r *http.Request) {
	rec, err := h.d.Images.Store.Image(r.Context(), r.PathValue("sha"))
	if err != nil {
		h.fail(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, viewOf(rec))
}

func (h *imageHandler) setDrop(w http.ResponseWriter, r *http.Request) {
	if err := h.d.Admin.Check(r); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	var req struct {
		SHA256 string `json:"sha256"`
	}
	if err := microdrop.DecodeJSON(w, r, &req); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	id := r.PathValue("id")
	if h.d.DropExists != nil {
		ok, err := h.d.DropExists(r.Context(), id)
		if err != nil {
			h.fail(w, err)
			return
		}
		if !ok {
			microdrop.WriteError(w, microdrop.Errorf(microdrop.ENOTFOUND, "no drop %q", id))
			return
		}
	}
	if err := h.d.Images.Store.SetDropImage(r.Context(), id, req.SHA256); err != nil {
		h.fail(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]string{"drop_id": id, "image": req.SHA256, "url": "/images/" + req.SHA256})
}

// serve sends an image whose bytes were checked against its name; the
// signature rides along so a client can verify it with the public key.
func (h *imageHandler) serve(w http.ResponseWriter, r *http.Request) {
	rec, b, err := h.d.Images.Read(r.Context(), strings.TrimSuffix(strings.TrimSuffix(r.PathValue("sha"), ".jpg"), ".png"))
	if err != nil {
		if errors.Is(err, ErrBadID) || errors.Is(err, ErrNoImage) {
			http.Error(w, "no such image", http.StatusNotFound)
			return
		}
		h.log.Error("serve image", "sha256", r.PathValue("sha"), "err", err)
		http.Error(w, "the image failed its integrity check", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", rec.Type)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("ETag", `"`+rec.SHA256+`"`)
	w.Header().Set("Microdrop-Image-Signature", "ed25519 key="+rec.KeyID+" sig="+base64.StdEncoding.EncodeToString(rec.Signature))
	http.ServeContent(w, r, "", rec.CreatedAt, bytes.NewReader(b))
}
