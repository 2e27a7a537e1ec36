package transforms

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model/tokenizer"
)

// Shard ranges must tile the ring, and the overlap a keys chunk is routed by
// must cover every shard its texts can fall in: a miss would let a
// duplicate across splits survive.
func TestShardRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	counts := []int{1, 2, 3, 7, 10, 64, 1000}
	for _, n := range counts {
		for i := 0; i < n; i++ {
			if got := shardOf(rangeStart(i, n), n); got != i {
				t.Fatalf("n=%d: start of shard %d maps to %d", n, i, got)
			}
			if got := shardOf(rangeLast(i, n), n); got != i {
				t.Fatalf("n=%d: end of shard %d maps to %d", n, i, got)
			}
			if i > 0 && rangeLast(i-1, n)+1 != rangeStart(i, n) {
				t.Fatalf("n=%d: gap or overlap before shard %d", n, i)
			}
		}
		if rangeStart(0, n) != 0 || rangeLast(n-1, n) != math.MaxUint64 {
			t.Fatalf("n=%d: ranges do not cover the ring", n)
		}
	}
	for range 100000 {
		pos := rng.Uint64()
		nj, n := counts[rng.IntN(len(counts))], counts[rng.IntN(len(counts))]
		j := shardOf(pos, nj)
		first, last := overlapping(j, nj, n)
		if i := shardOf(pos, n); i < first || i > last {
			t.Fatalf("pos %x: shard %d of %d lies in shard %d of %d, outside the routed %d..%d", pos, j, nj, i, n, first, last)
		}
	}
}

func TestPlanShards(t *testing.T) {
	p := PlanShards(map[string]int64{dataset.SplitTrain: 100, dataset.SplitValidation: 10}, 30)
	if p.Count(dataset.SplitTrain) != 4 || p.Count(dataset.SplitValidation) != 1 || p.Count(dataset.SplitTest) != 1 {
		t.Errorf("plan %v, want train 4, validation 1, test 1", p.Shards)
	}
	if p := PlanShards(map[string]int64{dataset.SplitTrain: 100}, 0); p.Count(dataset.SplitTrain) != 1 {
		t.Errorf("no target: %v, want one shard", p.Shards)
	}
}

func TestResolveCopies(t *testing.T) {
	c := func(split, label, src string, line int64) DedupeCopy {
		return DedupeCopy{Split: split, Label: label, Source: src, Line: line}
	}
	cases := []struct {
		name   string
		copies []DedupeCopy
		keep   int
		events []DedupeEvent
	}{
		{"unique", []DedupeCopy{c("train", "1", "a", 3)}, 0, nil},
		{"duplicates keep the first by file and line",
			[]DedupeCopy{c("train", "1", "b", 1), c("train", "1", "a", 9), c("train", "1", "a", 4)}, 2,
			[]DedupeEvent{{Kind: "duplicate", Split: "train", Rows: 2}}},
		{"leakage keeps the highest split",
			[]DedupeCopy{c("train", "1", "a", 1), c("test", "1", "t", 7), c("validation", "1", "v", 2), c("train", "1", "a", 2)}, 1,
			[]DedupeEvent{{Kind: "leakage", Split: "train", Rows: 2}, {Kind: "leakage", Split: "validation", Rows: 1}}},
		{"majority label wins",
			[]DedupeCopy{c("train", "0", "a", 1), c("train", "1", "a", 2), c("train", "1", "a", 3)}, 1,
			[]DedupeEvent{{Kind: "conflict_resolved", Split: "train", Rows: 2}}},
		{"no majority drops all",
			[]DedupeCopy{c("train", "0", "a", 1), c("train", "1", "a", 2)}, -1,
			[]DedupeEvent{{Kind: "conflict_dropped", Split: "train", Rows: 2}}},
		{"leakage before the vote",
			[]DedupeCopy{c("train", "0", "a", 1), c("train", "0", "a", 2), c("test", "1", "t", 1)}, 2,
			[]DedupeEvent{{Kind: "leakage", Split: "train", Rows: 2}}},
	}
	for _, tc := range cases {
		keep, label, events := ResolveCopies(tc.copies, dataset.SingleLabel)
		if keep != tc.keep || label != "" || fmt.Sprint(events) != fmt.Sprint(tc.events) {
			t.Errorf("%s: keep %d (label %q), events %v; want %d, %v", tc.name, keep, label, events, tc.keep, tc.events)
		}
	}
	// Regression: conflicting scores are averaged into the first copy,
	// over the copies of the split the text stays in; an unreadable score
	// falls back to the vote.
	reg := []struct {
		copies []DedupeCopy
		keep   int
		label  string
	}{
		{[]DedupeCopy{c("train", "3.2", "a", 1), c("train", "4", "a", 2), c("train", "2", "a", 3)}, 0, "3.0666666"},
		{[]DedupeCopy{c("train", "1", "a", 1), c("validation", "4", "v", 1), c("validation", "5", "v", 2)}, 1, "4.5"},
		{[]DedupeCopy{c("train", "2.5", "a", 1), c("train", "2.5", "a", 2)}, 0, ""},
		{[]DedupeCopy{c("train", "x", "a", 1), c("train", "2", "a", 2)}, -1, ""},
	}
	for _, tc := range reg {
		keep, label, _ := ResolveCopies(tc.copies, dataset.Regression)
		if keep != tc.keep || label != tc.label {
			t.Errorf("regression %v: keep %d label %q; want %d %q", tc.copies, keep, label, tc.keep, tc.label)
		}
	}
}

// testTokenizer unpacks the committed MiniLM tokenizer.json.
func testTokenizer(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "tokenizer", "all-MiniLM-L6-v2.tokenizer.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type handRun struct {
	shards map[string]dataset.ShardInfo // path -> info
	rows   map[string][]dataset.ShardRow
	events map[string]int64 // kind/split -> rows
	stats  Stats
}

// prepareByHand runs the spill, route and shard-writing steps the way a
// runner would, with chunks flushed after every buffer bytes and the chunk
// list of each shard in the given order, so tests can vary both.
func prepareByHand(t *testing.T, tokPath string, files []InputFile, plan ShardPlan, buffer int64, reverse bool) handRun {
	t.Helper()
	ctx := context.Background()
	out := t.TempDir()
	spill := &SpillRecordsFn{TokenizerPath: tokPath, MaxLength: 32, KeepText: true, Split: KeyByTextFn{Salt: "s"},
		Plan: plan, TempDir: filepath.Join(out, "spill"), BufferBytes: buffer}
	if err := spill.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	var refs []SpillRef
	labelSet := map[string]bool{}
	for _, f := range files {
		err := spill.ProcessElement(ctx, f, func(r SpillRef) { refs = append(refs, r) }, func(b dataset.BadRecord) { t.Errorf("bad record %+v", b) },
			func(dataset.FileFingerprint) {}, func(l string) { labelSet[l] = true })
		if err != nil {
			t.Fatal(err)
		}
	}
	var labels []string
	for l := range labelSet {
		labels = append(labels, l)
	}
	SortLabels(labels)
	groups := map[string][]SpillRef{}
	route := &RouteSpillFn{Plan: plan}
	for _, r := range refs {
		route.ProcessElement(r, func(k string, r SpillRef) { groups[k] = append(groups[k], r) })
	}
	res := handRun{shards: map[string]dataset.ShardInfo{}, rows: map[string][]dataset.ShardRow{}, events: map[string]int64{}}
	w := &WriteShardFn{Root: out, Dir: "data", Plan: plan}
	for key, g := range groups {
		sort.Slice(g, func(i, j int) bool { return (g[i].Path < g[j].Path) != reverse })
		i := 0
		next := func(r *SpillRef) bool {
			if i == len(g) {
				return false
			}
			*r, i = g[i], i+1
			return true
		}
		sent := false
		vocab := func(l *[]string) bool {
			if sent {
				return false
			}
			*l, sent = labels, true
			return true
		}
		err := w.ProcessElement(ctx, key, next, vocab,
			func(s dataset.ShardInfo) { res.shards[s.Path] = s },
			func(s Stats) { res.stats = StatsFn{}.MergeAccumulators(res.stats, s) },
			func(e DedupeEvent) { res.events[e.Kind+"/"+e.Split] += e.Rows })
		if err != nil {
			t.Fatal(err)
		}
	}
	for path := range res.shards {
		data, err := os.ReadFile(filepath.Join(out, path))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := dataset.ReadShardRows(data)
		if err != nil {
			t.Fatal(err)
		}
		res.rows[path] = rows
	}
	return res
}

// TestSpilledShards: the dedupe rules hold across splits and shards when
// every copy of a text is seen only through the chunks, each event is
// counted once, and a shard's bytes depend neither on how often the reader
// flushed nor on the order its chunks arrive in.
func TestSpilledShards(t *testing.T) {
	tok := testTokenizer(t)
	dir := t.TempDir()
	train := []string{"sentence\tlabel"}
	test := []string{"sentence\tlabel"}
	for i := range 300 {
		train = append(train, fmt.Sprintf("training sentence number %d with some words\t%d", i, i%2))
	}
	for i := range 60 {
		test = append(test, fmt.Sprintf("held out sentence number %d\t%d", i, i%2))
	}
	// Line numbers count the header: these land on lines 302 onwards.
	// An exact duplicate: the second copy goes.
	train = append(train, "an exact duplicate\t1", "AN  exact duplicate\t1")
	// Leakage: the test copy stays.
	train = append(train, "leaks into test\t0")
	// A conflict resolved by majority: two go, line 305 stays.
	train = append(train, "majority label\t1", "majority label\t0", "Majority label\t1")
	// A conflict without a majority: both go.
	train = append(train, "no majority\t0", "no majority\t1")
	test = append(test, "Leaks into TEST\t0")
	write := func(name string, lines []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := func(split string) dataset.ParseConfig {
		return dataset.ParseConfig{Format: dataset.TSV, Header: true, Fields: dataset.Fields{Text: []string{"sentence"}, Label: "label"}, Split: split}
	}
	files := []InputFile{{Path: write("train.tsv", train), Parse: cfg(dataset.SplitTrain)}, {Path: write("test.tsv", test), Parse: cfg(dataset.SplitTest)}}
	plan := ShardPlan{Shards: map[string]int{dataset.SplitTrain: 3, dataset.SplitTest: 2, dataset.SplitValidation: 1}}

	base := prepareByHand(t, tok, files, plan, 1<<30, false)
	want := map[string]int64{"duplicate/train": 1, "leakage/train": 1, "conflict_resolved/train": 2, "conflict_dropped/train": 2}
	if fmt.Sprint(base.events) != fmt.Sprint(want) {
		t.Errorf("dedupe events %v, want %v", base.events, want)
	}
	texts := map[string]int{}
	ids := map[string]string{}
	for path, rows := range base.rows {
		if int64(len(rows)) != base.shards[path].Rows {
			t.Errorf("%s: %d rows, info says %d", path, len(rows), base.shards[path].Rows)
		}
		for i, r := range rows {
			texts[strings.ToLower(r.Text)]++
			ids[strings.ToLower(r.Text)] = r.ID
			if i > 0 && r.Length < rows[i-1].Length {
				t.Errorf("%s: not sorted by length at row %d", path, i)
			}
		}
	}
	if len(base.shards) != 5 {
		t.Errorf("%d shards written, want 3 train + 2 test", len(base.shards))
	}
	for text, n := range map[string]int{"an exact duplicate": 1, "leaks into test": 1, "majority label": 1, "no majority": 0} {
		if texts[text] != n {
			t.Errorf("%q kept %d times, want %d", text, texts[text], n)
		}
	}
	// The copy kept is the first by line among those that may stay.
	for text, line := range map[string]string{"an exact duplicate": ":302", "majority label": ":305"} {
		if !strings.HasSuffix(ids[text], line) {
			t.Errorf("%q kept as %s, want the copy on line %s", text, ids[text], line)
		}
	}
	if got := base.stats.Splits[dataset.SplitTrain].Rows + base.stats.Splits[dataset.SplitTest].Rows; got != 300+60+1+1+1 {
		t.Errorf("stats count %d rows, want 363", got)
	}
	found := false
	for path, rows := range base.rows {
		for _, r := range rows {
			found = found || (strings.Contains(path, "/test/") && r.Text == "Leaks into TEST")
		}
	}
	if !found {
		t.Errorf("the test split's copy of a leaked text is missing")
	}

	// Tiny buffers (a chunk every few rows) and reversed chunk order.
	other := prepareByHand(t, tok, files, plan, 200, true)
	if len(other.shards) != len(base.shards) {
		t.Fatalf("%d shards with small chunks, %d with one chunk per shard", len(other.shards), len(base.shards))
	}
	for path, s := range base.shards {
		if o := other.shards[path]; o.SHA256 != s.SHA256 || o.Rows != s.Rows {
			t.Errorf("%s differs with other chunking: %+v vs %+v", path, o, s)
		}
	}
}

func TestSpillChunkRejectsForeignFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.spill")
	if err := os.WriteFile(p, []byte("not a chunk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readShardRows(context.Background(), []SpillRef{{Path: p}}); err == nil {
		t.Error("a file without the chunk header was read")
	}
	// A chunk cut short is an error, not a silently shorter shard.
	b := appendRow([]byte(spillMagic), HashKey("x"), &dataset.Record{Line: 1, ID: "id", Label: "1", Text: "x"},
		&tokenizer.Encoding{IDs: []int32{101, 102}, Length: 2}, false, true)
	if err := os.WriteFile(p, b[:len(b)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readShardRows(context.Background(), []SpillRef{{Path: p}}); err == nil {
		t.Error("a truncated chunk was read")
	}
	if _, err := readShardRows(context.Background(), []SpillRef{{Path: p, Source: "s"}}); err == nil {
		t.Error("a truncated chunk was read")
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := readShardRows(context.Background(), []SpillRef{{Path: p, Source: "s"}})
	if err != nil || len(r.entries) != 1 {
		t.Fatalf("whole chunk: %v, %d rows", err, len(r.entries))
	}
	row, label, err := r.row(&r.entries[0])
	if err != nil || row.ID != "id" || string(label) != "1" || row.Text != "x" || len(row.InputIDs) != 2 || row.Length != 2 {
		t.Errorf("decoded %+v label %q err %v", row, label, err)
	}
}
