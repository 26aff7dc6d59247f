// Package templates holds microdrop's templ components: the overlay page,
// the dashboard, the claim page, the pickup desk, the local chat, the editor
// and the offer pages of the export bundle, with the small view types they
// render. The packages that serve them fill the views.
//
// It must never import claims, chat, overlay or ingest: a page knows only
// the view it is given, so it renders the same from a live service, a test
// or an export. Generated files (*_templ.go) are committed and CI fails when
// they are stale: run `go tool templ generate` from the repository root.
package templates
