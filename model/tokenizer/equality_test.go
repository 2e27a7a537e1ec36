package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The fixtures under testdata/tokenizer hold what HF tokenizers gave for the
// same inputs; scripts/tokenizer_reference.py writes them.

var fixtureDir = filepath.Join("..", "..", "testdata", "tokenizer")

// sharedDataDir is ../shared/data relative to the repository root.
var sharedDataDir = filepath.Join("..", "..", "..", "shared", "data")

const committedTokenizer = "all-MiniLM-L6-v2.tokenizer.json.gz"

var testTokenizer struct {
	once sync.Once
	tok  *Tokenizer
	sum  string
	err  error
}

// loadTestTokenizer loads the committed copy of the model's tokenizer.json,
// so the tests do not depend on the model cache.
func loadTestTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	testTokenizer.once.Do(func() {
		data, err := readGzip(filepath.Join(fixtureDir, committedTokenizer))
		if err != nil {
			testTokenizer.err = err
			return
		}
		sum := sha256.Sum256(data)
		testTokenizer.sum = hex.EncodeToString(sum[:])
		testTokenizer.tok, testTokenizer.err = FromJSON(data)
	})
	if testTokenizer.err != nil {
		t.Fatal(testTokenizer.err)
	}
	return testTokenizer.tok
}

func readGzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

type fixtureHeader struct {
	Set             string          `json:"set"`
	Source          string          `json:"source"`
	Pair            bool            `json:"pair"`
	Rows            int             `json:"rows"`
	Truncated       int             `json:"truncated"`
	MaxLength       json.RawMessage `json:"max_length"`
	Padding         json.RawMessage `json:"padding"`
	Tokenizers      string          `json:"tokenizers"`
	TokenizerSHA256 string          `json:"tokenizer_sha256"`
	Block           int             `json:"block"`
}

type fixtureRow struct {
	H   string  `json:"h"`
	IDs []int32 `json:"ids"`
	T   []int32 `json:"t"`
	M   []int32 `json:"m"`
	Tr  int     `json:"tr"`

	// Stress rows.
	A         string       `json:"a"`
	B         string       `json:"b"`
	N         string       `json:"n"` // hash of the normalizer + pre-tokenizer output
	MaxLength *int         `json:"max_length"`
	V         []fixtureRow `json:"v"`

	// Batch rows.
	PairBatch bool              `json:"pair"`
	Inputs    []json.RawMessage `json:"inputs"`
	Padding   *fixturePadding   `json:"padding"`
	Encodings []fixtureRow      `json:"encodings"`

	// The packed tail of a data set.
	First          *int   `json:"first"`
	Hashes         string `json:"hashes"`
	TruncatedAfter []int  `json:"truncated"`

	// Code point probe.
	Config *struct {
		CleanText    bool `json:"clean_text"`
		ChineseChars bool `json:"handle_chinese_chars"`
		StripAccents bool `json:"strip_accents"`
		Lowercase    bool `json:"lowercase"`
	} `json:"config"`
	Blocks []string `json:"blocks"`
}

type fixturePadding struct {
	Fixed    *int `json:"fixed"`
	Multiple *int `json:"multiple"`
	Batch    *int `json:"batch"`
}

// parseFixture reads a fixture's JSON lines: the header into header, then
// one fixtureRow a line.
func parseFixture(t *testing.T, name string, data []byte, header any) []fixtureRow {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var rows []fixtureRow
	for i := 0; sc.Scan(); i++ {
		var err error
		if i == 0 {
			err = json.Unmarshal(sc.Bytes(), header)
		} else {
			var r fixtureRow
			err = json.Unmarshal(sc.Bytes(), &r)
			rows = append(rows, r)
		}
		if err != nil {
			t.Fatalf("%s line %d: %v", name, i+1, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rows
}

func readFixture(t *testing.T, name string) (fixtureHeader, []fixtureRow) {
	t.Helper()
	data, err := readGzip(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("reading fixture (regenerate with scripts/tokenizer_reference.py fixtures): %v", err)
	}
	var h fixtureHeader
	rows := parseFixture(t, name, data, &h)
	loadTestTokenizer(t)
	if h.TokenizerSHA256 != "" && h.TokenizerSHA256 != testTokenizer.sum {
		t.Fatalf("%s was made from another tokenizer.json (sha256 %s, committed copy %s)", name, h.TokenizerSHA256, testTokenizer.sum)
	}
	return h, rows
}

// encodingHash is the fixtures' row hash: FNV-1a 64 over ids, type ids and
// mask, each as a uint32 length then uint32 values, little-endian.
func encodingHash(e Encoding) string {
	h := fnv.New64a()
	var b [4]byte
	for _, seq := range [][]int32{e.IDs, e.TypeIDs, e.AttentionMask} {
		binary.LittleEndian.PutUint32(b[:], uint32(len(seq)))
		h.Write(b[:])
		for _, v := range seq {
			binary.LittleEndian.PutUint32(b[:], uint32(v))
			h.Write(b[:])
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// mismatches collects failures and reports the first few in full.
type mismatches struct {
	t      *testing.T
	set    string
	count  int
	rows   int
	shown  int
	detail []string
}

func (m *mismatches) check(row int, input string, got Encoding, wantHash string, want *fixtureRow, wantTruncated bool) {
	m.rows++
	ok := encodingHash(got) == wantHash
	if want != nil && want.IDs != nil {
		ok = ok && equalInt32(got.IDs, want.IDs) && equalInt32(got.TypeIDs, want.T) && equalInt32(got.AttentionMask, want.M)
	}
	if ok && got.Truncated != wantTruncated {
		ok = false
	}
	if ok {
		return
	}
	m.count++
	if m.shown < 5 {
		m.shown++
		msg := fmt.Sprintf("%s row %d: input %q\n  go ids:    %v\n  go types:  %v\n  go mask:   %v\n  go truncated: %v",
			m.set, row, clip(input), got.IDs, got.TypeIDs, got.AttentionMask, got.Truncated)
		if want != nil && want.IDs != nil {
			msg += fmt.Sprintf("\n  hf ids:    %v\n  hf types:  %v\n  hf mask:   %v", want.IDs, want.T, want.M)
		} else {
			msg += "\n  hf ids:    (only the hash is stored past the first rows; `python3 scripts/tokenizer_reference.py encode TEXT` prints them)"
		}
		msg += fmt.Sprintf("\n  hf truncated: %v", wantTruncated)
		m.detail = append(m.detail, msg)
	}
}

func (m *mismatches) report() {
	m.t.Logf("%s: %d rows compared, %d mismatches", m.set, m.rows, m.count)
	if m.count > 0 {
		m.t.Errorf("%s: %d of %d rows differ from HF tokenizers; first ones:\n%s", m.set, m.count, m.rows, strings.Join(m.detail, "\n"))
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func equalInt32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func readTSVColumn(t testing.TB, path, column string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	idx := -1
	for i, name := range strings.Split(lines[0], "\t") {
		if name == column {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("%s: no column %q", path, column)
	}
	var out []string
	for _, line := range lines[1:] {
		if line == "" {
			continue
		}
		out = append(out, strings.Split(line, "\t")[idx])
	}
	return out
}

func readAGNews(t testing.TB, path string) []Pair {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Pair, len(records))
	for i, r := range records {
		out[i] = Pair{A: r[1], B: r[2]}
	}
	return out
}

func requireSharedData(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(sharedDataDir); err != nil {
		t.Skipf("shared data dir %s (../shared/data beside the repository) is absent: %v", sharedDataDir, err)
	}
}

// TestEqualityDatasets encodes SST-2 and AG News and compares every row with
// HF tokenizers.
func TestEqualityDatasets(t *testing.T) {
	requireSharedData(t)
	base := loadTestTokenizer(t)
	sst2Train := readTSVColumn(t, filepath.Join(sharedDataDir, "sst2", "train.tsv"), "sentence")
	sst2Dev := readTSVColumn(t, filepath.Join(sharedDataDir, "sst2", "dev.tsv"), "sentence")
	ag := readAGNews(t, filepath.Join(sharedDataDir, "ag_news", "test.csv"))
	agSingle := make([]string, len(ag))
	for i, p := range ag {
		agSingle[i] = p.A + " " + p.B
	}
	devPairs := make([]Pair, len(sst2Dev)-1)
	for i := range devPairs {
		devPairs[i] = Pair{sst2Dev[i], sst2Dev[i+1]}
	}

	sets := []struct {
		name   string
		single []string
		pairs  []Pair
	}{
		{"sst2_train", sst2Train, nil},
		{"sst2_dev", sst2Dev, nil},
		{"ag_news_test", agSingle, nil},
		{"ag_news_test_pairs", nil, ag},
		{"sst2_dev_pairs_padded", nil, devPairs},
		{"sst2_dev_file_defaults", sst2Dev, nil},
	}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			h, rows := readFixture(t, set.name+".jsonl.gz")
			n := len(set.single) + len(set.pairs)
			if h.Rows != n {
				t.Fatalf("fixture has %d rows, the data %d: regenerate the fixtures", h.Rows, n)
			}
			tok, batch := configureFromHeader(t, base, h)
			encs := make([]Encoding, 0, n)
			for lo := 0; lo < n; lo += batch {
				hi := min(n, lo+batch)
				if set.pairs != nil {
					encs = append(encs, tok.EncodePairBatch(set.pairs[lo:hi])...)
				} else {
					encs = append(encs, tok.EncodeBatch(set.single[lo:hi])...)
				}
			}
			wantHash, wantRow, wantTr := expandRows(t, rows, n)
			m := &mismatches{t: t, set: set.name}
			truncated := 0
			for i, e := range encs {
				input := ""
				if set.pairs != nil {
					input = set.pairs[i].A + " || " + set.pairs[i].B
				} else {
					input = set.single[i]
				}
				m.check(i, input, e, wantHash[i], wantRow[i], wantTr[i])
				if e.Truncated {
					truncated++
				}
			}
			t.Logf("%s: %d rows truncated (HF: %d)", set.name, truncated, h.Truncated)
			m.report()
		})
	}
}

// configureFromHeader sets truncation and padding as the fixture header
// says and returns the batch size the reference used.
func configureFromHeader(t *testing.T, base *Tokenizer, h fixtureHeader) (*Tokenizer, int) {
	t.Helper()
	if string(h.MaxLength) == `"file"` {
		return base, 1 << 30 // as tokenizer.json sets them
	}
	var maxLen *int
	if err := json.Unmarshal(h.MaxLength, &maxLen); err != nil {
		t.Fatal(err)
	}
	var pad *fixturePadding
	if err := json.Unmarshal(h.Padding, &pad); err != nil {
		t.Fatal(err)
	}
	tok := configure(t, base, maxLen, pad)
	batch := 1 << 30
	if pad != nil && pad.Batch != nil {
		batch = *pad.Batch
	}
	return tok, batch
}

func configure(t testing.TB, base *Tokenizer, maxLen *int, pad *fixturePadding) *Tokenizer {
	t.Helper()
	var tr *Truncation
	if maxLen != nil {
		tr = &Truncation{MaxLength: *maxLen}
	}
	tok, err := base.WithTruncation(tr)
	if err != nil {
		t.Fatal(err)
	}
	var p *Padding
	if pad != nil {
		p = &Padding{Strategy: PadBatchLongest}
		if pad.Fixed != nil {
			p.Strategy, p.Length = PadFixed, *pad.Fixed
		}
		if pad.Multiple != nil {
			p.PadToMultipleOf = *pad.Multiple
		}
	}
	if tok, err = tok.WithPadding(p); err != nil {
		t.Fatal(err)
	}
	return tok
}

// expandRows turns the full rows and the packed tail into per-row expectations.
func expandRows(t *testing.T, rows []fixtureRow, n int) ([]string, []*fixtureRow, []bool) {
	t.Helper()
	hashes := make([]string, 0, n)
	full := make([]*fixtureRow, 0, n)
	tr := make([]bool, n)
	for i := range rows {
		r := &rows[i]
		if r.First != nil {
			if *r.First != len(hashes) || len(r.Hashes)%16 != 0 {
				t.Fatalf("packed hashes start at row %d, expected %d", *r.First, len(hashes))
			}
			for j := 0; j < len(r.Hashes); j += 16 {
				hashes = append(hashes, r.Hashes[j:j+16])
				full = append(full, nil)
			}
			for _, k := range r.TruncatedAfter {
				tr[k] = true
			}
			continue
		}
		tr[len(hashes)] = r.Tr != 0
		hashes = append(hashes, r.H)
		full = append(full, r)
	}
	if len(hashes) != n {
		t.Fatalf("fixture holds %d rows, want %d", len(hashes), n)
	}
	return hashes, full, tr
}

// TestEqualityStress compares the generated Unicode stress set (inputs stored
// in the fixture) for single texts and pairs at several max lengths.
func TestEqualityStress(t *testing.T) {
	base := loadTestTokenizer(t)
	for _, name := range []string{"stress_single", "stress_pair"} {
		t.Run(name, func(t *testing.T) {
			h, rows := readFixture(t, name+".jsonl.gz")
			m := &mismatches{t: t, set: name}
			tokByLen := map[int]*Tokenizer{}
			normBad := 0
			for i, r := range rows {
				if r.N != "" {
					// The vocab hides some differences (two unknown words are
					// both [UNK]), so compare the normalized text and pre-tokens too.
					sum := sha256.Sum256(probeRecord(nil, base.table, r.A, false))
					if got := hex.EncodeToString(sum[:])[:16]; got != r.N {
						normBad++
						if normBad <= 5 {
							norm, _ := base.table.appendNormalized(nil, r.A)
							exact, _, _ := base.table.appendNormalizedExact(nil, r.A, nil, nil)
							t.Errorf("%s row %d: normalizer/pre-tokenizer output differs from HF for %q (go fast path %q, exact path %q)", name, i, clip(r.A), norm, exact)
						}
					}
				}
				for _, v := range r.V {
					key := -1
					if v.MaxLength != nil {
						key = *v.MaxLength
					}
					tok := tokByLen[key]
					if tok == nil {
						tok = configure(t, base, v.MaxLength, nil)
						tokByLen[key] = tok
					}
					var e Encoding
					input := r.A
					if h.Pair {
						e = tok.EncodePair(r.A, r.B)
						input = r.A + " || " + r.B
					} else {
						e = tok.Encode(r.A)
					}
					v := v
					m.check(i, fmt.Sprintf("%s (max_length %d)", input, key), e, v.H, &v, v.Tr != 0)
				}
			}
			if !h.Pair {
				t.Logf("%s: normalizer/pre-tokenizer output of %d texts compared, %d mismatches", name, len(rows), normBad)
			}
			m.report()
		})
	}
	t.Run("stress_batch", func(t *testing.T) {
		_, rows := readFixture(t, "stress_batch.jsonl.gz")
		m := &mismatches{t: t, set: "stress_batch"}
		for i, r := range rows {
			tok := configure(t, base, r.MaxLength, r.Padding)
			var encs []Encoding
			if r.PairBatch {
				pairs := make([]Pair, len(r.Inputs))
				for j, in := range r.Inputs {
					var ab [2]string
					if err := json.Unmarshal(in, &ab); err != nil {
						t.Fatal(err)
					}
					pairs[j] = Pair{ab[0], ab[1]}
				}
				encs = tok.EncodePairBatch(pairs)
			} else {
				texts := make([]string, len(r.Inputs))
				for j, in := range r.Inputs {
					if err := json.Unmarshal(in, &texts[j]); err != nil {
						t.Fatal(err)
					}
				}
				encs = tok.EncodeBatch(texts)
			}
			if len(encs) != len(r.Encodings) {
				t.Fatalf("batch %d: %d encodings, want %d", i, len(encs), len(r.Encodings))
			}
			for j := range encs {
				want := r.Encodings[j]
				m.check(i, fmt.Sprintf("batch %d item %d of %s", i, j, string(r.Inputs[j])), encs[j], want.H, &want, want.Tr != 0)
			}
		}
		m.report()
	})
}

// probeText and probeRecord mirror the script's per-code-point probe.
func probeText(r rune) string { return "a" + string(r) + "b " + string(r) }

func probeRecord(dst []byte, tbl *charTable, text string, exact bool) []byte {
	var norm []byte
	ok := false
	if !exact {
		norm, ok = tbl.appendNormalized(nil, text)
	}
	if !ok {
		norm, _, _ = tbl.appendNormalizedExact(nil, text, nil, nil)
	}
	dst = append(dst, norm...)
	dst = append(dst, 0xFF)
	for i := 0; ; {
		start, end := tbl.nextWord(norm, i)
		if start == end {
			break
		}
		dst = append(dst, norm[start:end]...)
		dst = append(dst, 0xFE)
		i = end
	}
	return dst
}

// TestEqualityCodePoints runs every code point through the normalizer and
// pre-tokenizer, under several BertNormalizer settings, through both the
// per-code-point table and the step-by-step path, and compares block hashes
// with HF.
func TestEqualityCodePoints(t *testing.T) {
	h, rows := readFixture(t, "codepoints.jsonl.gz")
	for _, row := range rows {
		c := row.Config
		cfg := normalizerConfig{cleanText: c.CleanText, chineseChars: c.ChineseChars, stripAccents: c.StripAccents, lowercase: c.Lowercase}
		tbl := charTableFor(cfg)
		for _, exact := range []bool{false, true} {
			bad := 0
			var rec []byte
			for b, want := range row.Blocks {
				sum := sha256.New()
				for r := rune(b * h.Block); r < rune((b+1)*h.Block); r++ {
					if r >= 0xD800 && r <= 0xDFFF {
						continue
					}
					rec = probeRecord(rec[:0], tbl, probeText(r), exact)
					sum.Write(rec)
				}
				if got := hex.EncodeToString(sum.Sum(nil))[:16]; got != want {
					bad++
					if bad <= 5 {
						t.Errorf("config %+v exact=%v: code points U+%04X..U+%04X differ from HF (see `python3 scripts/tokenizer_reference.py probe %X %X`)",
							cfg, exact, b*h.Block, (b+1)*h.Block-1, b*h.Block, (b+1)*h.Block-1)
					}
				}
			}
			t.Logf("config %+v exact=%v: %d blocks of %d code points compared, %d differ", cfg, exact, len(row.Blocks), h.Block, bad)
		}
	}
}
