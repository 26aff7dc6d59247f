package highlight_test

import (
	"errors"
	"testing"
	"testing/fstest"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// FuzzVerifyBundle: whatever manifest.json a bundle holds, verify either
// passes or fails with ErrBundleInvalid; it never panics or reads outside
// the bundle.
func FuzzVerifyBundle(f *testing.F) {
	f.Add([]byte(`{"files":[{"path":"a.txt","sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","bytes":5}]}`))
	f.Add([]byte(`{"files":[{"path":"../etc/passwd","sha256":"00","bytes":1}],"images":[{"file":"a.txt","sha256":"x","key_id":"k","signature":"AAAA"}]}`))
	f.Add([]byte(`{"stills":[{"file":"/abs","sha256":""}],"keys":{"k":"AAAA"}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		fsys := fstest.MapFS{"manifest.json": {Data: manifest}, "a.txt": {Data: []byte("hello")},
			highlight.ManifestSigFile: {Data: []byte(`{"key_id":"k","signature":"AAAA"}`)}}
		if _, err := highlight.VerifyBundle(fsys, nil); err != nil && !errors.Is(err, highlight.ErrBundleInvalid) {
			t.Fatalf("error outside ErrBundleInvalid: %v", err)
		}
	})
}
