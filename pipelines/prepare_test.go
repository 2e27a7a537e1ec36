package pipelines

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
)

func needModel(t *testing.T) string {
	t.Helper()
	dir := model.DefaultModelDir()
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skipf("pretrained model not installed (%v): run scripts/setup.sh", err)
	}
	return dir
}

// sampleSST2Options prepares the bundled SST-2 sample (testdata/sample) into
// out, by absolute paths so that child processes can run the same options.
func sampleSST2Options(modelDir, out string) PrepareOptions {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	o := DefaultPrepareOptions()
	o.Train = []string{abs("../testdata/sample/sst2_train.tsv")}
	o.Validation = []string{abs("../testdata/sample/sst2_dev.tsv")}
	o.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	o.ModelDir, o.MaxLength, o.Output = modelDir, 64, out
	return o
}

// shardRows reads every shard of a split.
func shardRows(t *testing.T, out string, m *dataset.Manifest, split string) []dataset.ShardRow {
	t.Helper()
	var rows []dataset.ShardRow
	for _, s := range m.ShardsOf(split) {
		data, err := storage.ReadFile(context.Background(), storage.Join(out, s.Path))
		if err != nil {
			t.Fatal(err)
		}
		r, err := dataset.ReadShardRows(data)
		if err != nil {
			t.Fatalf("%s: %v", s.Path, err)
		}
		if int64(len(r)) != s.Rows {
			t.Errorf("%s: %d rows, manifest says %d", s.Path, len(r), s.Rows)
		}
		for i := 1; i < len(r); i++ {
			if r[i].Length < r[i-1].Length {
				t.Fatalf("%s: rows not grouped by length at row %d", s.Path, i)
			}
		}
		rows = append(rows, r...)
	}
	return rows
}

func readDeadLetter(t *testing.T, out string, m *dataset.Manifest) []dataset.BadRecord {
	t.Helper()
	if m.Rejected.DeadLetter == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(out, m.Rejected.DeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bad []dataset.BadRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var b dataset.BadRecord
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return bad
}

// TestPrepareCorruptedCopy: every bad record gets one dead-letter row with its
// reason, and every good record reaches the shards.
func TestPrepareCorruptedCopy(t *testing.T) {
	modelDir := needModel(t)
	dir := t.TempDir()
	var lines []string
	good := map[string]bool{}
	for i := 0; i < 40; i++ {
		text := fmt.Sprintf("good story number %d about markets", i)
		good[text] = true
		lines = append(lines, fmt.Sprintf(`"%d","%s","desc"`, 1+i%4, text))
	}
	badLines := map[int]string{ // 1-based line -> expected kind, inserted below
		5:  "invalid_utf8",
		9:  "missing_label",
		14: "malformed_csv",
		20: "empty_line",
		27: "too_long",
	}
	insert := func(at int, s string) { lines = append(lines[:at-1], append([]string{s}, lines[at-1:]...)...) }
	insert(5, `"2","bad `+"\xff"+` bytes","d"`)
	insert(9, `"","no label here","d"`)
	insert(14, `"3","broken "quote" here","d"`)
	insert(20, ``)
	insert(27, `"1","`+strings.Repeat("long ", 2<<20)+`","d"`) // a 10 MB line
	in := filepath.Join(dir, "corrupt.csv")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := DefaultPrepareOptions()
	o.Inputs = []string{in}
	o.Header = false
	o.Fields = dataset.Fields{Text: []string{"2"}, Label: "1"}
	o.ModelDir = modelDir
	o.KeepText = true
	o.MaxBadFraction = 0.5
	o.Output = filepath.Join(dir, "out")
	res, err := RunPrepare(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	bad := readDeadLetter(t, o.Output, m)
	if len(bad) != len(badLines) {
		t.Fatalf("dead letter has %d rows, want %d: %+v", len(bad), len(badLines), bad)
	}
	for _, b := range bad {
		if kind := dataset.BadKind(b.Reason); badLines[int(b.Line)] != kind {
			t.Errorf("line %d: reason %q (%s), want %s", b.Line, b.Reason, kind, badLines[int(b.Line)])
		}
		if b.Source != in || b.Reason == "" {
			t.Errorf("dead-letter row lacks source or reason: %+v", b)
		}
	}
	if m.Rejected.Total != int64(len(badLines)) || m.RecordsRead != 45 {
		t.Errorf("manifest: rejected %d of %d read, want 5 of 45", m.Rejected.Total, m.RecordsRead)
	}
	seen := map[string]bool{}
	for _, split := range []string{dataset.SplitTrain, dataset.SplitValidation, dataset.SplitTest} {
		for _, r := range shardRows(t, o.Output, m, split) {
			seen[r.Text] = true
		}
	}
	for text := range good {
		if !seen[text] {
			t.Errorf("good record %q is missing from the shards", text)
		}
	}
	if len(seen) != len(good) {
		t.Errorf("shards hold %d texts, want %d", len(seen), len(good))
	}
	if got := strings.Join(m.Labels, ","); got != "1,2,3,4" {
		t.Errorf("labels %s", got)
	}
}

// TestPrepareSharedData: SST-2 (train + dev) and AG News prepared from
// ../shared/data; the manifest accounts for every source row.
func TestPrepareSharedData(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the 90k-row preparation of SST-2 and AG News")
	}
	modelDir := needModel(t)
	shared := filepath.Join("..", "..", "shared", "data")
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("../shared/data not present: %v", err)
	}
	cases := []struct {
		name   string
		o      func(*PrepareOptions)
		source map[string]int64 // split -> data rows in the source files
	}{
		{"sst2", func(o *PrepareOptions) {
			o.Train = []string{filepath.Join(shared, "sst2/train.tsv")}
			o.Validation = []string{filepath.Join(shared, "sst2/dev.tsv")}
			o.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
		}, map[string]int64{"train": 67349, "validation": 872}},
		{"ag_news", func(o *PrepareOptions) {
			o.Train = []string{filepath.Join(shared, "ag_news/train_subset_11997.csv")}
			o.Test = []string{filepath.Join(shared, "ag_news/test.csv")}
			o.Header = false
			o.Fields = dataset.Fields{Text: []string{"2", "3"}, Label: "1"}
		}, map[string]int64{"train": 11997, "test": 7600}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultPrepareOptions()
			c.o(&o)
			o.ModelDir = modelDir
			o.Output = t.TempDir()
			res, err := RunPrepare(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			m := res.Manifest
			var total int64
			for split, n := range c.source {
				total += n
				sp := m.Splits[split]
				var read, rejected int64
				for _, f := range m.Inputs {
					if f.Split == split {
						read += f.Records + f.Rejected
						rejected += f.Rejected
					}
				}
				if read != n {
					t.Errorf("%s: read %d records, source has %d", split, read, n)
				}
				removed := m.Dedupe.Leakage[split]
				t.Logf("%s/%s: %d source rows = %d kept + %d rejected + %d leakage + dedupe (manifest dedupe: %d duplicates, %d+%d conflict rows)",
					c.name, split, n, sp.Rows, rejected, removed, m.Dedupe.Duplicates, m.Dedupe.ConflictsResolved, m.Dedupe.ConflictsDropped)
				if got := int64(len(shardRows(t, o.Output, m, split))); got != sp.Rows {
					t.Errorf("%s: shards hold %d rows, manifest %d", split, got, sp.Rows)
				}
			}
			var kept int64
			for _, sp := range m.Splits {
				kept += sp.Rows
			}
			var leak int64
			for _, v := range m.Dedupe.Leakage {
				leak += v
			}
			drops := m.Rejected.Total + m.Dedupe.Duplicates + m.Dedupe.ConflictsResolved + m.Dedupe.ConflictsDropped + leak
			if kept+drops != total {
				t.Errorf("kept %d + reported drops %d = %d, source rows %d", kept, drops, kept+drops, total)
			}
		})
	}
}

// TestPrepareRerunAndRunners: a rerun with the same inputs is a no-op, and the
// direct runner and the universal runner (against a standalone prism job
// server, as Flink's or Spark's job server would be used) write the same
// shards and counts as prism.
func TestPrepareRerunAndRunners(t *testing.T) {
	modelDir := needModel(t)
	base := DefaultPrepareOptions()
	base.Train = []string{filepath.Join("..", "testdata", "sample", "sst2_train.tsv")}
	base.Validation = []string{filepath.Join("..", "testdata", "sample", "sst2_dev.tsv")}
	base.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	base.ModelDir = modelDir
	base.ShardBytes = 32 << 10 // several shards per split
	results := map[string]*dataset.Manifest{}
	for _, runner := range []string{"prism", "direct", "universal"} {
		if runner == "universal" {
			useJobServer(t)
		}
		o := base
		o.Runner = runner
		o.Output = filepath.Join(t.TempDir(), runner)
		res, err := RunPrepare(context.Background(), o)
		if err != nil {
			t.Fatalf("%s: %v", runner, err)
		}
		results[runner] = res.Manifest
		// The shard chunks are the run's scratch: none may outlive it.
		if _, err := os.Stat(filepath.Join(o.Output, res.Manifest.DataDir, "_spill")); !os.IsNotExist(err) {
			t.Errorf("%s: the spill folder is still there after the run (stat: %v)", runner, err)
		}
		if runner == "prism" {
			again, err := RunPrepare(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !again.Skipped || again.Manifest.CreatedAt != res.Manifest.CreatedAt {
				t.Errorf("rerun with unchanged inputs was not a no-op")
			}
		}
	}
	sums := func(m *dataset.Manifest) []string {
		var out []string
		for _, s := range m.Shards {
			out = append(out, s.Path+" "+s.SHA256)
		}
		sort.Strings(out)
		return out
	}
	p := results["prism"]
	pj, _ := json.Marshal(p.Splits)
	for _, other := range []string{"direct", "universal"} {
		d := results[other]
		if strings.Join(sums(p), "\n") != strings.Join(sums(d), "\n") {
			t.Errorf("shards differ between prism and %s:\n%v\n%v", other, sums(p), sums(d))
		}
		dj, _ := json.Marshal(d.Splits)
		if string(pj) != string(dj) {
			t.Errorf("split summaries differ between prism and %s:\n%s\n%s", other, pj, dj)
		}
	}
	if len(p.Shards) < 3 {
		t.Errorf("expected several shards at 32 KiB each, got %d", len(p.Shards))
	}
}

// useJobServer starts a standalone prism job server on a free port and points
// the universal runner at it with the LOOPBACK environment (workers run in
// this process), as --endpoint and --environment_type do on the command line.
func useJobServer(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if _, err := prism.CreateJobServer(context.Background(), prism.Options{Port: port}); err != nil {
		t.Fatal(err)
	}
	oldEndpoint, oldEnv := *jobopts.Endpoint, *jobopts.EnvironmentType
	*jobopts.Endpoint = fmt.Sprintf("localhost:%d", port)
	*jobopts.EnvironmentType = "LOOPBACK"
	t.Cleanup(func() { *jobopts.Endpoint, *jobopts.EnvironmentType = oldEndpoint, oldEnv })
}
