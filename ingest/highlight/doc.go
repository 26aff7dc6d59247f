// Package highlight is the editor's side of highlight capture: the store of
// sessions, highlights and aired cues (a highlights table next to the
// ledger, in the same SQLite file), the /editor HTTP handler (listing,
// playback with Range, trim, export), and the export of a session's bundle
// (clips, manifest.json, claims.csv, offer pages).
//
// Capture itself (rolling buffers, MP4 writing) is package ingest's; this
// package reads what capture recorded and the claims ledger, and writes only
// highlight metadata (trim points) and bundles.
//
// It must never re-encode video (trims are remuxed at keyframes), never put
// a viewer's name or raw platform id in a bundle (claims.csv carries salted
// hashes), never open a file whose name was not built from a checked id,
// and never change anything on bad input.
package highlight
