package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseAll(t *testing.T, data string, cfg ParseConfig) ([]Record, []BadRecord) {
	t.Helper()
	p, err := NewParser(strings.NewReader(data), "in", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var good []Record
	var bad []BadRecord
	for {
		r, b, err := p.Next()
		if errors.Is(err, io.EOF) {
			return good, bad
		}
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			good = append(good, *r)
		}
		if b != nil {
			bad = append(bad, *b)
		}
	}
}

func TestParseTSVWithHeader(t *testing.T) {
	data := "sentence\tlabel\nhide new secretions \t0\n\t1\ngreat fun \t\nok\t1\textra\ncafé \t1\n"
	good, bad := parseAll(t, data, ParseConfig{Format: TSV, Header: true, Fields: Fields{Text: []string{"sentence"}, Label: "label"}})
	if len(good) != 2 || good[0].Text != "hide new secretions" || good[0].Label != "0" || good[0].Line != 2 || good[1].Text != "café" {
		t.Fatalf("good = %+v", good)
	}
	want := map[int64]string{3: "empty text", 4: "missing label", 5: "expected 2 fields, got 3"}
	if len(bad) != len(want) {
		t.Fatalf("bad = %+v", bad)
	}
	for _, b := range bad {
		if want[b.Line] != b.Reason {
			t.Errorf("line %d: reason %q, want %q", b.Line, b.Reason, want[b.Line])
		}
	}
}

func TestParseCSVQuotingAndRecovery(t *testing.T) {
	data := strings.Join([]string{
		`"3","Wall St. ""Bears""","Short-sellers, Wall Street's dwindling\band"`,
		`"1","multi`,
		`line title","desc"`,
		`"2","unterminated,"desc`,
		`"4","after the break","still read"`,
		`"2","x"y,"z"`,
		``,
		`"1","bad utf8 ` + "\xff\xfe" + `","d"`,
	}, "\n") + "\n"
	good, bad := parseAll(t, data, ParseConfig{Format: CSV, Fields: Fields{Text: []string{"2", "3"}, Label: "1"}})
	texts := []string{}
	for _, g := range good {
		texts = append(texts, g.Label+"|"+g.Text)
	}
	wantGood := []string{
		`3|Wall St. "Bears" Short-sellers, Wall Street's dwindling\band`,
		"1|multi\nline title desc",
		"4|after the break still read",
	}
	if strings.Join(texts, "\n#") != strings.Join(wantGood, "\n#") {
		t.Fatalf("good:\n%q\nwant\n%q", texts, wantGood)
	}
	if good[1].Line != 2 || good[2].Line != 5 {
		t.Errorf("lines %d %d, want 2 5", good[1].Line, good[2].Line)
	}
	reasons := map[int64]string{}
	for _, b := range bad {
		reasons[b.Line] = b.Reason
	}
	want := map[int64]string{4: "malformed quoting (text after a closing quote)", 6: "malformed quoting (text after a closing quote)", 7: "empty line", 8: "invalid UTF-8 in text at byte 9"}
	for line, r := range want {
		if reasons[line] != r {
			t.Errorf("line %d: %q, want %q (all: %v)", line, reasons[line], r, reasons)
		}
	}
	if len(bad) != len(want) {
		t.Errorf("bad = %+v", bad)
	}
}

func TestParseCSVUnterminatedQuoteLosesNothing(t *testing.T) {
	data := "\"1\",\"open quote never closed,\"d\"\n\"2\",\"good one\",\"d\"\n\"3\",\"good two\",\"d\"\n"
	good, bad := parseAll(t, data, ParseConfig{Format: CSV, Fields: Fields{Text: []string{"2"}, Label: "1"}})
	if len(bad) != 1 || bad[0].Line != 1 {
		t.Fatalf("bad = %+v", bad)
	}
	if len(good) != 2 || good[0].Line != 2 || good[1].Line != 3 {
		t.Fatalf("good = %+v", good)
	}
}

func TestParseLongLineIsBoundedAndReported(t *testing.T) {
	long := strings.Repeat("x", 10<<20)
	data := "text\tlabel\nshort\t1\n" + long + "\t0\nafter\t0\n"
	good, bad := parseAll(t, data, ParseConfig{Format: TSV, Header: true, Fields: Fields{Text: []string{"text"}, Label: "label"}, MaxRecordBytes: 1 << 20})
	if len(good) != 2 || good[1].Text != "after" || good[1].Line != 4 {
		t.Fatalf("good = %+v", good)
	}
	if len(bad) != 1 || bad[0].Line != 3 || !bad[0].RawTruncated || bad[0].RawBytes != int64(len(long)+2) || len(bad[0].Raw) > MaxRawKept {
		t.Fatalf("bad = line %d truncated %v size %d kept %d", bad[0].Line, bad[0].RawTruncated, bad[0].RawBytes, len(bad[0].Raw))
	}
}

func TestParseJSONLAndLabels(t *testing.T) {
	data := `{"text":"good","label":1,"id":"a"}` + "\n" + `{"text":"x","label":"7"}` + "\n" + `not json` + "\n" + `{"label":1}` + "\n"
	good, bad := parseAll(t, data, ParseConfig{Format: JSONL, Fields: Fields{Text: []string{"text"}, Label: "label", ID: "id"}, Labels: []string{"0", "1"}})
	if len(good) != 1 || good[0].ID != "a" || good[0].Label != "1" {
		t.Fatalf("good = %+v", good)
	}
	if len(bad) != 3 || bad[0].Reason != `unknown label "7"` || !strings.HasPrefix(bad[1].Reason, "invalid JSON") || bad[2].Reason != `text field "text" missing` {
		t.Fatalf("bad = %+v", bad)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	_, err := NewParser(strings.NewReader("a\tb\n"), "in", ParseConfig{Format: TSV, Header: true, Fields: Fields{Text: []string{"sentence"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := NewParser(strings.NewReader("a\tb\nx\ty\n"), "in.tsv", ParseConfig{Format: TSV, Header: true, Fields: Fields{Text: []string{"sentence"}}})
	if _, _, err := p.Next(); err == nil || !strings.Contains(err.Error(), `field "sentence" is not a header`) {
		t.Fatalf("err = %v", err)
	}
}

// TestRecordLimitExact: a record of exactly MaxRecordBytes is accepted and one
// byte more is a dead letter, whatever ends the line ("\n", "\r\n", or the end
// of the file), in every format, and for a quoted CSV record spanning lines.
func TestRecordLimitExact(t *testing.T) {
	const limit = 32
	// Each builds a line of exactly n bytes whose text is the line's x's.
	build := map[Format]func(n int) string{
		Text:  func(n int) string { return strings.Repeat("x", n) },
		TSV:   func(n int) string { return strings.Repeat("x", n-2) + "\t1" },
		CSV:   func(n int) string { return strings.Repeat("x", n-2) + ",1" },
		JSONL: func(n int) string { return `{"t":"` + strings.Repeat("x", n-16) + `","l":"1"}` },
	}
	// Bytes of a line of n bytes that are not its text.
	frame := map[Format]int{Text: 0, TSV: 2, CSV: 2, JSONL: 16}
	fields := map[Format]Fields{
		Text:  {Text: []string{"t"}},
		TSV:   {Text: []string{"1"}, Label: "2"},
		CSV:   {Text: []string{"1"}, Label: "2"},
		JSONL: {Text: []string{"t"}, Label: "l"},
	}
	for _, format := range []Format{Text, TSV, CSV, JSONL} {
		for _, end := range []string{"\n", "\r\n", ""} {
			for _, n := range []int{limit - 1, limit, limit + 1, limit + 2} {
				rec := build[format](n)
				if len(rec) != n {
					t.Fatalf("%s: built %d bytes, want %d", format, len(rec), n)
				}
				data := build[format](limit/2+4) + "\n" + rec + end
				good, bad := parseAll(t, data, ParseConfig{Format: format, Fields: fields[format], MaxRecordBytes: limit})
				name := fmt.Sprintf("%s %d bytes ending %q", format, n, end)
				if len(good) == 0 || good[0].Line != 1 {
					t.Fatalf("%s: the first record was lost: good %+v bad %+v", name, good, bad)
				}
				if n <= limit {
					if len(good) != 2 || len(bad) != 0 || good[1].Line != 2 || good[1].Text != strings.Repeat("x", n-frame[format]) {
						t.Fatalf("%s: want it accepted; good %+v bad %+v", name, good, bad)
					}
					continue
				}
				want := fmt.Sprintf("record exceeds %d bytes (%d bytes)", limit, n)
				if len(good) != 1 || len(bad) != 1 || bad[0].Line != 2 || bad[0].Reason != want || bad[0].RawBytes != int64(n) ||
					!bad[0].RawTruncated || bad[0].Raw != rec[:limit] {
					t.Fatalf("%s: want the dead letter %q; good %+v bad %+v", name, want, good, bad)
				}
			}
		}
	}

	// A quoted CSV record spanning two lines: the break between them counts.
	for _, n := range []int{limit, limit + 1} {
		// `"` + a + "\n" + b + `",1` is n bytes.
		a := strings.Repeat("a", 10)
		b := strings.Repeat("b", n-len(a)-5)
		data := `"` + a + "\n" + b + `",1` + "\nafter,1\n"
		good, bad := parseAll(t, data, ParseConfig{Format: CSV, Fields: fields[CSV], MaxRecordBytes: limit})
		switch {
		case n <= limit && (len(good) != 2 || good[0].Text != a+"\n"+b || len(bad) != 0):
			t.Fatalf("CSV record of %d bytes over two lines: want it accepted; good %+v bad %+v", n, good, bad)
		case n > limit && (len(bad) == 0 || bad[0].Reason != "unterminated quoted field" || len(good) == 0 || good[len(good)-1].Text != "after"):
			t.Fatalf("CSV record of %d bytes over two lines: want a dead letter and the next record kept; good %+v bad %+v", n, good, bad)
		}
	}
}

// TestLineBreaks: a line ends at "\n", "\r\n", or (last line only) a lone CR
// or the end of the file, and exactly one break is removed: the fuzzer found
// "0\r\r\n" read as "0", its second CR taken for a break too.
func TestLineBreaks(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"a\nb", []string{"a", "b"}},
		{"a\r\nb\r\n", []string{"a", "b"}},
		{"a\r\r\nb", []string{"a\r", "b"}},
		{"a\nb\r", []string{"a", "b"}},
		{"a\nb\r\r", []string{"a", "b\r"}},
		{"a\rb\n", []string{"a\rb"}},
	} {
		p, err := NewParser(strings.NewReader(c.in), "in", ParseConfig{Format: Text, Fields: Fields{Text: []string{"text"}}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			r, b, err := p.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if b != nil {
				t.Fatalf("%q: dead letter %q", c.in, b.Reason)
			}
			got = append(got, r.Text)
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.want) {
			t.Errorf("%q: lines %q, want %q", c.in, got, c.want)
		}
	}
}

// TestParseQuotedTSV reads tabs with CSV quoting: a quoted field keeps
// tabs, doubled quotes and line breaks; plain TSV would keep the wrapping.
func TestParseQuotedTSV(t *testing.T) {
	data := "\"he said \"\"no\"\"\"\t3,10\tid1\n" +
		"\"a\ttab\"\t2\tid2\n" +
		"plain \"inner\" quote\t27\tid3\n" +
		"\"two\nlines\"\t1\tid4\n"
	good, bad := parseAll(t, data, ParseConfig{Format: QuotedTSV, Fields: Fields{Text: []string{"1"}, Label: "2", ID: "3"}})
	if len(bad) != 0 {
		t.Fatalf("bad: %+v", bad)
	}
	var got []string
	for _, g := range good {
		got = append(got, g.ID+"|"+g.Label+"|"+g.Text)
	}
	want := []string{`id1|3,10|he said "no"`, "id2|2|a\ttab", `id3|27|plain "inner" quote`, "id4|1|two\nlines"}
	if strings.Join(got, "#") != strings.Join(want, "#") {
		t.Errorf("got %q, want %q", got, want)
	}
	if f, err := ParseFormat("tsv_quoted", "x.tsv"); err != nil || f != QuotedTSV {
		t.Errorf("ParseFormat: %v %v", f, err)
	}
}

// TestParseQuotedTSVGoEmotions reads GoEmotions' dev split, whose texts
// with a quote are CSV-quoted (137 of 5,426 lines, per the data README):
// every row parses, and no text keeps the doubled quotes of the encoding.
func TestParseQuotedTSVGoEmotions(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "data", "goemotions", "dev.tsv")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("GoEmotions not here: %v", err)
	}
	good, bad := parseAll(t, string(data), ParseConfig{Format: QuotedTSV, Fields: Fields{Text: []string{"1"}, Label: "2", ID: "3"}})
	if len(good) != 5426 || len(bad) != 0 {
		t.Fatalf("%d good, %d bad rows; want 5426 and 0", len(good), len(bad))
	}
	quoted := 0
	for _, g := range good {
		if strings.Contains(g.Text, `"`) {
			quoted++
			if strings.Contains(g.Text, `""`) {
				t.Errorf("line %d keeps CSV quoting: %q", g.Line, g.Text)
			}
		}
		if len(g.ID) != 7 {
			t.Errorf("line %d: id %q", g.Line, g.ID)
		}
	}
	if quoted != 137 {
		t.Errorf("%d texts with a quote, the README counts 137 quoted lines", quoted)
	}
}
