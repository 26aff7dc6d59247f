// Package highlight owns everything about highlights: it follows every
// stream through ingest's StreamHook, keeps a rolling buffer of the access
// units of each stream bound to one of its channels, with a keyframe index
// (Ring: payloads packed in chunks, bounded per stream and, through a
// shared Budget, in total), captures the window
// around each drop moment from the bus (open, sell-out, close, !clip, claim
// surges) and writes it as a progressive MP4 (Capturer), keeps a still of
// the first keyframe after each drop's open as evidence, records sessions,
// highlights, stills, product images and aired cues in its own SQLite file
// (SQLite, highlights.db in the data dir), serves the /editor (listing, playback with Range, trim,
// export), and writes a session's export bundle: clips, their vertical 9:16
// versions (Verticalizer, rendered by ffmpeg when it is installed),
// manifest.json (the Manifest types and manifest.schema.json live here),
// claims.csv, the offer pages rendered by package templates, product images
// (validated, re-encoded without metadata, content-addressed and signed
// through a Signer; served by NewImageHandler) and the stills; VerifyBundle
// checks a bundle offline.
//
// It knows drops and claims only through DropSource, which the caller
// (cmd/microdrop) fills from the claims ledger, and streams only through
// package ingest, which never imports it.
//
// # What it must never do
//
// Import claims; write to the ledger's database file (it reads it once, to
// copy the highlight tables older versions kept there); poll the stream
// registry; block a publisher (the hook only touches memory, the database
// is written from capture's own goroutine); re-encode a 16:9 clip (trims
// are remuxed at keyframes; only the vertical version, a new picture, is
// encoded, by an ffmpeg process); put a viewer's name or raw platform id in
// a bundle (claims.csv carries salted hashes); open a file whose name was
// not built from a checked id or hash (the one exception is an avatar file
// the operator names in the config); store or serve an image it has not
// decoded and re-encoded; change anything on bad input.
package highlight
