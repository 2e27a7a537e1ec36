package dataset

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// fuzzManifestSeed is a manifest as prepare writes it (the shape of the demo
// dataset's, with two shards).
const fuzzManifestSeed = `{
  "schema": "beamtune.dataset/v1",
  "created_at": "2026-11-29T09:35:36Z",
  "fingerprint": "4299a3cebc0227daacd965cc62dff000045795c522bd9299005792b335e854fd",
  "data_dir": "data-4299a3cebc02",
  "tokenizer": {"path": "/models/all-MiniLM-L6-v2/tokenizer.json", "sha256": "be50c3628f2b", "max_length": 64},
  "labels": ["0", "1"],
  "labels_sha256": "1e9987e996a1",
  "inputs": [{"path": "testdata/sample/sst2_dev.tsv", "split": "validation", "bytes": 94931, "sha256": "54a9c12c", "records": 872, "rejected": 0}],
  "config": {"train": ["a.tsv"], "header": true, "fields": {"Text": ["sentence"], "Label": "label"}, "fractions": {"Train": 0.8}},
  "splits": {"train": {"rows": 4210, "labels": {"0": 1900, "1": 2310}, "length_bucket": 8, "length_histogram": [0, 12, 40], "tokens": 51234, "truncated": 3, "truncation_rate": 0.0007}},
  "dedupe": {"duplicates_removed": 2, "conflicts_resolved": 1, "conflicts_dropped": 0, "leakage_removed": {"validation": 1}},
  "rejected": {"total": 0, "by_kind": {}, "dead_letter": "", "fraction": 0},
  "records_read": 5082,
  "shards": [{"split": "train", "path": "data-4299a3cebc02/train/part-00000-of-00002.parquet", "rows": 2105, "bytes": 91234, "sha256": "ab", "min_length": 3, "max_length": 64},
             {"split": "validation", "path": "data-4299a3cebc02/validation/part-00000-of-00001.parquet", "rows": 872, "bytes": 40000, "sha256": "cd", "min_length": 4, "max_length": 60}]
}`

// FuzzManifest feeds arbitrary bytes to ParseManifest, the parse step of
// ReadManifest. Every error names the file; an accepted manifest has this
// version's schema; and writing it as WriteManifestFn does (MarshalIndent)
// and parsing that gives the same manifest back, with the written form a
// fixed point.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(fuzzManifestSeed))
	f.Add([]byte(`{"schema":"beamtune.dataset/v1"}`))
	f.Add([]byte(`{"schema":"beamtune.dataset/v1","config":null,"splits":{},"shards":[],"labels":null}`))
	f.Add([]byte(`{"schema":"beamtune.dataset/v2","shards":[{"path":"../x"}]}`))
	f.Add([]byte(`{"SCHEMA":"beamtune.dataset/v1","schema":"x","Labels":["\ud800","\u00e9"],"config":[1, 2 ,{"a" : "b"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const src = "fuzz/manifest.json"
		m, err := ParseManifest(data, src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), src+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if m.Schema != ManifestSchema {
			t.Fatalf("accepted schema %q", m.Schema)
		}
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatalf("an accepted manifest cannot be written: %v", err)
		}
		back, err := ParseManifest(out, "rewritten")
		if err != nil {
			t.Fatalf("a written manifest is refused: %v\n%s", err, out)
		}
		if a, b := canonicalManifest(t, m), canonicalManifest(t, back); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", a, b)
		}
		out2, err := json.MarshalIndent(back, "", "  ")
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("the written manifest is not a fixed point:\n%s\n%s", out, out2)
		}
	})
}

// canonicalManifest folds what JSON cannot tell apart: the resolved options
// (raw JSON) compared as compact text, a missing value as null.
func canonicalManifest(t *testing.T, m *Manifest) Manifest {
	c := *m
	raw := []byte(c.Config)
	if len(raw) == 0 {
		raw = []byte("null")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	c.Config = buf.Bytes()
	return c
}
