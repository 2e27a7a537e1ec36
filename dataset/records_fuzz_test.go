package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzFormats are the formats FuzzRecords picks from with the low bits of opts.
var fuzzFormats = []Format{CSV, TSV, JSONL, Text}

// FuzzRecords checks the corpus parser two ways.
//
// Arbitrary bytes (data), in the format and options opts selects: parsing
// ends, one line at a time at most; line numbers only grow; only a header can
// stop the run; every record has non-empty, trimmed, valid UTF-8 text within
// the size limit and a label from the vocabulary when one is set; every dead
// letter has a reason and a raw copy no longer than MaxRawKept that says
// whether it was cut.
//
// One record written from text, pair and label, escaped as the format
// requires, then a plain record: the fields come back exactly (trimmed, CRLF
// inside a quoted CSV field read as LF), or the record goes to the dead letter
// for the reason the fields call for (invalid UTF-8, empty text, missing
// label), and the plain record after it is never lost.
func FuzzRecords(f *testing.F) {
	f.Add([]byte("sentence\tlabel\nhide new secretions \t0\n\t1\ngreat fun \t\nok\t1\textra\ncafé \t1\n"), "a\tb", "", "1", uint8(1|4))
	f.Add([]byte("\"3\",\"Wall St. \"\"Bears\"\"\",\"Short\"\n\"1\",\"multi\nline\",\"d\"\n\"2\",\"unterminated,\"desc\n\"2\",\"x\"y,\"z\"\n"), "multi\r\nline \"q\"", "p", "pos", uint8(0))
	f.Add([]byte(`{"text":"a","label":1}`+"\n"+`{"text":null}`+"\n{bad\n"+`{"text":["x"],"label":"y"}`+"\n"), "ünïcode", "x", "neg", uint8(2|16))
	f.Add([]byte("plain line\n   \nsecond\r\n\xff\xfe\n"), "  text  ", "", "l", uint8(3))
	f.Add([]byte("text,label\n"+strings.Repeat("x", 100)+",1\n\"open\n"), "t", "", "\xff", uint8(0|4|8))
	f.Fuzz(func(t *testing.T, data []byte, text, pair, label string, opts uint8) {
		format := fuzzFormats[opts&3]
		cfg := ParseConfig{Format: format, Header: opts&4 != 0, Split: "train"}
		if opts&8 != 0 {
			cfg.MaxRecordBytes = 64
		}
		if opts&16 != 0 {
			cfg.Labels = []string{"0", "1", "pos", "neg"}
		}
		switch {
		case format == JSONL || format == Text:
			cfg.Fields = Fields{Text: []string{"text"}, Label: "label"}
			if format == Text {
				cfg.Fields.Label = ""
			}
		case cfg.Header:
			cfg.Fields = Fields{Text: []string{"text"}, Label: "label"}
		default:
			cfg.Fields = Fields{Text: []string{"2"}, Label: "1"}
		}
		checkParse(t, data, cfg)
		if opts&8 == 0 {
			roundTrip(t, format, text, pair, label, opts&16 != 0)
		}
	})
}

// checkParse parses data whole and checks every result.
func checkParse(t *testing.T, data []byte, cfg ParseConfig) {
	t.Helper()
	p, err := NewParser(bytes.NewReader(data), "in", cfg)
	if err != nil {
		t.Fatal(err)
	}
	max := cfg.MaxRecordBytes
	if max <= 0 {
		max = DefaultMaxRecordBytes
	}
	lines := int64(bytes.Count(data, []byte{'\n'}))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	labels := map[string]bool{}
	for _, l := range cfg.Labels {
		labels[l] = true
	}
	var last int64
	// Only the first line, as the header, may stop a run (a header over the
	// size limit too: skipping it would make a data row the column names).
	headerDone := !cfg.Header || cfg.Format == JSONL || cfg.Format == Text
	for calls := int64(0); ; calls++ {
		if calls > lines+1 {
			t.Fatalf("%d calls to Next for %d lines", calls, lines)
		}
		r, b, err := p.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			if headerDone {
				t.Fatalf("Next failed after line %d: %v (only the header may stop a run)", last, err)
			}
			return
		}
		headerDone = true
		if (r == nil) == (b == nil) {
			t.Fatalf("Next returned record %v and dead letter %v", r, b)
		}
		line := int64(0)
		if r != nil {
			line = r.Line
			if r.Text == "" || r.Text != strings.TrimSpace(r.Text) && cfg.Format != Text || len(r.Text) > max {
				t.Fatalf("line %d: text %q accepted", r.Line, r.Text)
			}
			for _, s := range []string{r.Text, r.Pair, r.Label, r.ID} {
				if !utf8.ValidString(s) {
					t.Fatalf("line %d: invalid UTF-8 accepted: %q", r.Line, s)
				}
			}
			if cfg.Fields.Label != "" && (r.Label == "" || len(labels) > 0 && !labels[r.Label]) {
				t.Fatalf("line %d: label %q accepted", r.Line, r.Label)
			}
			if r.Source != "in" || r.Split != cfg.Split || r.ID == "" {
				t.Fatalf("line %d: bookkeeping %+v", r.Line, r)
			}
		} else {
			line = b.Line
			if b.Reason == "" || b.Source != "in" || len(b.Raw) > MaxRawKept || b.RawBytes < int64(len(b.Raw)) ||
				b.RawTruncated != (int64(len(b.Raw)) < b.RawBytes) {
				t.Fatalf("line %d: dead letter %+v", b.Line, b)
			}
			BadKind(b.Reason)
		}
		if line <= last || line > lines {
			t.Fatalf("line %d after line %d, of %d", line, last, lines)
		}
		last = line
	}
}

// roundTrip writes one record from the fields in format, then "after", and
// checks what the parser makes of them.
func roundTrip(t *testing.T, format Format, text, pair, label string, vocab bool) {
	t.Helper()
	cfg := ParseConfig{Format: format, Fields: Fields{Text: []string{"1"}, Pair: "2", Label: "3"}}
	if vocab {
		cfg.Labels = []string{"after", strings.TrimSpace(label)}
	}
	var line string
	switch format {
	case CSV:
		if strings.Count(text+pair+label, "\n") >= maxCSVLines {
			return
		}
		q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
		line = q(text) + "," + q(pair) + "," + q(label)
		// A physical line's trailing CR is part of its line break, also
		// inside a quoted field.
		text, pair, label = strings.ReplaceAll(text, "\r\n", "\n"), strings.ReplaceAll(pair, "\r\n", "\n"), strings.ReplaceAll(label, "\r\n", "\n")
	case TSV:
		if strings.ContainsAny(text+pair+label, "\t\n") {
			return
		}
		line = text + "\t" + pair + "\t" + label
	case JSONL:
		if !utf8.ValidString(text) || !utf8.ValidString(pair) || !utf8.ValidString(label) {
			return // encoding/json would write U+FFFD: not the same fields
		}
		b, err := json.Marshal(map[string]string{"text": text, "pair": pair, "label": label})
		if err != nil {
			t.Fatal(err)
		}
		line = string(b)
		cfg.Fields = Fields{Text: []string{"text"}, Pair: "pair", Label: "label"}
	case Text:
		if strings.Contains(text, "\n") {
			return
		}
		line = text
		cfg.Fields = Fields{Text: []string{"text"}}
		pair, label = "", ""
	}
	after := map[Format]string{CSV: "after,p,after", TSV: "after\tp\tafter", JSONL: `{"text":"after","pair":"p","label":"after"}`, Text: "after"}[format]
	p, err := NewParser(strings.NewReader(line+"\n"+after+"\n"), "in", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, b, err := p.Next()
	if err != nil {
		t.Fatalf("%s %q: %v", format, line, err)
	}

	tt, pp, ll := strings.TrimSpace(text), strings.TrimSpace(pair), strings.TrimSpace(label)
	if format == Text {
		tt = strings.TrimRight(strings.TrimSuffix(text, "\r"), " ")
	}
	var want string // the dead-letter reason, or "" for a record
	switch {
	case len(strings.TrimSpace(strings.TrimSuffix(line, "\r"))) == 0:
		want = "empty line"
	case !utf8.ValidString(tt) || !utf8.ValidString(pp) || !utf8.ValidString(ll):
		want = "invalid UTF-8"
	case tt == "":
		want = "empty text"
	case format != Text && pp == "":
		want = "empty pair text"
	case format != Text && ll == "":
		want = "missing label"
	}
	if format == Text && want == "" && len(bytes.TrimSpace([]byte(line))) == 0 {
		want = "empty line"
	}
	switch {
	case want == "" && r == nil:
		t.Fatalf("%s %q: dead letter %q, want the record %q/%q/%q", format, line, b.Reason, tt, pp, ll)
	case want == "" && (r.Text != tt || r.Pair != pp || r.Label != ll || r.Line != 1):
		t.Fatalf("%s %q: record %q/%q/%q line %d, want %q/%q/%q", format, line, r.Text, r.Pair, r.Label, r.Line, tt, pp, ll)
	case want != "" && r != nil:
		t.Fatalf("%s %q: record %+v accepted, want dead letter %q", format, line, r, want)
	case want != "" && !strings.HasPrefix(b.Reason, want):
		t.Fatalf("%s %q: dead letter %q, want %q", format, line, b.Reason, want)
	}
	r, _, err = p.Next()
	if err != nil || r == nil || r.Text != "after" {
		t.Fatalf("%s %q: the record after it was lost: %+v, %v", format, line, r, err)
	}
}
