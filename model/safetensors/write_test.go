package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// le encodes fixed-size values little-endian, for building test tensors.
func le(vals ...any) []byte {
	var b bytes.Buffer
	for _, v := range vals {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			panic(err) // test helper: only fixed-size values are passed
		}
	}
	return b.Bytes()
}

// goldenTensors covers every dtype numpy can represent, a scalar, an empty
// tensor and awkward names and metadata. scripts/safetensors_check.py builds
// the same tensors independently and checks that Python's safetensors loads
// testdata/golden.safetensors to these values and saves them to the very
// same bytes.
func goldenTensors(t *testing.T) ([]Tensor, map[string]string) {
	f32, err := FromFloat32("layer.f32", F32, []int64{2, 3}, []float32{-0.5, -0.25, 0, 0.25, 0.5, 0.75})
	if err != nil {
		t.Fatal(err)
	}
	ts := []Tensor{
		f32,
		{Name: "layer.f64", DType: F64, Shape: []int64{3}, Data: le(1.0/3, -2.5, 1e300)},
		{Name: "layer.f16", DType: F16, Shape: []int64{2, 4}, Data: le([]uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x8000})},
		{Name: "mask.bool", DType: Bool, Shape: []int64{3}, Data: []byte{1, 0, 1}},
		{Name: "q.u8", DType: U8, Shape: []int64{3}, Data: []byte{0, 1, 255}},
		{Name: "q.i8", DType: I8, Shape: []int64{4}, Data: le([]int8{-128, -1, 0, 127})},
		{Name: "q.i16", DType: I16, Shape: []int64{2}, Data: le([]int16{-32768, 32767})},
		{Name: "q.u16", DType: U16, Shape: []int64{2}, Data: le([]uint16{65535, 1})},
		{Name: "q.i32", DType: I32, Shape: []int64{2}, Data: le([]int32{math.MinInt32, 7})},
		{Name: "q.u32", DType: U32, Shape: []int64{1}, Data: le(uint32(math.MaxUint32))},
		{Name: "q.i64", DType: I64, Shape: []int64{2, 1}, Data: le([]int64{math.MinInt64, math.MaxInt64})},
		{Name: "q.u64", DType: U64, Shape: []int64{2}, Data: le([]uint64{math.MaxUint64, 0})},
		{Name: "scalar", DType: F32, Shape: nil, Data: le(float32(42.5))},
		{Name: "empty", DType: F32, Shape: []int64{0, 4}, Data: nil},
		{Name: "ünïcode \"quoted\"\t<&>", DType: F32, Shape: []int64{1}, Data: le(float32(1))},
	}
	// One key only: Python's writer keeps metadata in a Rust HashMap, whose
	// order is random per process, so byte identity with Python can only be
	// checked for a single key.
	md := map[string]string{"note": "beamtune <&> \"q\"\n\x01 é"}
	return ts, md
}

// bf16Tensors cannot be built by numpy; the Python check decodes this file by
// hand and cross-checks it with safetensors.serialize.
func bf16Tensors(t *testing.T) ([]Tensor, map[string]string) {
	rounded, err := FromFloat32("rounded", BF16, []int64{2}, []float32{1 + 0x1p-8, 1 + 3*0x1p-8})
	if err != nil {
		t.Fatal(err)
	}
	return []Tensor{
		{Name: "bf16", DType: BF16, Shape: []int64{4}, Data: le([]uint16{0x3f80, 0x4049, 0xff80, 0x0001})},
		rounded,
		{Name: "f32", DType: F32, Shape: []int64{1}, Data: le(float32(2))},
	}, nil
}

func TestGoldenFiles(t *testing.T) {
	for _, g := range []struct {
		file  string
		build func(*testing.T) ([]Tensor, map[string]string)
	}{
		{"golden.safetensors", goldenTensors},
		{"golden_bf16.safetensors", bf16Tensors},
	} {
		ts, md := g.build(t)
		var buf bytes.Buffer
		if err := Write(&buf, ts, md); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", g.file)
		if *update {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("Write output differs from %s, which Python's safetensors produced identically", path)
		}
	}
}

// The exact bytes of the reference implementation's own serialization tests
// (safetensors/src/tensor.rs: test_empty, test_serialization).
func TestWriteMatchesReferenceBytes(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, nil, nil); err != nil {
		t.Fatal(err)
	}
	if want := []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '}; !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("empty file = %q, want %q", buf.Bytes(), want)
	}

	buf.Reset()
	if err := Write(&buf, nil, map[string]string{"framework": "pt"}); err != nil {
		t.Fatal(err)
	}
	if want := "(\x00\x00\x00\x00\x00\x00\x00" + `{"__metadata__":{"framework":"pt"}}` + "     "; buf.String() != want {
		t.Errorf("metadata-only file = %q, want %q", buf.String(), want)
	}

	buf.Reset()
	tn, _ := FromFloat32("attn.0", F32, []int64{1, 2, 3}, []float32{0, 1, 2, 3, 4, 5})
	if err := Write(&buf, []Tensor{tn}, nil); err != nil {
		t.Fatal(err)
	}
	hdr := `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`
	want := append(append([]byte{64, 0, 0, 0, 0, 0, 0, 0}, hdr...), 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("single tensor file = %q, want %q", buf.Bytes(), want)
	}
}

func TestRoundTrip(t *testing.T) {
	ts, md := goldenTensors(t)
	more, _ := bf16Tensors(t)
	ts = append(ts, more...)
	var buf bytes.Buffer
	if err := Write(&buf, ts, md); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	n := binary.LittleEndian.Uint64(buf.Bytes())
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	if !reflect.DeepEqual(f.Metadata(), md) {
		t.Errorf("Metadata() = %q, want %q", f.Metadata(), md)
	}
	var names []string
	for _, tn := range ts {
		names = append(names, tn.Name)
		info, ok := f.Info(tn.Name)
		if !ok {
			t.Fatalf("Info(%q) missing", tn.Name)
		}
		if info.DType != tn.DType || !reflect.DeepEqual(append([]int64{}, info.Shape...), append([]int64{}, tn.Shape...)) {
			t.Errorf("Info(%q) = %v %v, want %v %v", tn.Name, info.DType, info.Shape, tn.DType, tn.Shape)
		}
		// The reference layout aligns every tensor to its element size
		// within the file, which lets readers map data without copying.
		if abs := 8 + int64(n) + info.Offsets[0]; abs%int64(tn.DType.Size()) != 0 {
			t.Errorf("%q starts at file offset %d, not aligned to %d", tn.Name, abs, tn.DType.Size())
		}
		raw, err := f.Raw(tn.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, tn.Data) {
			t.Errorf("Raw(%q) = %v, want %v", tn.Name, raw, tn.Data)
		}
		got, err := f.Tensor(tn.Name)
		if err != nil || got.Name != tn.Name || !bytes.Equal(got.Data, tn.Data) {
			t.Errorf("Tensor(%q) = %+v, %v", tn.Name, got, err)
		}
	}
	sortStrings(names)
	if !reflect.DeepEqual(f.Names(), names) {
		t.Errorf("Names() = %q, want %q", f.Names(), names)
	}

	checkFloats := func(name string, want []float32) {
		t.Helper()
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Float32(%q) has %d values, want %d", name, len(got), len(want))
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("Float32(%q)[%d] = %g, want %g", name, i, got[i], want[i])
			}
		}
	}
	inf := float32(math.Inf(1))
	checkFloats("layer.f32", []float32{-0.5, -0.25, 0, 0.25, 0.5, 0.75})
	checkFloats("layer.f64", []float32{float32(1.0 / 3), -2.5, inf})
	checkFloats("layer.f16", []float32{1, -2, 65504, 0x1p-24, 1023 * 0x1p-24, inf, -inf, float32(math.Copysign(0, -1))})
	checkFloats("bf16", []float32{1, 3.140625, -inf, 0x1p-133})
	checkFloats("rounded", []float32{1, 1 + 0x1p-6}) // ties to even
	checkFloats("scalar", []float32{42.5})
	checkFloats("empty", []float32{})

	if _, err := f.Float32("q.i32"); err == nil || !strings.Contains(err.Error(), "I32") {
		t.Errorf("Float32 on I32 = %v, want an error naming the dtype", err)
	}
	if _, err := f.Raw("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Raw(missing) = %v, want ErrNotFound", err)
	}
	if _, ok := f.Info("nope"); ok {
		t.Error("Info(missing) reported ok")
	}
	// Callers cannot reach into the File's state through returned values.
	info, _ := f.Info("layer.f32")
	info.Shape[0] = 99
	f.Names()[0] = "changed"
	f.Metadata()["note"] = "changed"
	if info2, _ := f.Info("layer.f32"); info2.Shape[0] != 2 || f.Names()[0] == "changed" || f.Metadata()["note"] != md["note"] {
		t.Error("File state changed through a returned value")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Raw("layer.f32"); !errors.Is(err, ErrClosed) {
		t.Errorf("Raw after Close = %v, want ErrClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// A large tensor crosses the 1 MiB conversion chunk in Float32.
func TestFloat32LargeTensor(t *testing.T) {
	const n = 1<<19 + 3 // > 1 MiB of F16 and 2 MiB of F32
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i%256) - 128 // exact in every float dtype
	}
	for _, dt := range []DType{F32, F16, BF16, F64} {
		tn, err := FromFloat32("x", dt, []int64{n}, vals)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, []Tensor{tn}, nil); err != nil {
			t.Fatal(err)
		}
		f, err := ReadFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Float32("x")
		if err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Fatalf("%s: value %d = %g, want %g", dt, i, got[i], vals[i])
			}
		}
	}
}

func TestWriteRejects(t *testing.T) {
	ok := Tensor{Name: "a", DType: F32, Shape: []int64{1}, Data: make([]byte, 4)}
	cases := []struct {
		name    string
		tensors []Tensor
		md      map[string]string
		want    string
	}{
		{"duplicate", []Tensor{ok, ok}, nil, "duplicate tensor name"},
		{"reserved name", []Tensor{{Name: "__metadata__", DType: F32, Shape: []int64{0}}}, nil, "reserved"},
		{"size mismatch", []Tensor{{Name: "a", DType: F32, Shape: []int64{2}, Data: make([]byte, 4)}}, nil, "needs 8 bytes, data has 4"},
		{"negative dim", []Tensor{{Name: "a", DType: F32, Shape: []int64{-1}}}, nil, "negative"},
		{"overflow", []Tensor{{Name: "a", DType: F32, Shape: []int64{1 << 62, 4}}}, nil, "overflows"},
		{"unknown dtype", []Tensor{{Name: "a", DType: "F8_E4M3", Shape: []int64{0}}}, nil, "unsupported dtype"},
		{"bad utf8 name", []Tensor{{Name: "a\xff", DType: F32, Shape: []int64{0}}}, nil, "UTF-8"},
		{"bad utf8 metadata", []Tensor{ok}, map[string]string{"k": "\xff"}, "UTF-8"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		err := Write(&buf, c.tensors, c.md)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Write = %v, want error containing %q", c.name, err, c.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: Write wrote %d bytes before failing", c.name, buf.Len())
		}
	}
	if _, err := FromFloat32("a", F32, []int64{2}, []float32{1}); err == nil {
		t.Error("FromFloat32 with too few values succeeded")
	}
	if _, err := FromFloat32("a", I32, []int64{1}, []float32{1}); err == nil {
		t.Error("FromFloat32 to I32 succeeded")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	a, _ := FromFloat32("w", F32, []int64{2}, []float32{1, 2})
	if err := WriteFile(path, []Tensor{a}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	b, _ := FromFloat32("w", F32, []int64{3}, []float32{4, 5, 6})
	if err := WriteFile(path, []Tensor{b}, nil); err != nil { // replaces
		t.Fatal(err)
	}
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("w")
	f.Close()
	if err != nil || !reflect.DeepEqual(got, []float32{4, 5, 6}) {
		t.Fatalf("after replace Float32 = %v, %v", got, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, %v; want 0644", st.Mode(), err)
	}
	// Invalid input must leave the existing file alone and no temp file.
	bad := Tensor{Name: "w", DType: F32, Shape: []int64{5}, Data: nil}
	if err := WriteFile(path, []Tensor{bad}, nil); err == nil {
		t.Fatal("WriteFile with bad tensor succeeded")
	}
	// A write into a missing directory fails cleanly.
	if err := WriteFile(filepath.Join(dir, "missing", "x.safetensors"), []Tensor{a}, nil); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "model.safetensors" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only model.safetensors", names)
	}
	f, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := f.Info("w"); info.Shape[0] != 3 {
		t.Errorf("failed WriteFile changed the file: shape %v", info.Shape)
	}
	f.Close()
}

// The header must be plain compact JSON that any JSON parser reads, even
// with names that need escaping.
func TestHeaderIsStandardJSON(t *testing.T) {
	ts, md := goldenTensors(t)
	var buf bytes.Buffer
	if err := Write(&buf, ts, md); err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(buf.Bytes())
	var h map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes()[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	if len(h) != len(ts)+1 {
		t.Errorf("header has %d keys, want %d", len(h), len(ts)+1)
	}
	var gotMD map[string]string
	if err := json.Unmarshal(h["__metadata__"], &gotMD); err != nil || !reflect.DeepEqual(gotMD, md) {
		t.Errorf("metadata = %q, %v", gotMD, err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "absent"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(absent) = %v", err)
	}
	if _, err := Open(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(dir) = %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(path, []byte("\x02\x00\x00\x00\x00\x00\x00\x00[]"), 0o644)
	_, err := Open(path, nil)
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(bad) = %v, want a FormatError mentioning the path", err)
	}
}

// File is documented as safe for concurrent use; run with -race.
func TestConcurrentReads(t *testing.T) {
	ts, md := goldenTensors(t)
	var buf bytes.Buffer
	if err := Write(&buf, ts, md); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for range 8 {
		go func() {
			for _, tn := range ts {
				raw, err := f.Raw(tn.Name)
				if err == nil && !bytes.Equal(raw, tn.Data) {
					err = errors.New("data mismatch for " + tn.Name)
				}
				if err == nil && tn.DType.IsFloat() {
					_, err = f.Float32(tn.Name)
				}
				if err != nil {
					done <- err
					return
				}
				f.Info(tn.Name)
				f.Metadata()
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
