package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// fuzzReportSeed is a small but complete report: two models, a comparison,
// a gate, slices and a training log.
func fuzzReportSeed() []byte {
	labels := []string{"neg", "<b>pos</b>"}
	m := testMetrics(labels, [][]int64{{3, 1}, {0, 4}})
	m.Reliability = []ReliabilityBin{{Lower: 0.5, Upper: 0.75, Count: 3, Confidence: 0.6, Accuracy: 0.66}, {Lower: 0.75, Upper: 1, Count: 5, Confidence: 0.9, Accuracy: 1}}
	r := &Report{
		Schema: Schema, CreatedAt: "2026-01-01T00:00:00Z", Dataset: "d", Split: "validation", Examples: 8,
		Models: []ModelReport{
			{Name: "teacher", Params: 10, Layers: 2, SizeBytes: 100, Speed: Speed{Threads: 2, ExamplesPerSec: 10}, Metrics: m,
				Slices:      []SliceMetrics{{Column: "length", Value: "0-16", Metrics: m}},
				TrainingLog: []LogEntry{{Kind: "train", Step: 1, Loss: 0.7}, {Kind: "eval", Step: 2, Loss: 0.5, Accuracy: 0.8}}},
			{Name: "student\"'", Metrics: m, Speed: Speed{ExamplesPerSec: 20}},
		},
		Comparisons: []Comparison{{Base: "teacher", Other: "student\"'", AccuracyKept: 1, Speedup: 2}},
		Gate:        &GateResult{Challenger: "student\"'", Verdict: "rejected", Reasons: []string{"<script>x</script>"}, Checks: []GateCheck{{Name: "min_accuracy", Value: 87.5, Threshold: 90, Detail: "a & b"}}},
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzReport feeds arbitrary bytes to Parse, the parse step of
// Read. Every error names the file. An accepted report has this
// version's schema; written again (as Write does) and parsed, it comes
// back the same, with the written form a fixed point. Both renderers take it
// without panicking (Read + Write regenerates them from any
// report.json), and in the HTML no text from the file adds markup: the counts
// of < > " ' are those of the same report with those characters replaced.
func FuzzReport(f *testing.F) {
	f.Add(fuzzReportSeed())
	f.Add([]byte(`{"schema":"beamtune.report/v1"}`))
	f.Add([]byte(`{"schema":"beamtune.report/v1","models":[{"name":"m","metrics":{"labels":["a","b","c"],"confusion":[[1],[2,3,4,5]],"per_class":[{"label":"z"}]}}],"comparisons":[{"base":"x","other":"m"}]}`))
	f.Add([]byte(`{"schema":"beamtune.report/v1","models":[{"name":"m","metrics":{"top_k":[{"k":-1,"accuracy":2}],"reliability":[{"lower":1,"upper":0,"count":-5}]},"training_log":[{"kind":"eval","step":-3,"loss":1e308}]}],"gate":{"verdict":"blessed","checks":[]}}`))
	f.Add([]byte(`{"schema":"beamtune.report/v2"}`))
	f.Add([]byte(`{"models":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const src = "fuzz/report.json"
		r, err := Parse(data, src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "report: "+src) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if r.Schema != Schema {
			t.Fatalf("accepted schema %q", r.Schema)
		}
		out, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			t.Fatalf("an accepted report cannot be written: %v", err)
		}
		back, err := Parse(out, "rewritten")
		if err != nil {
			t.Fatalf("a written report is refused: %v\n%s", err, out)
		}
		out2, err := json.MarshalIndent(back, "", "  ")
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("the written report is not a fixed point")
		}

		RenderMarkdown(r)
		html := RenderHTML(r)
		var clean Report
		if err := json.Unmarshal(out, &clean); err != nil {
			t.Fatal(err)
		}
		neutralStrings(reflect.ValueOf(&clean).Elem())
		ref := RenderHTML(&clean)
		for _, c := range []string{"<", ">", `"`, "'"} {
			if n, m := strings.Count(string(html), c), strings.Count(string(ref), c); n != m {
				t.Fatalf("text from the file adds markup: %d %q in the page, %d with those characters removed from the file", n, c, m)
			}
		}

		// Last, as nilEmpty edits the reports' shared slices in place.
		nilEmpty(reflect.ValueOf(r).Elem())
		nilEmpty(reflect.ValueOf(back).Elem())
		if !reflect.DeepEqual(r, back) {
			t.Fatalf("round trip changed the report:\n%+v\n%+v", r, back)
		}
	})
}

// nilEmpty turns empty slices and maps into nil, in place: omitempty writes
// both the same way (not at all).
func nilEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			nilEmpty(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				nilEmpty(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := 0; i < v.Len(); i++ {
			nilEmpty(v.Index(i))
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// neutralStrings replaces the HTML-significant characters < > " ' & in every
// string with x, byte for byte, so lengths, equalities between names and
// every branch the renderer takes on them stay as they were.
func neutralStrings(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.Map(func(r rune) rune {
			if strings.ContainsRune(`<>"'&`, r) {
				return 'x'
			}
			return r
		}, v.String()))
	case reflect.Pointer:
		if !v.IsNil() {
			neutralStrings(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				neutralStrings(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			neutralStrings(v.Index(i))
		}
	}
}
