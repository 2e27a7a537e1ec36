package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strconv"
	"unicode/utf8"
)

// metadataKey is the reserved top-level key holding the string map of
// free-form metadata; every other key names a tensor.
const metadataKey = "__metadata__"

// header is the validated content of a safetensors header.
type header struct {
	tensors  map[string]TensorInfo
	metadata map[string]string
}

// parseHeader decodes and validates the JSON header. dataSize is the size of
// the byte buffer that follows the header, so every range can be checked
// against the real file before anything is allocated for it.
//
// It walks the JSON with the token API instead of json.Unmarshal because
// Unmarshal keeps the last of two duplicate keys without a word; a file whose
// meaning depends on which duplicate a parser keeps is refused instead.
func parseHeader(raw []byte, dataSize int64, o Options) (*header, error) {
	// encoding/json would replace invalid UTF-8 by U+FFFD, silently renaming
	// tensors; the reference implementation refuses such headers, so do we.
	if !utf8.Valid(raw) {
		return nil, formatErr("", "header is not valid UTF-8")
	}
	// Likewise it decodes an unpaired surrogate escape ("\ud800") to U+FFFD,
	// where the reference refuses the header.
	if off, bad := loneSurrogate(raw); bad {
		return nil, formatErr("", "invalid JSON header near byte %d: unpaired UTF-16 surrogate escape", off)
	}
	p := &headerParser{dec: json.NewDecoder(bytes.NewReader(raw)), o: o, dataSize: dataSize}
	p.dec.UseNumber()
	h := &header{tensors: make(map[string]TensorInfo)}
	seen := make(map[string]bool)
	err := p.object("header", func(key string) error {
		if seen[key] {
			if key == metadataKey {
				return formatErr("", "duplicate key %q in header", key)
			}
			return formatErr(key, "duplicate tensor name in header")
		}
		seen[key] = true
		if key == metadataKey {
			m, err := p.metadata()
			h.metadata = m
			return err
		}
		if len(h.tensors) >= o.MaxTensors {
			return formatErr("", "more than %d tensors (Options.MaxTensors)", o.MaxTensors)
		}
		ti, err := p.tensor(key)
		if err != nil {
			return err
		}
		h.tensors[key] = ti
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Only whitespace (the reference pads with spaces) may follow the object.
	if tok, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, p.syntax(err)
		}
		return nil, formatErr("", "unexpected %s after the header object", describe(tok))
	}
	if err := checkLayout(h.tensors, dataSize); err != nil {
		return nil, err
	}
	return h, nil
}

type headerParser struct {
	dec      *json.Decoder
	o        Options
	dataSize int64
}

// syntax turns a decoder error into a FormatError; the decoder only ever
// reads from memory, so every error it returns is a problem with the bytes.
func (p *headerParser) syntax(err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return formatErr("", "invalid JSON header: unexpected end of header")
	}
	// SyntaxError.Offset is relative to the decoder's internal buffer when
	// tokens are read one by one; InputOffset is where the bad value starts.
	return formatErr("", "invalid JSON header near byte %d: %v", p.dec.InputOffset(), err)
}

func (p *headerParser) token() (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	return tok, nil
}

// object reads one JSON object, calling fn with each key; fn must consume
// exactly the key's value.
func (p *headerParser) object(what string, fn func(key string) error) error {
	tok, err := p.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return formatErr("", "%s must be a JSON object, found %s", what, describe(tok))
	}
	return p.objectBody(what, fn)
}

// objectBody reads the keys and values of an object whose '{' has already
// been consumed, and its closing '}'.
func (p *headerParser) objectBody(what string, fn func(key string) error) error {
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok { // the decoder guarantees string keys; stay defensive anyway
			return formatErr("", "%s: object key is %s", what, describe(tok))
		}
		if err := fn(key); err != nil {
			return err
		}
	}
	_, err := p.token() // the closing '}'; More() returned false so it is next
	return err
}

func (p *headerParser) metadata() (map[string]string, error) {
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	// The reference writer omits the key when there is no metadata, but its
	// reader accepts null too, so files from other writers may carry it.
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, formatErr("", "%s must be an object or null, found %s", metadataKey, describe(tok))
	}
	m := make(map[string]string)
	err = p.objectBody(metadataKey, func(key string) error {
		if _, dup := m[key]; dup {
			return formatErr("", "duplicate key %s in %s", truncQuote(key), metadataKey)
		}
		tok, err := p.token()
		if err != nil {
			return err
		}
		s, ok := tok.(string)
		if !ok {
			return formatErr("", "%s[%s] must be a string, found %s", metadataKey, truncQuote(key), describe(tok))
		}
		m[key] = s
		return nil
	})
	return m, err
}

func (p *headerParser) tensor(name string) (TensorInfo, error) {
	var ti TensorInfo
	var haveDType, haveShape, haveOffsets bool
	tok, err := p.token()
	if err != nil {
		return ti, err
	}
	if tok != json.Delim('{') {
		return ti, formatErr(name, "value must be a JSON object, found %s", describe(tok))
	}
	err = p.objectBody("tensor "+truncQuote(name), func(key string) error {
		var err error
		switch key {
		case "dtype":
			if haveDType {
				return formatErr(name, "duplicate key %q", key)
			}
			haveDType = true
			tok, err := p.token()
			if err != nil {
				return err
			}
			s, ok := tok.(string)
			if !ok {
				return formatErr(name, "dtype must be a string, found %s", describe(tok))
			}
			ti.DType = DType(s)
		case "shape":
			if haveShape {
				return formatErr(name, "duplicate key %q", key)
			}
			haveShape = true
			ti.Shape, err = p.intArray(name, "shape", p.o.MaxRank)
		case "data_offsets":
			if haveOffsets {
				return formatErr(name, "duplicate key %q", key)
			}
			haveOffsets = true
			var offs []int64
			offs, err = p.intArray(name, "data_offsets", 2)
			if err == nil && len(offs) != 2 {
				err = formatErr(name, "data_offsets must hold 2 integers, found %d", len(offs))
			}
			if err == nil {
				ti.Offsets = [2]int64{offs[0], offs[1]}
			}
		default:
			// The reference reader ignores unknown fields; so do we, so that
			// a future writer adding one does not break loading. The value
			// is bounded by the header size, which is already in memory.
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return p.syntax(err)
			}
		}
		return err
	})
	if err != nil {
		return ti, err
	}
	switch {
	case !haveDType:
		return ti, formatErr(name, "missing dtype")
	case !haveShape:
		return ti, formatErr(name, "missing shape")
	case !haveOffsets:
		return ti, formatErr(name, "missing data_offsets")
	}
	return ti, checkTensor(name, ti, p.dataSize)
}

// intArray reads a JSON array of at most max integers. The limit is enforced
// while reading so that a hostile shape of a million entries costs nothing.
func (p *headerParser) intArray(name, what string, max int) ([]int64, error) {
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, formatErr(name, "%s must be an array of integers, found %s", what, describe(tok))
	}
	out := []int64{}
	for p.dec.More() {
		if len(out) >= max {
			if what == "shape" {
				return nil, formatErr(name, "shape has more than %d dimensions (Options.MaxRank)", max)
			}
			return nil, formatErr(name, "%s has more than %d entries", what, max)
		}
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, formatErr(name, "%s must be an array of integers, found %s", what, describe(tok))
		}
		// ParseInt refuses fractions and exponents, as the reference does
		// ("1.0" is not a dimension).
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, formatErr(name, "%s entry %s does not fit in int64", what, num)
			}
			return nil, formatErr(name, "%s entry %s is not an integer", what, num)
		}
		out = append(out, v)
	}
	if _, err := p.token(); err != nil { // the closing ']'
		return nil, err
	}
	return out, nil
}

// checkTensor validates one tensor on its own: dtype, shape and whether its
// byte range is consistent with the shape and lies inside the data buffer.
func checkTensor(name string, ti TensorInfo, dataSize int64) error {
	if !ti.DType.Supported() {
		if knownUnsupported[ti.DType] {
			return formatErr(name, "unsupported dtype %s", ti.DType)
		}
		return formatErr(name, "unknown dtype %q", string(ti.DType))
	}
	for i, d := range ti.Shape {
		if d < 0 {
			return formatErr(name, "shape %v: dimension %d is negative", ti.Shape, i)
		}
	}
	nbytes, err := byteSize(ti.DType, ti.Shape)
	if err != nil {
		return formatErr(name, "shape %v: %v", ti.Shape, err)
	}
	b, e := ti.Offsets[0], ti.Offsets[1]
	switch {
	case b < 0 || e < 0:
		return formatErr(name, "data_offsets [%d, %d] are negative", b, e)
	case e < b:
		return formatErr(name, "data_offsets [%d, %d] end before they begin", b, e)
	case e > dataSize:
		return formatErr(name, "data_offsets [%d, %d] extend past the end of the %d-byte data buffer", b, e, dataSize)
	case e-b != nbytes:
		return formatErr(name, "shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d", ti.Shape, ti.DType, nbytes, b, e, e-b)
	}
	return nil
}

// byteSize is the number of bytes a tensor of this dtype and shape occupies.
// Every multiplication is checked: a shape whose element count overflows is
// refused even if a later dimension is zero, as in the reference reader,
// because such a shape can only come from a corrupt or hostile file.
func byteSize(dt DType, shape []int64) (int64, error) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, errors.New("negative dimension")
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<63-1 {
			return 0, errors.New("element count overflows int64")
		}
		n = lo
	}
	hi, lo := bits.Mul64(n, uint64(dt.Size()))
	if hi != 0 || lo > 1<<63-1 {
		return 0, errors.New("byte size overflows int64")
	}
	return int64(lo), nil
}

// checkLayout enforces the reference rule that the tensors tile the data
// buffer exactly: sorted by offset they must start at 0, follow each other
// without gap or overlap, and end at the end of the file. Anything else means
// bytes that belong to two tensors or to none, which is how a file smuggles
// different content to different readers.
func checkLayout(tensors map[string]TensorInfo, dataSize int64) error {
	type span struct {
		name string
		b, e int64
	}
	spans := make([]span, 0, len(tensors))
	for name, ti := range tensors {
		spans = append(spans, span{name, ti.Offsets[0], ti.Offsets[1]})
	}
	sort.Slice(spans, func(i, j int) bool {
		a, b := spans[i], spans[j]
		if a.b != b.b {
			return a.b < b.b
		}
		if a.e != b.e {
			return a.e < b.e
		}
		return a.name < b.name
	})
	var next int64
	var prev span
	for i, s := range spans {
		switch {
		case s.b < next:
			return formatErr(s.name, "data_offsets [%d, %d] overlap tensor %q at [%d, %d]", s.b, s.e, prev.name, prev.b, prev.e)
		case s.b > next:
			if i == 0 {
				return formatErr(s.name, "data_offsets [%d, %d] leave a gap: bytes [0, %d) of the data buffer belong to no tensor", s.b, s.e, s.b)
			}
			return formatErr(s.name, "data_offsets [%d, %d] leave a gap: bytes [%d, %d) after tensor %q belong to no tensor", s.b, s.e, next, s.b, prev.name)
		}
		next = s.e
		prev = s
	}
	if next != dataSize {
		return formatErr("", "tensors cover %d bytes but the data buffer holds %d: trailing bytes belong to no tensor", next, dataSize)
	}
	return nil
}

// describe names a JSON token for error messages.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return strconv.Quote(string(t))
	case string:
		return "string " + truncQuote(t)
	case json.Number:
		return "number " + truncate(string(t))
	case bool:
		return "boolean " + strconv.FormatBool(t)
	}
	return fmt.Sprintf("%T", tok)
}

// truncate keeps attacker-controlled text in error messages short.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func truncQuote(s string) string { return strconv.Quote(truncate(s)) }

// loneSurrogate reports the offset of the first \u escape in raw that is an
// unpaired UTF-16 surrogate. Backslashes can only appear inside JSON strings
// (anywhere else the decoder refuses them), so a flat scan that consumes each
// escape whole is enough to tell "\\ud800" (an escaped backslash) apart.
func loneSurrogate(raw []byte) (int, bool) {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return 0, false
		}
		var v rune
		for _, c := range raw[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				v = v<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				v = v<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				v = v<<4 | rune(c-'A'+10)
			default:
				return 0, false // malformed; the decoder reports it
			}
		}
		return v, true
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		switch {
		case !ok:
			i++ // a two-character escape such as \" or \\; skip its second byte
		case 0xd800 <= r && r < 0xdc00: // high surrogate: a low one must follow
			if lo, ok := hex4(i + 6); !ok || lo < 0xdc00 || lo >= 0xe000 {
				return i, true
			}
			i += 11
		case 0xdc00 <= r && r < 0xe000:
			return i, true
		default:
			i += 5
		}
	}
	return 0, false
}
