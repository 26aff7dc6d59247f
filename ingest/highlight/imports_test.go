package highlight_test

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/microdrop/microdrop"

// moduleDeps lists the module's packages dir's package depends on, test
// files left out, following imports inside the module.
func moduleDeps(t *testing.T, root, pkg string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		dir := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, module), "/")))
		bp, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, imp := range bp.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				walk(imp)
			}
		}
	}
	walk(pkg)
	delete(seen, pkg)
	return seen
}

// TestImportRules: highlight reads drops and claims only through
// DropSource, never importing claims; ingest tells highlight about streams
// through its hook and imports neither highlight nor claims.
func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for pkg, forbidden := range map[string][]string{
		module + "/ingest/highlight": {module + "/claims"},
		module + "/ingest":           {module + "/claims", module + "/ingest/highlight"},
	} {
		deps := moduleDeps(t, root, pkg)
		for dep := range deps {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
