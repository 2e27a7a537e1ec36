package report

// Writing, reading and rendering the evaluation report. report.json is the
// source of truth; report.md (for terminals, PR comments, Git hosting) and
// report.html (one self-contained page with inline SVG charts, for people)
// are pure functions of it, so a renderer change never needs a re-evaluation:
// Read + Write regenerates both.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/beamtune/beamtune/storage"
)

// File names Write creates in the report folder.
const (
	JSONFile     = "report.json"
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
)

// maxReportBytes bounds what Read loads: a report with long training
// logs is a few MB; a wrong path pointing at a dataset should fail, not OOM.
const maxReportBytes = 256 << 20

// Write writes r to dir (a local folder or gs:// prefix) as
// report.json (indented), report.md and report.html. Each file is written
// atomically through the storage package. report.json is written last, so
// its presence means the whole set is there (the Markdown and HTML files
// next to it match it); a failure never leaves a partial report.json, and an
// earlier report.json stays untouched if any write fails.
//
// An empty r.Schema is written as Schema (r itself is not modified); a
// different schema is refused, since the renderers only know this one. A
// NaN or ±Inf anywhere in r is refused with the field's path, before
// anything is written: JSON cannot encode them, and a report that silently
// turned them into 0 would mislead.
func Write(ctx context.Context, dir string, r *Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	rep := *r // shallow copy: only Schema changes, slices are shared read-only
	switch rep.Schema {
	case "":
		rep.Schema = Schema
	case Schema:
	default:
		return fmt.Errorf("report: schema %q cannot be written (this version writes %q)", rep.Schema, Schema)
	}
	if p := nonFinite(reflect.ValueOf(rep), "report"); p != "" {
		return fmt.Errorf("report: %s is not a finite number (JSON cannot encode NaN or Inf); nothing written", p)
	}
	js, err := json.MarshalIndent(&rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encoding JSON: %w", err)
	}
	js = append(js, '\n')
	// Render everything before the first write, so no failure can leave the
	// set half written. JSON goes last: it is the marker of a complete set.
	files := []struct {
		name string
		data []byte
	}{
		{MarkdownFile, RenderMarkdown(&rep)},
		{HTMLFile, RenderHTML(&rep)},
		{JSONFile, js},
	}
	for _, f := range files {
		if err := storage.WriteFile(ctx, storage.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}

// Read reads dir/report.json and checks its schema. Unknown fields are
// ignored (additions within a schema version stay readable); a different or
// missing schema is an error, because field meanings may have changed.
func Read(ctx context.Context, dir string) (*Report, error) {
	p := storage.Join(dir, JSONFile)
	data, err := storage.ReadFileLimit(ctx, p, maxReportBytes)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return Parse(data, p)
}

// Parse decodes and checks a report.json read from p (named in
// errors). It is Read without the storage, so the parsing of files
// from elsewhere can be tested and fuzzed on its own.
func Parse(data []byte, p string) (*Report, error) {
	// Check the schema before decoding the rest: a future version may change
	// field types, and "wrong schema" is the useful message then, not a type
	// error deep inside.
	var head struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("report: %s: %w", p, err)
	}
	switch {
	case head.Schema == nil:
		return nil, fmt.Errorf("report: %s has no schema field (want %q)", p, Schema)
	case *head.Schema != Schema:
		return nil, fmt.Errorf("report: %s has schema %q, this version reads %q", p, *head.Schema, Schema)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", p, err)
	}
	return &r, nil
}

// nonFinite returns the JSON path of the first NaN or ±Inf float in v,
// or "" when there is none.
func nonFinite(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if !finite(v.Float()) {
			return path
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return nonFinite(v.Elem(), path)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if p := nonFinite(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if p := nonFinite(v.Field(i), path+"."+name); p != "" {
				return p
			}
		}
	}
	return ""
}
