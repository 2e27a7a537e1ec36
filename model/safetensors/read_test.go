package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
)

// craft builds a file from a header string and a data buffer, with a correct
// header length.
func craft(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

// withLen builds a file whose header length field says n whatever follows.
func withLen(n uint64, rest string) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
}

const f32x1 = `{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`

type maliciousCase struct {
	name   string
	file   []byte
	opts   *Options
	tensor string // expected FormatError.Tensor
	want   string // expected substring of the message
}

func maliciousCases() []maliciousCase {
	z := func(n int) []byte { return make([]byte, n) }
	deep := `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`
	return []maliciousCase{
		{name: "empty file", file: nil, want: "too small"},
		{name: "truncated length", file: []byte{1, 0, 0}, want: "too small"},
		{name: "header length beyond file", file: withLen(100, "{}"), want: "header length 100 exceeds the 2 bytes that follow"},
		{name: "header length huge", file: withLen(1<<64-1, "{}"), want: "exceeds the 100000000-byte limit"},
		{name: "header length just over limit", file: withLen(DefaultMaxHeaderSize+1, "{}"), want: "exceeds the 100000000-byte limit"},
		{name: "header over custom limit", file: craft(`{"a":`+f32x1+`}`, z(4)), opts: &Options{MaxHeaderSize: 16}, want: "Options.MaxHeaderSize"},
		{name: "zero-length header", file: withLen(0, ""), want: "invalid JSON header"},
		{name: "invalid JSON", file: craft(`{"a":`, nil), want: "invalid JSON header"},
		{name: "invalid JSON inside", file: craft(`{"a":{"dtype":F32}}`, nil), want: "invalid JSON header"},
		{name: "not an object", file: craft(`[]`, nil), want: "header must be a JSON object"},
		{name: "string header", file: craft(`"x"`, nil), want: "header must be a JSON object"},
		{name: "two objects", file: craft(`{}{}`, nil), want: `unexpected "{" after the header object`},
		{name: "trailing garbage", file: craft(`{} x`, nil), want: "invalid JSON header"},
		{name: "NUL padding", file: craft("{}\x00", nil), want: "invalid JSON header"},
		{name: "invalid UTF-8", file: craft("{\"a\xff\":"+f32x1+"}", z(4)), want: "not valid UTF-8"},
		{name: "lone high surrogate", file: craft(`{"a\ud800":`+f32x1+`}`, z(4)), want: "unpaired UTF-16 surrogate"},
		{name: "lone low surrogate", file: craft(`{"a\udc00x":`+f32x1+`}`, z(4)), want: "unpaired UTF-16 surrogate"},
		{name: "reversed surrogates", file: craft(`{"a\ude00\ud83d":`+f32x1+`}`, z(4)), want: "unpaired UTF-16 surrogate"},
		{name: "nesting bomb", file: craft(deep, z(4)), want: "invalid JSON header"},
		{name: "tensor not an object", file: craft(`{"a":5}`, nil), tensor: "a", want: "value must be a JSON object, found number 5"},
		{name: "missing dtype", file: craft(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "missing dtype"},
		{name: "missing shape", file: craft(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "missing shape"},
		{name: "missing offsets", file: craft(`{"a":{"dtype":"F32","shape":[1]}}`, z(4)), tensor: "a", want: "missing data_offsets"},
		{name: "null shape", file: craft(`{"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "shape must be an array of integers, found null"},
		{name: "dtype not a string", file: craft(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "dtype must be a string"},
		{name: "unknown dtype", file: craft(`{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: `unknown dtype "F12"`},
		{name: "fp8 dtype", file: craft(`{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "unsupported dtype F8_E4M3"},
		{name: "duplicate tensor", file: craft(`{"a":`+f32x1+`,"a":`+f32x1+`}`, z(4)), tensor: "a", want: "duplicate tensor name"},
		{name: "duplicate tensor via escape", file: craft(`{"a":`+f32x1+`,"\u0061":`+f32x1+`}`, z(4)), tensor: "a", want: "duplicate tensor name"},
		{name: "duplicate metadata key", file: craft(`{"__metadata__":{},"__metadata__":{},"a":`+f32x1+`}`, z(4)), want: `duplicate key "__metadata__"`},
		{name: "duplicate key inside metadata", file: craft(`{"__metadata__":{"k":"1","k":"2"}}`, nil), want: `duplicate key "k" in __metadata__`},
		{name: "duplicate field in tensor", file: craft(`{"a":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: `duplicate key "dtype"`},
		{name: "metadata value not a string", file: craft(`{"__metadata__":{"k":1}}`, nil), want: `__metadata__["k"] must be a string`},
		{name: "metadata not an object", file: craft(`{"__metadata__":[]}`, nil), want: "must be an object or null"},
		{name: "negative dimension", file: craft(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "dimension 0 is negative"},
		{name: "fractional dimension", file: craft(`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "shape entry 1.0 is not an integer"},
		{name: "exponent dimension", file: craft(`{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "is not an integer"},
		{name: "dimension beyond int64", file: craft(`{"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "does not fit in int64"},
		{name: "shape product overflows int64", file: craft(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "element count overflows int64"},
		{name: "overflow hidden by a zero", file: craft(`{"a":{"dtype":"F32","shape":[4611686018427387904,4,0],"data_offsets":[0,0]}}`, nil), tensor: "a", want: "element count overflows int64"},
		{name: "byte size overflows int64", file: craft(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "byte size overflows int64"},
		{name: "giant shape inside int64", file: craft(`{"a":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}`, z(4)), tensor: "a", want: "extend past the end of the 4-byte data buffer"},
		{name: "rank over limit", file: craft(`{"a":{"dtype":"F32","shape":[`+strings.TrimSuffix(strings.Repeat("1,", 33), ",")+`],"data_offsets":[0,4]}}`, z(4)), tensor: "a", want: "more than 32 dimensions"},
		{name: "rank over custom limit", file: craft(`{"a":{"dtype":"F32","shape":[1,1,1],"data_offsets":[0,4]}}`, z(4)), opts: &Options{MaxRank: 2}, tensor: "a", want: "more than 2 dimensions"},
		{name: "too many tensors", file: craft(`{"a":`+f32x1+`,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, z(12)), opts: &Options{MaxTensors: 2}, want: "more than 2 tensors"},
		{name: "dtype size mismatch", file: craft(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, z(8)), tensor: "a", want: "shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8"},
		{name: "offsets wrong arity", file: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, z(4)), tensor: "a", want: "data_offsets must hold 2 integers, found 1"},
		{name: "offsets too many", file: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, z(4)), tensor: "a", want: "data_offsets has more than 2 entries"},
		{name: "negative offsets", file: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, z(4)), tensor: "a", want: "data_offsets [-4, 0] are negative"},
		{name: "reversed offsets", file: craft(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, z(4)), tensor: "a", want: "end before they begin"},
		{name: "out of range offsets", file: craft(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, z(4)), tensor: "a", want: "data_offsets [0, 8] extend past the end of the 4-byte data buffer"},
		{name: "offset beyond int64 range", file: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}`, z(4)), tensor: "a", want: "does not fit in int64"},
		{name: "overlapping offsets", file: craft(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, z(12)), tensor: "b", want: `data_offsets [4, 12] overlap tensor "a" at [0, 8]`},
		{name: "identical offsets", file: craft(`{"a":`+f32x1+`,"b":`+f32x1+`}`, z(4)), tensor: "b", want: `overlap tensor "a"`},
		{name: "empty tensor inside another", file: craft(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, z(8)), tensor: "e", want: `overlap tensor "a"`},
		{name: "gap between tensors", file: craft(`{"a":`+f32x1+`,"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, z(12)), tensor: "b", want: `gap: bytes [4, 8) after tensor "a" belong to no tensor`},
		{name: "gap at start", file: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, z(8)), tensor: "a", want: "gap: bytes [0, 4) of the data buffer"},
		{name: "trailing bytes", file: craft(`{"a":`+f32x1+`}`, z(8)), want: "tensors cover 4 bytes but the data buffer holds 8"},
		{name: "data without tensors", file: craft(`{}`, z(1)), want: "tensors cover 0 bytes but the data buffer holds 1"},
	}
}

func TestMaliciousFilesRefused(t *testing.T) {
	for _, c := range maliciousCases() {
		t.Run(c.name, func(t *testing.T) {
			f, err := ReadFrom(bytes.NewReader(c.file), int64(len(c.file)), c.opts)
			if err == nil {
				f.Close()
				t.Fatalf("accepted; want error containing %q", c.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if fe.Tensor != c.tensor {
				t.Errorf("FormatError.Tensor = %q, want %q (error %q)", fe.Tensor, c.tensor, err)
			}
		})
	}
}

// Refusing a file must not cost memory in proportion to the sizes it claims.
func TestMaliciousFilesAllocateLittle(t *testing.T) {
	var before, after runtime.MemStats
	for _, c := range maliciousCases() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		ReadFrom(bytes.NewReader(c.file), int64(len(c.file)), c.opts)
		runtime.ReadMemStats(&after)
		// The JSON decoder needs a few times the header; anything near the
		// claimed sizes (up to 2^64) would be far beyond this.
		limit := uint64(64*len(c.file) + 256<<10)
		if got := after.TotalAlloc - before.TotalAlloc; got > limit {
			t.Errorf("%s: refusing a %d-byte file allocated %d bytes (limit %d)", c.name, len(c.file), got, limit)
		}
	}
}

// A header length that is honest about the file but whose source is shorter
// than claimed (a truncated download) fails cleanly.
func TestShortReader(t *testing.T) {
	file := craft(`{"a":`+f32x1+`}`, make([]byte, 4))
	for _, cut := range []int{0, 4, 8, 20, len(file) - 1} {
		f, err := ReadFrom(bytes.NewReader(file[:cut]), int64(len(file)), nil)
		if err == nil {
			_, err = f.Raw("a")
		}
		if err == nil {
			t.Errorf("source cut at %d: no error", cut)
		}
	}
}

// Things the reference accepts that are easy to get wrong.
func TestAcceptedEdgeCases(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		n    int
	}{
		{"empty header", craft(`{}`, nil), 0},
		{"whitespace around header", craft(" \n{} \t\r\n   ", nil), 0},
		{"null metadata", craft(`{"__metadata__":null,"a":`+f32x1+`}`, make([]byte, 4)), 1},
		{"unknown field ignored", craft(`{"a":{"x":{"y":[1,2]},"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), 1},
		{"surrogate pair and escaped backslash", craft(`{"a\ud83d\ude00":`+f32x1+`,"b\\ud800":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}}`, make([]byte, 4)), 2},
		{"empty name", craft(`{"":`+f32x1+`}`, make([]byte, 4)), 1},
		{"scalar", craft(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)), 1},
		{"zero-size tensors share an offset", craft(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"I64","shape":[0,3],"data_offsets":[4,4]},"c":`+f32x1+`}`, make([]byte, 4)), 3},
		{"offsets in any order", craft(`{"z":`+f32x1+`,"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}`, make([]byte, 6)), 2},
		{"max rank", craft(`{"a":{"dtype":"F32","shape":[`+strings.TrimSuffix(strings.Repeat("1,", 32), ",")+`],"data_offsets":[0,4]}}`, make([]byte, 4)), 1},
	}
	for _, c := range cases {
		f, err := ReadFrom(bytes.NewReader(c.file), int64(len(c.file)), nil)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := len(f.Names()); got != c.n {
			t.Errorf("%s: %d tensors, want %d", c.name, got, c.n)
		}
		if f.Metadata() != nil {
			t.Errorf("%s: Metadata() = %v, want nil", c.name, f.Metadata())
		}
	}
}

// Attacker-controlled names are shortened in messages.
func TestLongNamesTruncatedInErrors(t *testing.T) {
	long := strings.Repeat("é", 10000)
	file := craft(`{"`+long+`":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4))
	_, err := ReadFrom(bytes.NewReader(file), int64(len(file)), nil)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Tensor != long {
		t.Fatalf("err = %v", err)
	}
	if len(err.Error()) > 300 {
		t.Errorf("error message is %d bytes long", len(err.Error()))
	}
}

// allocatedBy reports the bytes fn allocated on the Go heap.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// ReadFrom trusts the size it is given. When the source is in fact shorter,
// every read must fail without first allocating what the header claims.
func TestLyingSizeAllocatesLittle(t *testing.T) {
	const claimed = 1 << 30 // a 1 GiB tensor the source does not hold
	header := `{"big":{"dtype":"F32","shape":[268435456],"data_offsets":[0,1073741824]}}`
	file := craft(header, make([]byte, 64))
	size := int64(8+len(header)) + claimed
	f, err := ReadFrom(bytes.NewReader(file), size, nil)
	if err != nil {
		t.Fatalf("header is consistent with the claimed size, so it must be accepted: %v", err)
	}
	defer f.Close()
	for _, c := range []struct {
		name string
		read func() error
	}{
		{"Raw", func() error { _, err := f.Raw("big"); return err }},
		{"Float32", func() error { _, err := f.Float32("big"); return err }},
		{"Tensor", func() error { _, err := f.Tensor("big"); return err }},
	} {
		var rerr error
		got := allocatedBy(func() { rerr = c.read() })
		if rerr == nil || !strings.Contains(rerr.Error(), "unexpected EOF") {
			t.Errorf("%s on a short source: err = %v, want unexpected EOF", c.name, rerr)
		}
		if got > 1<<20 {
			t.Errorf("%s allocated %d bytes before failing (claimed tensor: %d bytes)", c.name, got, claimed)
		}
	}

	// The same holds for the header: a 90 MB header length (under the limit)
	// over a 100-byte source fails after reading what is there.
	hdr := withLen(90_000_000, strings.Repeat(" ", 92))
	var herr error
	got := allocatedBy(func() { _, herr = ReadFrom(bytes.NewReader(hdr), 8+90_000_000, nil) })
	if herr == nil {
		t.Fatal("a header longer than the source was accepted")
	}
	if got > 4<<20 {
		t.Errorf("refusing a short header allocated %d bytes", got)
	}
}

// Open refuses what is not a regular file before reading it: the size of a
// device or pipe says nothing about its content.
func TestOpenRefusesDevices(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	f, err := Open("/dev/zero", nil)
	if err == nil {
		f.Close()
		t.Fatal("opened /dev/zero")
	}
	if !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v", err)
	}
}
