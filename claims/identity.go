package claims

import (
	"net/http"

	"github.com/microdrop/microdrop"
)

// Identity names the caller of a web claim: a signed-in viewer, or in local
// mode the browser's device. The claims API never takes a user id from an
// anonymous body: without the admin credential (a chat bridge vouching for
// its users) the claim is the identity's own or it is refused.
type Identity interface {
	Viewer(r *http.Request) (Viewer, bool)
}

// SetIdentity sets who web claims are made as; without it only the admin
// bridge may claim through the API.
func (h *Handler) SetIdentity(id Identity) { h.identity = id }

// claimant decides whom a claim through the API is for.
func (h *Handler) claimant(r *http.Request, b ClaimBody) (Viewer, error) {
	if h.admin.Check(r) == nil {
		if err := microdrop.CheckText("login", b.Login, 64); err != nil {
			return Viewer{}, err
		}
		return Viewer{UserID: b.UserID, Login: b.Login, Subscriber: b.Subscriber, AccountCreated: b.AccountCreated}, nil
	}
	if h.identity == nil {
		return Viewer{}, microdrop.Errorf(microdrop.EUNAUTHORIZED, "claims through the API need the admin token (a chat bridge); viewers claim on the claim page")
	}
	v, ok := h.identity.Viewer(r)
	if !ok {
		return Viewer{}, microdrop.Errorf(microdrop.EUNAUTHORIZED, "sign in on the claim page first: a claim needs a verified viewer")
	}
	if !microdrop.SameOrigin(r) {
		return Viewer{}, microdrop.Errorf(microdrop.EFORBIDDEN, "claim from this site's own claim page")
	}
	if (b.UserID != "" && b.UserID != v.UserID) || b.Subscriber || !b.AccountCreated.IsZero() {
		return Viewer{}, microdrop.Errorf(microdrop.EFORBIDDEN, "user_id, subscriber and account_created come from your sign-in; only the admin bridge may set them")
	}
	return v, nil
}
