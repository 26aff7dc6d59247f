package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// ErrManifestInvalid means a manifest does not satisfy ManifestSchema.
var ErrManifestInvalid = errors.New("manifest does not match its schema")

// ValidateManifest checks a manifest.json against ManifestSchema. It
// implements the subset of JSON Schema the schema uses: type (one or a
// list), const, enum, required, properties, additionalProperties: false,
// items, minItems, minLength, minimum and pattern.
func ValidateManifest(doc []byte) error {
	var schema, v any
	if err := json.Unmarshal(ManifestSchema, &schema); err != nil {
		return fmt.Errorf("bundle schema: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: not JSON: %w", ErrManifestInvalid, err)
	}
	var problems []string
	validate(schema.(map[string]any), v, "$", &problems)
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%w: %s", ErrManifestInvalid, strings.Join(problems, "; "))
	}
	return nil
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case json.Number:
		if f, err := x.Float64(); err == nil && f == math.Trunc(f) && !strings.ContainsAny(x.String(), ".eE") {
			return "integer"
		}
		return "number"
	}
	return "unknown"
}

func validate(s map[string]any, v any, at string, problems *[]string) {
	bad := func(format string, args ...any) {
		*problems = append(*problems, at+": "+fmt.Sprintf(format, args...))
	}
	t := jsonType(v)
	if want, ok := s["type"]; ok {
		var types []string
		switch w := want.(type) {
		case string:
			types = []string{w}
		case []any:
			for _, x := range w {
				types = append(types, x.(string))
			}
		}
		okType := false
		for _, w := range types {
			if w == t || (w == "number" && t == "integer") {
				okType = true
			}
		}
		if !okType {
			bad("is %s, want %s", t, strings.Join(types, " or "))
			return
		}
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		bad("must be %v", c)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, x := range e {
			if fmt.Sprint(x) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			bad("%v is not one of %v", v, e)
		}
	}
	switch x := v.(type) {
	case string:
		if n, ok := s["minLength"].(float64); ok && len([]rune(x)) < int(n) {
			bad("shorter than %d", int(n))
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			bad("%q does not match %s", x, p)
		}
	case json.Number:
		f, _ := x.Float64()
		if m, ok := s["minimum"].(float64); ok && f < m {
			bad("%v is below %v", f, m)
		}
	case []any:
		if n, ok := s["minItems"].(float64); ok && len(x) < int(n) {
			bad("fewer than %d items", int(n))
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, it := range x {
				validate(items, it, fmt.Sprintf("%s[%d]", at, i), problems)
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					bad("missing %q", r)
				}
			}
		}
		for k, val := range x {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if ap, ok := s["additionalProperties"].(bool); ok && !ap {
					bad("unexpected property %q", k)
				}
				continue
			}
			validate(ps, val, at+"."+k, problems)
		}
	}
}
