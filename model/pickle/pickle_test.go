package pickle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model/safetensors"
)

// pk writes pickles opcode by opcode, the way CPython's protocol 2 pickler
// does, so tests can say exactly which bytes a crafted checkpoint holds.
type pk struct{ b []byte }

func newPk() *pk { return &pk{b: []byte{opProto, 2}} }

func (p *pk) op(ops ...byte) *pk { p.b = append(p.b, ops...); return p }

func (p *pk) str(s string) *pk {
	p.b = append(p.b, opBinUnicode)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

func (p *pk) int(n int64) *pk {
	switch {
	case n >= 0 && n < 256:
		return p.op(opBinInt1, byte(n))
	case n >= 0 && n < 65536:
		return p.op(opBinInt2, byte(n), byte(n>>8))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		p.b = append(p.b, opBinInt)
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(n)))
		return p
	}
	p.b = append(p.b, opLong1, 8)
	p.b = binary.LittleEndian.AppendUint64(p.b, uint64(n))
	return p
}

func (p *pk) global(module, name string) *pk {
	p.b = append(p.b, opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

func (p *pk) ints(v []int64) *pk {
	p.op(opMark)
	for _, x := range v {
		p.int(x)
	}
	return p.op(opTuple)
}

func (p *pk) emptyOrderedDict() *pk {
	return p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
}

func (p *pk) stop() []byte { return append(p.b, opStop) }

// tensorSpec is one entry of a crafted state dict.
type tensorSpec struct {
	name, typ, key string // typ: "FloatStorage", ...
	numel, offset  int64
	size, stride   []int64
	param          bool // wrap in _rebuild_parameter(..., requires_grad=True)
}

// torchPickle writes a state dict the way torch.save does: an OrderedDict of
// _rebuild_tensor_v2 calls on persistent storages, then BUILD with the
// _metadata attribute.
func torchPickle(specs []tensorSpec, legacy bool) []byte {
	p := newPk().emptyOrderedDict().op(opMark)
	for _, s := range specs {
		p.str(s.name)
		if s.param {
			p.global("torch._utils", "_rebuild_parameter")
		}
		p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
		p.op(opMark).str("storage").global("torch", s.typ).str(s.key).str("cpu").int(s.numel)
		if legacy {
			p.op(opNone)
		}
		p.op(opTuple, opBinPersID).int(s.offset).ints(s.size).ints(s.stride).op(opNewFalse).emptyOrderedDict().op(opTuple, opReduce)
		if s.param {
			p.op(opNewTrue).emptyOrderedDict().op(opTuple3, opReduce)
		}
	}
	p.op(opSetItems)
	p.op(opEmptyDict).str("_metadata").emptyOrderedDict().op(opMark).str("").op(opEmptyDict).str("version").int(1).op(opSetItem, opSetItems).op(opSetItem, opBuild)
	return p.stop()
}

type member struct {
	name   string
	data   []byte
	method uint16
}

func zipOf(t testing.TB, members ...member) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: m.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// torchZip is a torch.save zip: archive/data.pkl, byteorder, and one member
// per storage.
func torchZip(t testing.TB, pickle []byte, storages map[string][]byte) []byte {
	ms := []member{{name: "archive/data.pkl", data: pickle}, {name: "archive/byteorder", data: []byte("little")}}
	keys := make([]string, 0, len(storages))
	for k := range storages {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ms = append(ms, member{name: "archive/data/" + k, data: storages[k]})
	}
	return zipOf(t, append(ms, member{name: "archive/version", data: []byte("3\n")})...)
}

// torchLegacy is the pre-1.6 format: magic, protocol, system info, the state
// dict, the storage keys, then each storage's element count and bytes.
func torchLegacy(pickle []byte, keys []string, numel []int64, data [][]byte) []byte {
	var out []byte
	magic := []byte{0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19} // 0x1950a86a20f9469cfc6c, little-endian
	out = append(out, newPk().op(opLong1, byte(len(magic))).op(magic...).stop()...)
	out = append(out, newPk().int(1001).stop()...)
	out = append(out, newPk().op(opEmptyDict, opMark).str("protocol_version").int(1001).str("little_endian").op(opNewTrue).op(opSetItems).stop()...)
	out = append(out, pickle...)
	kp := newPk().op(opEmptyList, opMark)
	for _, k := range keys {
		kp.str(k)
	}
	out = append(out, kp.op(opAppends).stop()...)
	for i := range keys {
		out = binary.LittleEndian.AppendUint64(out, uint64(numel[i]))
		out = append(out, data[i]...)
	}
	return out
}

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func arange(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(i)
	}
	return out
}

// goodSpecs covers what real state dicts hold: plain, transposed and offset
// views, two names on one storage (tied weights), half precision types, a
// parameter, a scalar, an empty tensor and an integer buffer.
func goodSpecs() ([]tensorSpec, map[string][]byte) {
	var f16, bf16, f64 []byte
	for _, x := range arange(12) {
		f16 = binary.LittleEndian.AppendUint16(f16, safetensors.Float32ToF16(x))
		bf16 = binary.LittleEndian.AppendUint16(bf16, safetensors.Float32ToBF16(x))
		f64 = binary.LittleEndian.AppendUint64(f64, math.Float64bits(float64(x)))
	}
	specs := []tensorSpec{
		{name: "w", typ: "FloatStorage", key: "0", numel: 12, size: []int64{3, 4}, stride: []int64{4, 1}},
		{name: "w_t", typ: "FloatStorage", key: "0", numel: 12, size: []int64{4, 3}, stride: []int64{1, 4}},
		{name: "rows12", typ: "FloatStorage", key: "0", numel: 12, offset: 4, size: []int64{2, 4}, stride: []int64{4, 1}},
		{name: "col2", typ: "FloatStorage", key: "0", numel: 12, offset: 2, size: []int64{3}, stride: []int64{4}},
		{name: "half", typ: "HalfStorage", key: "1", numel: 12, size: []int64{3, 4}, stride: []int64{4, 1}},
		{name: "bf16", typ: "BFloat16Storage", key: "2", numel: 12, size: []int64{3, 4}, stride: []int64{4, 1}},
		{name: "f64", typ: "DoubleStorage", key: "3", numel: 12, size: []int64{12}, stride: []int64{1}},
		{name: "param", typ: "FloatStorage", key: "0", numel: 12, size: []int64{2}, stride: []int64{1}, param: true},
		{name: "scalar", typ: "FloatStorage", key: "0", numel: 12, offset: 7, size: []int64{}, stride: []int64{}},
		{name: "empty", typ: "FloatStorage", key: "0", numel: 12, offset: 12, size: []int64{0, 4}, stride: []int64{4, 1}},
		{name: "ids", typ: "LongStorage", key: "4", numel: 3, size: []int64{3}, stride: []int64{1}},
	}
	ids := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0), 1), 2)
	return specs, map[string][]byte{"0": f32bytes(arange(12)...), "1": f16, "2": bf16, "3": f64, "4": ids}
}

// wantGood is what goodSpecs' tensors hold.
var wantGood = map[string][]float32{
	"w":      arange(12),
	"w_t":    {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11},
	"rows12": {4, 5, 6, 7, 8, 9, 10, 11},
	"col2":   {2, 6, 10},
	"half":   arange(12),
	"bf16":   arange(12),
	"f64":    arange(12),
	"param":  {0, 1},
	"scalar": {7},
	"empty":  {},
}

func checkGood(t *testing.T, tf *File) {
	t.Helper()
	want := []string{"bf16", "col2", "empty", "f64", "half", "ids", "param", "rows12", "scalar", "w", "w_t"}
	if !slices.Equal(tf.names, want) {
		t.Fatalf("names %q, want %q", tf.names, want)
	}
	for name, w := range wantGood {
		got, shape, err := tf.Float32s(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
		if !slices.Equal(shape, tf.tensors[name].size) {
			t.Errorf("%s: shape %v, want %v", name, shape, tf.tensors[name].size)
		}
	}
	if _, _, err := tf.Float32s("ids"); err == nil || !strings.Contains(err.Error(), "dtype Long is not a float type") {
		t.Errorf("integer tensor: err = %v", err)
	}
	if !tf.tensors["param"].requiresGrad || tf.tensors["w"].requiresGrad {
		t.Error("requires_grad not carried through _rebuild_parameter")
	}
}

func TestPickleAcceptsTorchLayouts(t *testing.T) {
	specs, storages := goodSpecs()
	file := torchZip(t, torchPickle(specs, false), storages)
	tf, err := Open(bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	checkGood(t, tf)

	keys := []string{"0", "1", "2", "3", "4"}
	numel := []int64{12, 12, 12, 12, 3}
	var data [][]byte
	for _, k := range keys {
		data = append(data, storages[k])
	}
	legacy := torchLegacy(torchPickle(specs, true), keys, numel, data)
	tf, err = Open(bytes.NewReader(legacy), int64(len(legacy)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	checkGood(t, tf)
}

// The committed checkpoint written by torch.save (tiny-bert-bin) opens, and
// references nothing but the allowlist's usual three globals.
func TestPickleTorchSaveFixture(t *testing.T) {
	path := filepath.Join("..", "..", "testdata", "parity", "tiny-bert-bin", "pytorch_model.bin")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tf, err := Open(f, st.Size(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tf.Names()); n != 41 {
		t.Errorf("%d tensors, want 41", n)
	}
	seen := map[string]bool{}
	for _, g := range tf.globals {
		seen[g] = true
	}
	want := map[string]bool{"torch._utils._rebuild_tensor_v2": true, "torch.FloatStorage": true, "collections.OrderedDict": true}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("globals %v, want %v", seen, want)
	}
}

// Files written by torch 2.1.0's torch.save, kept as fuzz seeds: the zip and
// legacy formats of a dict holding every storage type, views, a parameter,
// a scalar and an empty tensor, and a pickle with a __reduce__ payload.
// (gen: x = arange(12.).reshape(3,4); d = {half: x.half(), bf16, f64, ids:
// arange(5), t: x.t(), view: x[1:], tied: x, scalar: tensor(3.5), empty:
// zeros(0,4), bool, i8, u8, i16, i32, param: Parameter(ones(2))}.)
func TestPickleRealTorchFiles(t *testing.T) {
	x := arange(12)
	want := map[string][]float32{
		"half": x, "bf16": x, "f64": x, "tied": x, "t": wantGood["w_t"], "view": x[4:],
		"scalar": {3.5}, "empty": {}, "param": {1, 1},
	}
	for _, name := range []string{"torch_mixed_zip", "torch_mixed_legacy"} {
		data := readSeed(t, name)
		tf, err := Open(bytes.NewReader(data), int64(len(data)), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(tf.names) != 15 {
			t.Errorf("%s: %d tensors, want 15", name, len(tf.names))
		}
		for tn, w := range want {
			got, _, err := tf.Float32s(tn)
			if err != nil || !slices.Equal(got, w) {
				t.Errorf("%s: %s = %v, %v; want %v", name, tn, got, err, w)
			}
		}
		for _, tn := range []string{"ids", "bool", "i8", "u8", "i16", "i32"} {
			if _, _, err := tf.Float32s(tn); err == nil {
				t.Errorf("%s: %s read as float", name, tn)
			}
		}
	}
	data := readSeed(t, "torch_evil_zip")
	_, err := Open(bytes.NewReader(data), int64(len(data)), Limits{})
	var pe *Error
	if !errors.As(err, &pe) || pe.Global != "posix.system" || pe.Member != "evil_zip/data.pkl" {
		t.Errorf("torch.save of a __reduce__ payload: err = %v", err)
	}
}

// readSeed decodes a committed fuzz seed ([]byte("...") in Go's corpus format).
func readSeed(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzPickleScan", name))
	if err != nil {
		t.Fatal(err)
	}
	_, lit, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	lit, ok2 := strings.CutPrefix(lit, "[]byte(")
	lit, ok3 := strings.CutSuffix(lit, ")")
	s, err := strconv.Unquote(lit)
	if !ok || !ok2 || !ok3 || err != nil {
		t.Fatalf("%s: not a []byte corpus entry", name)
	}
	return []byte(s)
}

// osSystemZip is the classic pickle exploit, by hand: a torch-style zip whose
// archive/data.pkl is GLOBAL 'os' 'system', a command, TUPLE1, REDUCE.
func osSystemZip(t testing.TB, command string) []byte {
	pkl := newPk().global("os", "system").str(command).op(opTuple1, opReduce).stop()
	return zipOf(t, member{name: "archive/data.pkl", data: pkl}, member{name: "archive/byteorder", data: []byte("little")})
}

// Every way a pickle can name code: GLOBAL and STACK_GLOBAL, at the top or
// hidden inside a tensor's arguments, the usual payloads and the
// near-misses (a torch function that is not a rebuild function).
func TestPickleRefusesGlobals(t *testing.T) {
	payloads := []string{
		"os.system", "posix.system", "nt.system", "builtins.eval", "builtins.exec", "builtins.getattr",
		"builtins.__import__", "__builtin__.eval", "subprocess.Popen", "subprocess.check_output", "subprocess.run",
		"os.popen", "pty.spawn", "shutil.rmtree", "webbrowser.open", "runpy._run_code", "pickle.loads", "_pickle.loads",
		"codecs.decode", "torch.load", "torch.serialization.load", "torch._utils._rebuild_tensor", "torch.Tensor",
		"torch._tensor._rebuild_from_type_v2", "torch.nn.modules.linear.Linear", "numpy.core.multiarray._reconstruct",
		"collections.defaultdict", "torch.storage._load_from_bytes", "torch.UntypedStorage", "torch.ComplexFloatStorage",
		"torch.QInt8Storage", "collections.OrderedDict ", "torch._utils._rebuild_tensor_v2\x00",
	}
	for _, g := range payloads {
		module, name, _ := strings.Cut(g, ".")
		if i := strings.LastIndex(g, "."); i > 0 {
			module, name = g[:i], g[i+1:]
		}
		variants := map[string][]byte{
			"GLOBAL":       newPk().global(module, name).str("id").op(opTuple1, opReduce).stop(),
			"STACK_GLOBAL": newPk().str(module).str(name).op(opStackGlobal).str("id").op(opTuple1, opReduce).stop(),
			// the payload as a state dict value, after a good tensor
			"in a state dict": newPk().emptyOrderedDict().op(opMark).str("x").global(module, name).op(opEmptyTuple, opReduce).op(opSetItems).stop(),
			// as a tensor's backward hook
			"as a hook": newPk().global("torch._utils", "_rebuild_tensor_v2").op(opMark).op(opMark).str("storage").global("torch", "FloatStorage").
				str("0").str("cpu").int(1).op(opTuple, opBinPersID).int(0).ints([]int64{1}).ints([]int64{1}).op(opNewFalse).
				global(module, name).op(opTuple, opReduce).stop(),
		}
		for how, pkl := range variants {
			file := zipOf(t, member{name: "archive/data.pkl", data: pkl}, member{name: "archive/data/0", data: make([]byte, 4)})
			_, err := Open(bytes.NewReader(file), int64(len(file)), Limits{})
			var pe *Error
			if !errors.As(err, &pe) || pe.Global != g {
				t.Errorf("%q %s: err = %v", g, how, err)
			}
		}
	}
}

// A pickle that names only allowed globals but does something a state dict
// never does, a broken file, or a file whose sizes do not hold together.
func TestPickleRefusesMalformed(t *testing.T) {
	one := []tensorSpec{{name: "w", typ: "FloatStorage", key: "0", numel: 4, size: []int64{2, 2}, stride: []int64{2, 1}}}
	withSpec := func(edit func(*tensorSpec)) []byte {
		s := one[0]
		s.size, s.stride = slices.Clone(s.size), slices.Clone(s.stride)
		edit(&s)
		return torchPickle([]tensorSpec{s}, false)
	}
	good := torchPickle(one, false)
	st4 := map[string][]byte{"0": make([]byte, 16)}
	nested := newPk().op(opEmptyTuple)
	for range 200_000 {
		nested.op(opTuple1) // ((((),),),)...
	}
	deepOffset := newPk().global("torch._utils", "_rebuild_tensor_v2").op(opMark).op(opMark).str("storage").global("torch", "FloatStorage").
		str("0").str("cpu").int(4).op(opTuple, opBinPersID).op(nested.b[2:]...).ints([]int64{4}).ints([]int64{1}).op(opNewFalse).op(opEmptyDict, opTuple, opReduce).stop()
	type tc struct {
		name string
		file []byte // a whole file; nil: pkl inside a zip with st4
		pkl  []byte
		lim  Limits
		want string
	}
	cases := []tc{
		// opcodes outside the torch.save subset
		{name: "INST", pkl: newPk().op(opMark).op([]byte("ios\nsystem\n")...).stop(), want: "(INST) is not allowed"},
		{name: "OBJ", pkl: newPk().op(opMark).global("collections", "OrderedDict").op('o').stop(), want: "(OBJ) is not allowed"},
		{name: "NEWOBJ", pkl: newPk().global("collections", "OrderedDict").op(opEmptyTuple, 0x81).stop(), want: "(NEWOBJ) is not allowed"},
		{name: "EXT1", pkl: newPk().op(0x82, 1).stop(), want: "(EXT1) is not allowed"},
		{name: "text INT", pkl: newPk().op([]byte("I1\n")...).stop(), want: "(INT) is not allowed"},
		{name: "no PROTO", pkl: []byte("}."), want: "does not start with PROTO"},
		{name: "protocol 1", pkl: []byte{opProto, 1, opNone, opStop}, want: "pickle protocol 1"},
		{name: "PROTO twice", pkl: newPk().op(opProto, 2).op(opNone).stop(), want: "PROTO after the start"},
		{name: "no STOP", pkl: newPk().op(opEmptyDict).b, want: "ends without STOP"},
		{name: "truncated string", pkl: newPk().op(opBinUnicode, 0xff, 0xff, 0xff, 0x7f, 'a').stop(), want: "runs past the end"},
		{name: "BINUNICODE8 length 2^63", pkl: newPk().op(opBinUnicode8, 0, 0, 0, 0, 0, 0, 0, 0x80).stop(), want: "runs past the end"},
		{name: "invalid UTF-8 name", pkl: newPk().op(opShortBinUni, 1, 0xff).stop(), want: "not valid UTF-8"},
		{name: "huge LONG4", pkl: newPk().op(opLong4, 0, 0, 0, 1).stop(), want: "16777216-byte integer"},
		{name: "stack underflow", pkl: newPk().op(opPop).stop(), want: "stack underflow"},
		{name: "pop below mark", pkl: newPk().op(opNone, opMark, opPop).stop(), want: "stack underflow"},
		{name: "unknown memo", pkl: newPk().op(opBinGet, 7).stop(), want: "memo index 7 was never stored"},
		{name: "two values at STOP", pkl: newPk().op(opNone, opNone).stop(), want: "STOP with 2 values"},
		{name: "open mark at STOP", pkl: newPk().op(opMark, opNone).stop(), want: "open marks"},
		{name: "odd SETITEMS", pkl: newPk().op(opEmptyDict, opMark, opNone).op(opSetItems).stop(), want: "odd number"},
		{name: "tuple dict key", pkl: newPk().op(opEmptyDict).op(opEmptyTuple, opNone, opSetItem).stop(), want: "dict key of type tuple"},
		{name: "APPEND to a dict", pkl: newPk().op(opEmptyDict, opNone, opAppend).stop(), want: "APPEND to a dict"},
		{name: "BUILD on a tuple", pkl: newPk().op(opEmptyTuple, opEmptyDict, opBuild).stop(), want: "BUILD on a tuple"},
		{name: "BUILD with a list", pkl: newPk().op(opEmptyDict, opEmptyList, opBuild).stop(), want: "BUILD with a list state"},
		{name: "REDUCE on a string", pkl: newPk().str("os").op(opEmptyTuple, opReduce).stop(), want: "REDUCE calls a str"},
		{name: "calling a storage type", pkl: newPk().global("torch", "FloatStorage").op(opEmptyTuple, opReduce).stop(), want: "cannot be called"},
		{name: "OrderedDict with items", pkl: newPk().global("collections", "OrderedDict").op(opEmptyList, opTuple1, opReduce).stop(), want: "called with 1 arguments"},
		{name: "deeply nested tuples", pkl: nested.stop(), want: "holds a tuple"},
		{name: "deeply nested offset", pkl: deepOffset, want: "storage offset tuple is not"},
		// not a state dict
		{name: "top-level list", pkl: newPk().op(opEmptyList).stop(), want: "holds a list, want a state dict"},
		{name: "non-tensor value", pkl: newPk().op(opEmptyDict).str("lr").int(3).op(opSetItem).stop(), want: `entry "lr" is a int`},
		{name: "int key", pkl: newPk().op(opEmptyDict).int(3).op(opNone, opSetItem).stop(), want: "key of type int"},
		// tensor views that do not fit their storage
		{name: "view past the storage", pkl: withSpec(func(s *tensorSpec) { s.offset = 1 }), want: "reaches element 4 of a 4-element storage"},
		{name: "stride past the storage", pkl: withSpec(func(s *tensorSpec) { s.stride[0] = 3 }), want: "reaches element 4"},
		{name: "negative stride", pkl: withSpec(func(s *tensorSpec) { s.stride[1] = -1 }), want: "stride 1 is -1"},
		{name: "negative size", pkl: withSpec(func(s *tensorSpec) { s.size[0] = -2 }), want: "size 0 is -2"},
		{name: "negative offset", pkl: withSpec(func(s *tensorSpec) { s.offset = -1 }), want: "storage offset -1"},
		{name: "rank mismatch", pkl: withSpec(func(s *tensorSpec) { s.stride = []int64{1} }), want: "differ in rank"},
		{name: "rank 33", pkl: withSpec(func(s *tensorSpec) { s.size, s.stride = make([]int64, 33), make([]int64, 33) }), want: "33 dimensions"},
		{name: "size overflows int64", pkl: withSpec(func(s *tensorSpec) { s.size = []int64{1 << 62, 1 << 62}; s.stride = []int64{0, 0} }), want: "overflows"},
		{name: "size x stride overflows", pkl: withSpec(func(s *tensorSpec) { s.size = []int64{1 << 40, 2}; s.stride = []int64{1 << 40, 1} }), want: "overflows"},
		{name: "empty view far off", pkl: withSpec(func(s *tensorSpec) { s.offset = 99; s.size[0] = 0 }), want: "beyond a 4-element storage"},
		// storages that do not match the file
		{name: "storage larger than its member", pkl: withSpec(func(s *tensorSpec) { s.numel = 1 << 40 }), want: "declares 1099511627776 elements"},
		{name: "storage numel overflows", pkl: withSpec(func(s *tensorSpec) { s.numel = 1 << 62 }), want: "overflow"},
		{name: "negative numel", pkl: withSpec(func(s *tensorSpec) { s.numel = -4 }), want: "not (str key, str location, int size)"},
		{name: "missing storage member", pkl: withSpec(func(s *tensorSpec) { s.key = "9" }), want: `storage "9" has no member archive/data/9`},
		{name: "path in storage key", pkl: withSpec(func(s *tensorSpec) { s.key = "../../etc/passwd" }), want: "not a plain name"},
		{name: "dot-dot key", pkl: withSpec(func(s *tensorSpec) { s.key = ".." }), want: "not a plain name"},
		{name: "non-storage type in persistent id", pkl: newPk().op(opMark).str("storage").str("x").str("0").str("cpu").int(4).op(opTuple, opBinPersID).stop(), want: "names a str"},
		{name: "module persistent id", pkl: newPk().op(opMark).str("module").global("torch", "FloatStorage").str("0").str("cpu").int(4).op(opTuple, opBinPersID).stop(), want: `kind "module"`},
		{name: "one key, two types", pkl: torchPickle(append(slices.Clone(one), tensorSpec{name: "v", typ: "HalfStorage", key: "0", numel: 8, size: []int64{8}, stride: []int64{1}}), false), want: "declared twice"},
		{name: "non-empty backward hooks", pkl: newPk().global("torch._utils", "_rebuild_tensor_v2").op(opMark).op(opMark).str("storage").global("torch", "FloatStorage").
			str("0").str("cpu").int(4).op(opTuple, opBinPersID).int(0).ints([]int64{4}).ints([]int64{1}).op(opNewFalse).op(opEmptyDict).str("h").op(opNone, opSetItem).op(opTuple, opReduce).stop(), want: "backward hooks must be an empty OrderedDict"},
		// limits
		{name: "opcode limit", pkl: good, lim: Limits{MaxOps: 20}, want: "more than 20 opcodes"},
		{name: "byte limit", pkl: good, lim: Limits{MaxBytes: 100}, want: "exceeds the 100-byte limit"},
		// the container
		{name: "not a checkpoint", file: []byte("hello world"), want: "neither a zip nor a pickle"},
		{name: "tiny file", file: []byte("PK"), want: "not a torch.save checkpoint"},
		{name: "tar file", file: append([]byte("pytorch_model/"), make([]byte, 600)...), want: "neither a zip nor a pickle"},
		{name: "broken zip", file: []byte("PK\x03\x04garbage"), want: "invalid zip"},
		{name: "zip without data.pkl", file: zipOf(t, member{name: "archive/x", data: nil}), want: "without <archive>/data.pkl"},
		{name: "two data.pkl", file: zipOf(t, member{name: "a/data.pkl", data: good}, member{name: "b/data.pkl", data: good}), want: "two data.pkl"},
		{name: "duplicate member", file: zipOf(t, member{name: "archive/data.pkl", data: good}, member{name: "archive/data/0", data: make([]byte, 16)}, member{name: "archive/data/0", data: make([]byte, 16)}), want: "appears twice"},
		{name: "TorchScript", file: zipOf(t, member{name: "archive/data.pkl", data: good}, member{name: "archive/constants.pkl", data: good}), want: "TorchScript"},
		{name: "big-endian", file: zipOf(t, member{name: "archive/data.pkl", data: good}, member{name: "archive/byteorder", data: []byte("big")}), want: `byte order "big"`},
		{name: "compressed storage", file: zipOf(t, member{name: "archive/data.pkl", data: good}, member{name: "archive/data/0", data: make([]byte, 16), method: zip.Deflate}), want: "compressed storage"},
		{name: "storage member too short", file: zipOf(t, member{name: "archive/data.pkl", data: good}, member{name: "archive/data/0", data: make([]byte, 12)}), want: "holds 12 bytes"},
		{name: "corrupt data.pkl (CRC)", file: corruptMember(zipOf(t, member{name: "archive/data.pkl", data: good}, member{name: "archive/data/0", data: make([]byte, 16)}), good), want: "checksum"},
	}
	// The legacy format's own ways to go wrong.
	lp := torchPickle([]tensorSpec{{name: "w", typ: "FloatStorage", key: "k", numel: 4, size: []int64{4}, stride: []int64{1}}}, true)
	d16 := [][]byte{make([]byte, 16)}
	cases = append(cases, []tc{
		{name: "legacy: trailing bytes", file: append(torchLegacy(lp, []string{"k"}, []int64{4}, d16), 0), want: "1 bytes after the last storage"},
		{name: "legacy: truncated storage", file: torchLegacy(lp, []string{"k"}, []int64{4}, [][]byte{make([]byte, 15)}), want: "runs past the end of the file"},
		{name: "legacy: element count differs", file: torchLegacy(lp, []string{"k"}, []int64{5}, [][]byte{make([]byte, 20)}), want: "holds 5 elements, the pickle declares 4"},
		{name: "legacy: storage not listed", file: torchLegacy(lp, nil, nil, nil), want: "1 storages are used but 0 listed"},
		{name: "legacy: unknown key listed", file: torchLegacy(lp, []string{"k", "zz"}, []int64{4, 1}, [][]byte{make([]byte, 16), make([]byte, 4)}), want: `storage "zz" is listed but no tensor uses it`},
		{name: "legacy: key listed twice", file: torchLegacy(lp, []string{"k", "k"}, []int64{4, 4}, [][]byte{make([]byte, 16), make([]byte, 16)}), want: "listed twice"},
		{name: "legacy: view metadata", file: torchLegacy(bytes.Replace(lp, []byte{opNone, opTuple, opBinPersID}, []byte{opEmptyTuple, opTuple, opBinPersID}, 1), []string{"k"}, []int64{4}, d16), want: "is a view of another storage"},
		{name: "legacy: zip-style persistent id", file: torchLegacy(torchPickle(one, false), []string{"0"}, []int64{4}, d16), want: "want a 6-tuple"},
		{name: "legacy: bad magic", file: append(newPk().int(7).stop(), torchLegacy(lp, []string{"k"}, []int64{4}, d16)[15:]...), want: "magic number"},
		{name: "legacy: big-endian", file: bytes.Replace(torchLegacy(lp, []string{"k"}, []int64{4}, d16), append([]byte("little_endian"), opNewTrue), append([]byte("little_endian"), opNewFalse), 1), want: "big-endian"},
		{name: "legacy: persistent id in the header pickles", file: append(newPk().op(opMark).str("storage").op(opTuple, opBinPersID).stop(), make([]byte, 8)...), want: "persistent id outside the state dict pickle"},
	}...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := c.file
			if file == nil {
				file = zipOf(t, member{name: "archive/data.pkl", data: c.pkl}, member{name: "archive/data/0", data: st4["0"]})
			}
			var err error
			alloc := allocated(func() { _, err = Open(bytes.NewReader(file), int64(len(file)), c.lim) })
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want a *Error", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
			if pe.Global != "" {
				t.Errorf("Global = %q for a pickle naming only allowed globals", pe.Global)
			}
			// Refusing costs memory in proportion to the file, never to the
			// sizes it claims (up to 2^62 here).
			if limit := uint64(256*len(file) + 4<<20); alloc > limit {
				t.Errorf("refusing a %d-byte file allocated %d bytes", len(file), alloc)
			}
		})
	}
	t.Logf("%d malformed-file cases refused", len(cases))
}

// corruptMember flips a byte inside the stored copy of data in a zip, leaving
// the CRC as it was.
func corruptMember(file, data []byte) []byte {
	i := bytes.Index(file, data)
	out := slices.Clone(file)
	out[i+len(data)/2] ^= 0x20
	return out
}

// allocated reports the bytes fn allocated on the Go heap (TotalAlloc only
// grows, so no GC is needed first; the fuzz target calls this per input).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A storage whose bytes change after the check (the file is rewritten under
// a running load) fails the CRC when read, rather than loading other weights.
func TestPickleStorageCRC(t *testing.T) {
	specs, storages := goodSpecs()
	file := torchZip(t, torchPickle(specs, false), storages)
	tf, err := Open(bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	loc := tf.storages["0"]
	off, err := loc.zf.DataOffset()
	if err != nil {
		t.Fatal(err)
	}
	file[off] ^= 1
	if _, _, err := tf.Float32s("w"); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("err = %v, want a checksum error", err)
	}
}

// The worst a pickle under the limits can cost: a million opcodes that each
// make a new dict, the most expensive value.
func TestPickleOpcodeLimitBoundsMemory(t *testing.T) {
	dicts := func(ops int) []byte { // PROTO, EMPTY_LIST, MARK, dicts, APPENDS, STOP
		p := newPk().op(opEmptyList, opMark)
		for range ops - 5 {
			p.op(opEmptyDict)
		}
		return p.op(opAppends).stop()
	}
	pkl := dicts(DefaultMaxOps)
	m := newPickleMachine(Limits{})
	var err error
	alloc := allocated(func() { _, _, err = m.run(pkl, persistZip) })
	if err != nil {
		t.Fatal(err)
	}
	if alloc > 256<<20 {
		t.Errorf("a %d-opcode pickle allocated %d MB", DefaultMaxOps, alloc>>20)
	}
	t.Logf("%d opcodes: %d MB allocated", DefaultMaxOps, alloc>>20)
	if _, _, err := newPickleMachine(Limits{}).run(dicts(DefaultMaxOps+1), persistZip); err == nil || !strings.Contains(err.Error(), "more than 1000000 opcodes") {
		t.Errorf("one opcode over the limit: %v", err)
	}
}

// FuzzPickleScan feeds arbitrary bytes to the checker, both as a whole
// checkpoint file and as the data.pkl of a zip whose storages are made to
// match. It checks that the checker never panics and fails only with a
// *Error; that a refused global is really outside the allowlist; that
// an accepted file references only allowed globals and bounded views; and
// that every float tensor of an accepted file reads back with as many values
// as its shape holds, equal to an independent strided gather.
func FuzzPickleScan(f *testing.F) {
	specs, storages := goodSpecs()
	f.Add(torchPickle(specs, false))
	f.Add(torchZip(f, torchPickle(specs, false), storages))
	f.Add(osSystemZip(f, "id"))
	f.Add(newPk().global("os", "system").str("id").op(opTuple1, opReduce).stop())
	f.Add(newPk().str("builtins").str("eval").op(opStackGlobal).str("1").op(opTuple1, opReduce).stop())
	lp := torchPickle([]tensorSpec{{name: "w", typ: "FloatStorage", key: "k", numel: 4, size: []int64{2, 2}, stride: []int64{1, 2}}}, true)
	f.Add(torchLegacy(lp, []string{"k"}, []int64{4}, [][]byte{f32bytes(1, 2, 3, 4)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tf *File
		var err error
		alloc := allocated(func() { tf, err = Open(bytes.NewReader(data), int64(len(data)), Limits{}) })
		if limit := uint64(256*len(data) + 4<<20); alloc > limit {
			t.Fatalf("checking a %d-byte file allocated %d bytes", len(data), alloc)
		}
		checkScan(t, tf, err)

		// As a data.pkl: give every storage the pickle declares a member of
		// the declared size, so accepted pickles reach the tensor reads.
		m := newPickleMachine(Limits{})
		v, _, err := m.run(data, persistZip)
		if err != nil {
			checkScan(t, nil, err)
			return
		}
		if _, err := stateDict(v); err != nil {
			return // a valid pickle, but not of a state dict
		}
		ms := []member{{name: "archive/data.pkl", data: data}}
		var total int64
		for key, s := range m.storages {
			n := s.numel * s.typ.size
			if total += n; total > 1<<20 {
				return // big storages cost time, not coverage
			}
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*7 + len(key))
			}
			ms = append(ms, member{name: "archive/data/" + key, data: b})
		}
		file := zipOf(t, ms...)
		tf, err = Open(bytes.NewReader(file), int64(len(file)), Limits{})
		if err != nil {
			t.Fatalf("a pickle the machine ran, with its storages supplied, was refused: %v", err)
		}
		checkScan(t, tf, nil)
	})
}

// checkScan checks the invariants of one Open result.
func checkScan(t *testing.T, tf *File, err error) {
	t.Helper()
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v (%T) is not a *Error", err, err)
		}
		if pe.Global != "" && GlobalAllowed(pe.Global) {
			t.Fatalf("allowed global %q refused", pe.Global)
		}
		return
	}
	for _, g := range tf.globals {
		if !GlobalAllowed(g) {
			t.Fatalf("accepted a file referencing %q", g)
		}
	}
	if len(tf.names) != len(tf.tensors) || !slices.IsSorted(tf.names) {
		t.Fatalf("names %q do not list the %d tensors in order", tf.names, len(tf.tensors))
	}
	for _, name := range tf.names {
		pt := tf.tensors[name]
		if _, ok := tf.storages[pt.storage.key]; !ok {
			t.Fatalf("%q: storage %q has no location", name, pt.storage.key)
		}
		n, err := pt.numel()
		if err != nil {
			t.Fatalf("%q accepted with size %v: %v", name, pt.size, err)
		}
		vals, shape, err := tf.Float32s(name)
		if pt.storage.typ.decode == nil {
			if err == nil {
				t.Fatalf("%q: %s read as float", name, pt.storage.typ.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if int64(len(vals)) != n || !slices.Equal(shape, pt.size) {
			t.Fatalf("%q: %d values, shape %v; want %d, %v", name, len(vals), shape, n, pt.size)
		}
		if n > 0 && n <= 4096 {
			raw, err := tf.readStorage(pt.storage)
			if err != nil {
				t.Fatal(err)
			}
			all := make([]float32, pt.storage.numel)
			pt.storage.typ.decode(all, raw)
			for i := int64(0); i < n; i++ {
				// the element's storage index, from its row-major position
				pos, rem := pt.offset, i
				for d := len(pt.size) - 1; d >= 0; d-- {
					pos += (rem % pt.size[d]) * pt.stride[d]
					rem /= pt.size[d]
				}
				if a, b := vals[i], all[pos]; a != b && !(math.IsNaN(float64(a)) && math.IsNaN(float64(b))) {
					t.Fatalf("%q[%d] = %v, storage[%d] = %v", name, i, a, pos, b)
				}
			}
		}
	}
}
