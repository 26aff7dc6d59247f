package microdrop_test

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/microdrop/microdrop"

// modulePackages lists every package of the module under root with the
// module packages its non-test files import.
func modulePackages(t *testing.T, root string) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "docs") {
			return filepath.SkipDir
		}
		bp, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := module
		if rel != "." {
			name += "/" + filepath.ToSlash(rel)
		}
		for _, imp := range bp.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				pkgs[name] = append(pkgs[name], imp)
			}
		}
		if pkgs[name] == nil {
			pkgs[name] = []string{}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func within(pkg, tree string) bool { return pkg == tree || strings.HasPrefix(pkg, tree+"/") }

// TestHouseRules checks the dependency rules of the design: the core knows
// no edge, media knows drops only through events, highlights read drops
// through their own small interfaces, and nothing imports cmd.
func TestHouseRules(t *testing.T) {
	pkgs := modulePackages(t, ".")
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages: %v", len(pkgs), pkgs)
	}
	rules := []struct {
		pkg       string // the package and everything below it
		forbidden []string
	}{
		{module, []string{module + "/"}},
		{module + "/claims", []string{module + "/chat", module + "/overlay", module + "/ingest", module + "/templates"}},
		{module + "/ingest", []string{module + "/claims", module + "/ingest/highlight"}},
		{module + "/ingest/highlight", []string{module + "/claims"}},
		{module + "/templates", []string{module + "/claims", module + "/chat", module + "/overlay", module + "/ingest"}},
		{module + "/chat/twitch", []string{module + "/overlay", module + "/ingest"}},
	}
	for pkg, imports := range pkgs {
		for _, imp := range imports {
			if within(imp, module+"/cmd") && !within(pkg, module+"/cmd") {
				t.Errorf("%s imports %s: nothing outside cmd imports it", pkg, imp)
			}
			for _, r := range rules {
				if r.pkg == module && pkg != module || r.pkg != module && !within(pkg, r.pkg) {
					continue
				}
				if r.pkg == module+"/ingest" && within(pkg, module+"/ingest/highlight") {
					continue // highlight is the one part of ingest that registers a hook on it
				}
				for _, f := range r.forbidden {
					if strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f) || within(imp, f) {
						t.Errorf("%s imports %s", pkg, imp)
					}
				}
			}
		}
	}
}
