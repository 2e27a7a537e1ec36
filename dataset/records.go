package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Record is one labelled text as read from a corpus, before tokenization.
type Record struct {
	Source string // file it came from
	Line   int64  // 1-based line where the record starts
	Split  string // split named by the input (train/validation/test), or "" to assign by hash
	ID     string
	Text   string
	Pair   string // second text of a pair task, or ""
	Label  string // label as written in the corpus ("" for unlabelled input)
}

// BadRecord is a dead-letter row: what could not be used, where, and why.
type BadRecord struct {
	Source string `json:"source"`
	Line   int64  `json:"line"`
	Reason string `json:"reason"`
	// Raw is the record as read, cut to MaxRawKept bytes; RawBytes is its full size.
	Raw          string `json:"raw"`
	RawBytes     int64  `json:"raw_bytes"`
	RawTruncated bool   `json:"raw_truncated,omitempty"`
}

// MaxRawKept bounds the raw text a dead-letter row keeps: a 2 GB line is
// reported with its size and first MiB, not held in memory.
const MaxRawKept = 1 << 20

// Format is a corpus file format.
type Format string

const (
	CSV Format = "csv" // RFC 4180: quoted fields may hold separators, quotes ("") and newlines
	TSV Format = "tsv" // tab-separated, no quoting (GLUE style)
	// QuotedTSV is tab-separated with CSV's quoting: a field may be wrapped
	// in "…" with inner quotes doubled (GoEmotions' files; Python's csv
	// module with delimiter="\t").
	QuotedTSV Format = "tsv_quoted"
	JSONL     Format = "jsonl" // one JSON object per line
	Text      Format = "text"  // one text per line, no label
)

// ParseFormat accepts a format name or infers one from a file name.
func ParseFormat(name, path string) (Format, error) {
	if name == "" || name == "auto" {
		p := strings.TrimSuffix(strings.ToLower(path), ".gz")
		switch {
		case strings.HasSuffix(p, ".csv"):
			return CSV, nil
		case strings.HasSuffix(p, ".tsv"):
			return TSV, nil
		case strings.HasSuffix(p, ".jsonl"), strings.HasSuffix(p, ".ndjson"), strings.HasSuffix(p, ".json"):
			return JSONL, nil
		case strings.HasSuffix(p, ".txt"):
			return Text, nil
		}
		return "", fmt.Errorf("%s: cannot tell the format from the name; pass --format=csv|tsv|jsonl|text", path)
	}
	switch f := Format(strings.ToLower(name)); f {
	case CSV, TSV, QuotedTSV, JSONL, Text:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (csv, tsv, tsv_quoted, jsonl, text)", name)
}

// Fields maps columns to roles. For CSV/TSV a field is a header name or a
// 1-based column number; for JSONL a key.
type Fields struct {
	Text  []string // joined with a space (e.g. AG News title + description)
	Pair  string
	Label string
	ID    string
}

// ParseConfig says how to turn a file into Records.
type ParseConfig struct {
	Format Format
	// Header: the first line names the columns (CSV/TSV). Without it fields
	// must be column numbers.
	Header bool
	Fields Fields
	// Split is the split every record of this file belongs to, or "".
	Split string
	// MaxRecordBytes rejects longer records (default 1 MiB).
	MaxRecordBytes int
	// Labels, when set, is the label vocabulary; other labels are rejected.
	Labels []string
	// Task is the dataset's kind (SingleLabel when ""). A multi-label
	// record's labels are a list (LabelSeparator-delimited, or a JSON array
	// in JSONL) and Record.Label holds them canonically (JoinLabelSet); a
	// regression label is a number, within LabelRange when set.
	Task           string
	LabelSeparator string // multi-label: "" is ","
	LabelRange     *LabelRange
	// LabelNames, when set, renames each label as read (an id such as "3")
	// to its name ("annoyance"); a label it lacks is unknown.
	LabelNames map[string]string
}

// DefaultMaxRecordBytes is the default limit on one record.
const DefaultMaxRecordBytes = 1 << 20

// maxCSVLines bounds how many physical lines one quoted CSV field may span
// before it is judged an unterminated quote.
const maxCSVLines = 1000

// Parser turns a byte stream into Records and BadRecords. It never fails on
// a bad record: only I/O errors stop it.
type Parser struct {
	cfg    ParseConfig
	source string
	lines  *lineReader
	labels map[string]bool

	cols     map[string]int // header name -> column index
	textCols []int
	pairCol  int
	labelCol int
	idCol    int
	nCols    int // expected columns (from the header), 0 = any

	pending []line // lines pushed back after a failed multi-line CSV record

	jsonLabels []string // a multi-label JSONL record's label array, nil otherwise
}

type line struct {
	no      int64
	data    []byte
	size    int64 // full size, may exceed len(data) when tooLong
	tooLong bool
}

// NewParser reads r, which holds the file named source.
func NewParser(r io.Reader, source string, cfg ParseConfig) (*Parser, error) {
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if len(cfg.Fields.Text) == 0 {
		return nil, errors.New("no text field given")
	}
	p := &Parser{cfg: cfg, source: source, lines: newLineReader(r, cfg.MaxRecordBytes), pairCol: -1, labelCol: -1, idCol: -1}
	if len(cfg.Labels) > 0 {
		p.labels = map[string]bool{}
		for _, l := range cfg.Labels {
			p.labels[l] = true
		}
	}
	return p, nil
}

// Next returns the next record, or a bad record, or io.EOF.
func (p *Parser) Next() (*Record, *BadRecord, error) {
	for {
		ln, err := p.nextLine()
		if err != nil {
			return nil, nil, err
		}
		wantHeader := p.cfg.Header && p.cols == nil && p.cfg.Format != JSONL && p.cfg.Format != Text
		if ln.tooLong {
			if wantHeader {
				// Not a dead letter: skipping it would make the next data
				// row the column names.
				return nil, nil, fmt.Errorf("%s:%d: header exceeds %d bytes (%d bytes)", p.source, ln.no, p.cfg.MaxRecordBytes, ln.size)
			}
			return nil, p.bad(ln, fmt.Sprintf("record exceeds %d bytes (%d bytes)", p.cfg.MaxRecordBytes, ln.size)), nil
		}
		if wantHeader {
			if err := p.readHeader(ln); err != nil {
				return nil, nil, err
			}
			continue
		}
		if p.cols == nil && p.cfg.Format != JSONL && p.cfg.Format != Text {
			if err := p.numericColumns(); err != nil {
				return nil, nil, err
			}
		}
		if len(bytes.TrimSpace(ln.data)) == 0 {
			return nil, p.bad(ln, "empty line"), nil
		}
		switch p.cfg.Format {
		case TSV:
			return p.fromFields(ln, strings.Split(string(ln.data), "\t"))
		case CSV, QuotedTSV:
			fields, end, reason := p.csvRecord(ln)
			if reason != "" {
				return nil, p.bad(end, reason), nil
			}
			return p.fromFields(end, fields)
		case JSONL:
			return p.fromJSON(ln)
		case Text:
			return p.validate(ln, &Record{Text: strings.TrimRight(string(ln.data), " ")})
		}
		return nil, nil, fmt.Errorf("unsupported format %q", p.cfg.Format)
	}
}

func (p *Parser) nextLine() (line, error) {
	if n := len(p.pending); n > 0 {
		ln := p.pending[0]
		p.pending = p.pending[1:]
		return ln, nil
	}
	return p.lines.next()
}

func (p *Parser) bad(ln line, reason string) *BadRecord {
	raw := ln.data
	return &BadRecord{Source: p.source, Line: ln.no, Reason: reason, Raw: string(raw), RawBytes: ln.size, RawTruncated: int64(len(raw)) < ln.size}
}

func (p *Parser) readHeader(ln line) error {
	// A UTF-8 byte-order mark (MRPC's files start with one, as files saved
	// by Windows tools do) is not part of the first column's name.
	ln.data = bytes.TrimPrefix(ln.data, []byte("\xef\xbb\xbf"))
	var names []string
	switch p.cfg.Format {
	case TSV:
		names = strings.Split(string(ln.data), "\t")
	case CSV, QuotedTSV:
		fields, _, reason := p.csvRecord(ln)
		if reason != "" {
			return fmt.Errorf("%s:%d: header: %s", p.source, ln.no, reason)
		}
		names = fields
	}
	p.cols = map[string]int{}
	for i, n := range names {
		p.cols[strings.TrimSpace(n)] = i
	}
	p.nCols = len(names)
	return p.resolve(func(f string) (int, bool) { i, ok := p.cols[f]; return i, ok }, "header")
}

func (p *Parser) numericColumns() error {
	p.cols = map[string]int{}
	return p.resolve(func(f string) (int, bool) {
		n, err := strconv.Atoi(f)
		return n - 1, err == nil && n >= 1
	}, "column number (the file has no header)")
}

// resolve maps configured field names to column indexes.
func (p *Parser) resolve(lookup func(string) (int, bool), what string) error {
	find := func(f string) (int, error) {
		i, ok := lookup(f)
		if !ok {
			return 0, fmt.Errorf("%s: field %q is not a %s", p.source, f, what)
		}
		return i, nil
	}
	for _, f := range p.cfg.Fields.Text {
		i, err := find(f)
		if err != nil {
			return err
		}
		p.textCols = append(p.textCols, i)
	}
	for _, c := range []struct {
		name string
		dst  *int
	}{{p.cfg.Fields.Pair, &p.pairCol}, {p.cfg.Fields.Label, &p.labelCol}, {p.cfg.Fields.ID, &p.idCol}} {
		if c.name == "" {
			continue
		}
		i, err := find(c.name)
		if err != nil {
			return err
		}
		*c.dst = i
	}
	return nil
}

func (p *Parser) fromFields(ln line, fields []string) (*Record, *BadRecord, error) {
	if p.nCols > 0 && len(fields) != p.nCols {
		return nil, p.bad(ln, fmt.Sprintf("expected %d fields, got %d", p.nCols, len(fields))), nil
	}
	get := func(i int) (string, bool) {
		if i < 0 || i >= len(fields) {
			return "", false
		}
		return fields[i], true
	}
	var texts []string
	for k, i := range p.textCols {
		v, ok := get(i)
		if !ok {
			return nil, p.bad(ln, fmt.Sprintf("text field %q missing (record has %d fields)", p.cfg.Fields.Text[k], len(fields))), nil
		}
		texts = append(texts, strings.TrimSpace(v))
	}
	r := &Record{Text: strings.TrimSpace(strings.Join(texts, " "))}
	if p.pairCol >= 0 {
		v, ok := get(p.pairCol)
		if !ok {
			return nil, p.bad(ln, fmt.Sprintf("pair field %q missing", p.cfg.Fields.Pair)), nil
		}
		r.Pair = strings.TrimSpace(v)
	}
	if p.labelCol >= 0 {
		v, _ := get(p.labelCol)
		r.Label = strings.TrimSpace(v)
	}
	if p.idCol >= 0 {
		v, _ := get(p.idCol)
		r.ID = strings.TrimSpace(v)
	}
	return p.validate(ln, r)
}

func (p *Parser) fromJSON(ln line) (*Record, *BadRecord, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ln.data, &obj); err != nil {
		return nil, p.bad(ln, "invalid JSON: "+err.Error()), nil
	}
	str := func(key string) (string, bool, string) {
		raw, ok := obj[key]
		if !ok || string(raw) == "null" {
			return "", false, ""
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return s, true, ""
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err == nil {
			return n.String(), true, ""
		}
		return "", false, fmt.Sprintf("field %q is not a string or number", key)
	}
	p.jsonLabels = nil
	if raw, ok := obj[p.cfg.Fields.Label]; ok && p.cfg.Task == MultiLabel && len(raw) > 0 && raw[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, p.bad(ln, fmt.Sprintf("label field %q: %v", p.cfg.Fields.Label, err)), nil
		}
		p.jsonLabels = []string{}
		for _, item := range list {
			var s string
			var n json.Number
			switch {
			case json.Unmarshal(item, &s) == nil:
			case json.Unmarshal(item, &n) == nil:
				s = n.String()
			default:
				return nil, p.bad(ln, fmt.Sprintf("label field %q holds %s, not a string or number", p.cfg.Fields.Label, item)), nil
			}
			p.jsonLabels = append(p.jsonLabels, s)
		}
		delete(obj, p.cfg.Fields.Label) // read here; the loop below would refuse an array
	}
	var texts []string
	for _, f := range p.cfg.Fields.Text {
		v, ok, why := str(f)
		if why != "" {
			return nil, p.bad(ln, why), nil
		}
		if !ok {
			return nil, p.bad(ln, fmt.Sprintf("text field %q missing", f)), nil
		}
		texts = append(texts, strings.TrimSpace(v))
	}
	r := &Record{Text: strings.TrimSpace(strings.Join(texts, " "))}
	for _, c := range []struct {
		key string
		dst *string
	}{{p.cfg.Fields.Pair, &r.Pair}, {p.cfg.Fields.Label, &r.Label}, {p.cfg.Fields.ID, &r.ID}} {
		if c.key == "" {
			continue
		}
		v, _, why := str(c.key)
		if why != "" {
			return nil, p.bad(ln, why), nil
		}
		*c.dst = strings.TrimSpace(v)
	}
	return p.validate(ln, r)
}

// validate applies the checks every format shares and fills the bookkeeping fields.
func (p *Parser) validate(ln line, r *Record) (*Record, *BadRecord, error) {
	for _, f := range []struct{ name, v string }{{"text", r.Text}, {"pair", r.Pair}, {"label", r.Label}, {"id", r.ID}} {
		if !utf8.ValidString(f.v) {
			return nil, p.bad(ln, fmt.Sprintf("invalid UTF-8 in %s at byte %d", f.name, firstInvalid(f.v))), nil
		}
	}
	if r.Text == "" {
		return nil, p.bad(ln, "empty text"), nil
	}
	if p.cfg.Fields.Pair != "" && r.Pair == "" {
		return nil, p.bad(ln, "empty pair text"), nil
	}
	if p.cfg.Fields.Label != "" {
		if r.Label == "" && p.jsonLabels == nil {
			return nil, p.bad(ln, "missing label"), nil
		}
		why := p.label(r)
		p.jsonLabels = nil // this record's; the next JSONL record sets its own
		if why != "" {
			return nil, p.bad(ln, why), nil
		}
	}
	r.Source, r.Line, r.Split = p.source, ln.no, p.cfg.Split
	if r.ID == "" {
		r.ID = fmt.Sprintf("%s:%d", p.source, ln.no)
	}
	return r, nil, nil
}

// label checks r.Label for the task and makes it canonical; it returns the
// reason when the label is bad.
func (p *Parser) label(r *Record) string {
	switch p.cfg.Task {
	case Regression:
		canonical, why := parseScore(r.Label, p.cfg.LabelRange)
		r.Label = canonical
		return why
	case MultiLabel:
		parts := p.jsonLabels
		if parts == nil {
			sep := p.cfg.LabelSeparator
			if sep == "" {
				sep = ","
			}
			parts = strings.Split(r.Label, sep)
		}
		var set []string
		for _, l := range parts {
			l = strings.TrimSpace(l)
			if l != "" && p.cfg.LabelNames != nil {
				name, ok := p.cfg.LabelNames[l]
				if !ok {
					return fmt.Sprintf("unknown label %q (not in the label names)", l)
				}
				l = name
			}
			switch {
			case l == "":
				continue
			case strings.Contains(l, labelSetSeparator):
				return fmt.Sprintf("label %q holds a control character", l)
			case p.labels != nil && !p.labels[l]:
				return fmt.Sprintf("unknown label %q", l)
			}
			set = append(set, l)
		}
		if len(set) == 0 {
			return "missing label"
		}
		r.Label = JoinLabelSet(set)
		return ""
	}
	if p.cfg.LabelNames != nil {
		name, ok := p.cfg.LabelNames[r.Label]
		if !ok {
			return fmt.Sprintf("unknown label %q (not in the label names)", r.Label)
		}
		r.Label = name
	}
	if p.labels != nil && !p.labels[r.Label] {
		return fmt.Sprintf("unknown label %q", r.Label)
	}
	return ""
}

func firstInvalid(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return i
			}
		}
	}
	return -1
}

// csvRecord parses one CSV record starting at first, reading more lines while
// a quoted field is open. On an unterminated quote it reports the first line
// as bad and pushes the lines after it back, so parsing resumes there and no
// good record is lost.
func (p *Parser) csvRecord(first line) (fields []string, rec line, reason string) {
	buf := append([]byte(nil), first.data...)
	var extra []line
	rec = first
	sep := byte(',')
	if p.cfg.Format == QuotedTSV {
		sep = '\t'
	}
	for {
		fields, state := splitCSV(buf, sep)
		switch state {
		case csvComplete:
			rec.data, rec.size = buf, int64(len(buf))
			return fields, rec, ""
		case csvGarbage:
			return nil, first, "malformed quoting (text after a closing quote)"
		}
		// Open quote: the record continues on the next line.
		ln, err := p.lines.next()
		// The joined record holds the line break between the lines too.
		if err != nil || ln.tooLong || len(buf)+1+len(ln.data) > p.cfg.MaxRecordBytes || len(extra) >= maxCSVLines {
			if err == nil {
				extra = append(extra, ln)
			}
			p.pending = append(extra, p.pending...)
			return nil, first, "unterminated quoted field"
		}
		extra = append(extra, ln)
		buf = append(append(buf, '\n'), ln.data...)
	}
}

type csvState int

const (
	csvComplete csvState = iota
	csvOpenQuote
	csvGarbage
)

// splitCSV splits one record (RFC 4180, with separator sep). A quote inside
// an unquoted field is kept literally, as Python's csv module does.
func splitCSV(b []byte, sep byte) ([]string, csvState) {
	var fields []string
	var cur []byte
	i := 0
	for {
		if i < len(b) && b[i] == '"' {
			i++
			for {
				if i >= len(b) {
					return nil, csvOpenQuote
				}
				if b[i] == '"' {
					if i+1 < len(b) && b[i+1] == '"' {
						cur = append(cur, '"')
						i += 2
						continue
					}
					i++
					break
				}
				cur = append(cur, b[i])
				i++
			}
			if i < len(b) && b[i] != sep {
				return nil, csvGarbage
			}
		} else {
			for i < len(b) && b[i] != sep {
				cur = append(cur, b[i])
				i++
			}
		}
		fields = append(fields, string(cur))
		cur = cur[:0]
		if i >= len(b) {
			return fields, csvComplete
		}
		i++ // the separator
	}
}

// lineReader yields lines with their numbers. A line's size and data exclude
// its break ("\n", "\r\n", or a CR that ends the file), so the record limit
// means the same whether or not the last line of a file ends with one. A line
// longer than max is drained without being held and returned with tooLong set
// and its first min(max, MaxRawKept) bytes.
type lineReader struct {
	r   *bufio.Reader
	max int
	no  int64
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (l *lineReader) next() (line, error) {
	var buf []byte
	var size int64   // bytes read for this line, its break included
	var prev byte    // last byte of the previous chunk, for a "\r" split from its "\n"
	var chunk []byte // the last chunk read
	for {
		var err error
		if len(chunk) > 0 {
			prev = chunk[len(chunk)-1]
		}
		chunk, err = l.r.ReadSlice('\n')
		size += int64(len(chunk))
		// Hold at most a record of max bytes and its two-byte break; the
		// break is known only at the end, and more is never needed.
		if room := l.max + 2 - len(buf); room > 0 {
			buf = append(buf, chunk[:min(room, len(chunk))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return line{}, err
		}
		if size == 0 {
			return line{}, io.EOF
		}
		break
	}
	l.no++
	brk := 0
	last := prev // the line's last byte
	if n := len(chunk); n > 0 {
		last = chunk[n-1]
	}
	switch {
	case last == '\n':
		brk = 1
		if n := len(chunk); n > 1 && chunk[n-2] == '\r' || n == 1 && prev == '\r' {
			brk = 2
		}
	case last == '\r':
		// A last line ended by a lone CR (a CRLF file cut after its CR): the
		// CR is the break, as bufio.ScanLines treats it. Only ever one CR is
		// a break: "a\r\r\n" is the line "a\r".
		brk = 1
	}
	size -= int64(brk)
	if size > int64(l.max) {
		return line{no: l.no, data: buf[:min(len(buf), MaxRawKept, l.max)], size: size, tooLong: true}, nil
	}
	return line{no: l.no, data: buf[:size], size: size}, nil
}

// BadKind is the category of a dead-letter reason, for counting.
func BadKind(reason string) string {
	switch {
	case reason == "empty line":
		return "empty_line"
	case reason == "empty text", reason == "empty pair text":
		return "empty_text"
	case reason == "missing label":
		return "missing_label"
	case strings.HasPrefix(reason, "unknown label"):
		return "unknown_label"
	case strings.HasPrefix(reason, "label "):
		return "invalid_label"
	case strings.HasPrefix(reason, "invalid UTF-8"):
		return "invalid_utf8"
	case strings.HasPrefix(reason, "record exceeds"):
		return "too_long"
	case strings.Contains(reason, "quot"):
		return "malformed_csv"
	case strings.HasPrefix(reason, "expected "):
		return "field_count"
	case strings.HasPrefix(reason, "invalid JSON"):
		return "invalid_json"
	}
	return "missing_field"
}
