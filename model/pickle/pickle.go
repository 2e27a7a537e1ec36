package pickle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/beamtune/beamtune/model/safetensors"
)

// Limits on a checkpoint's pickle. A state dict needs about 25 opcodes and
// 120 bytes per tensor: BERT-large's data.pkl is under 100 KB and 20 000
// opcodes. The limits leave room for 30 000 tensors while bounding what a
// hostile pickle can make the machine hold (each opcode creates at most one
// small value: a million empty dicts, the dearest case, allocate 175 MB in
// TestPickleOpcodeLimitBoundsMemory).
const (
	DefaultMaxBytes = 16 << 20
	DefaultMaxOps   = 1_000_000
	// maxPickleRank bounds tensor rank, as safetensors.DefaultMaxRank does.
	maxPickleRank = 32
	// maxPickleIntBytes bounds LONG1/LONG4 integers; the legacy format's magic
	// number (10 bytes) is the largest torch writes.
	maxPickleIntBytes = 16
)

// Limits bounds what the pickle checker accepts; zero fields mean the
// defaults.
type Limits struct {
	MaxBytes int64 // size of the pickle (data.pkl, or the legacy header pickles)
	MaxOps   int   // opcodes executed, over all pickles of the file
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxOps <= 0 {
		l.MaxOps = DefaultMaxOps
	}
	return l
}

// Error says why a pytorch_model.bin was refused. Global is set when
// the pickle references a callable outside the allowlist: such a file is not
// a plain state dict and may be an attempt to run code.
type Error struct {
	File   string // the checkpoint, when known
	Member string // the zip member holding the pickle ("archive/data.pkl"), or "" for the legacy format
	Offset int64  // byte offset of the offending opcode within the pickle, or -1
	Global string // "module.name" of a refused global, or ""
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	b.WriteString("refusing pickle")
	if e.Member != "" {
		fmt.Fprintf(&b, " %s", e.Member)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at byte %d", e.Offset)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

func pickleErr(off int, format string, args ...any) *Error {
	return &Error{Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
}

// storageType is one torch.<X>Storage class: how wide its elements are and
// how to read them as float32 (nil for integer and bool storages).
type storageType struct {
	name   string
	size   int64
	decode func(dst []float32, src []byte)
}

var storageTypes = map[string]*storageType{}

func init() {
	for _, s := range []*storageType{
		{name: "FloatStorage", size: 4, decode: func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
			}
		}},
		{name: "DoubleStorage", size: 8, decode: func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
			}
		}},
		{name: "HalfStorage", size: 2, decode: func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = safetensors.F16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
			}
		}},
		{name: "BFloat16Storage", size: 2, decode: func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = safetensors.BF16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
			}
		}},
		{name: "LongStorage", size: 8},
		{name: "IntStorage", size: 4},
		{name: "ShortStorage", size: 2},
		{name: "CharStorage", size: 1},
		{name: "ByteStorage", size: 1},
		{name: "BoolStorage", size: 1},
	} {
		storageTypes["torch."+s.name] = s
	}
}

// The callables a state dict pickle may name. Storage types are allowed too
// (storageTypes), but only as the class inside a persistent id, never called.
const (
	globalOrderedDict         = "collections.OrderedDict"
	globalRebuildTensorV2     = "torch._utils._rebuild_tensor_v2"
	globalRebuildParam        = "torch._utils._rebuild_parameter"
	globalRebuildParamWithSt  = "torch._utils._rebuild_parameter_with_state"
	allowedGlobalsDescription = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state and the torch.<Float|Double|Half|BFloat16|Long|Int|Short|Char|Byte|Bool>Storage types"
)

// GlobalAllowed reports whether a checkpoint pickle may reference the
// global "module.name".
func GlobalAllowed(name string) bool {
	switch name {
	case globalOrderedDict, globalRebuildTensorV2, globalRebuildParam, globalRebuildParamWithSt:
		return true
	}
	return storageTypes[name] != nil
}

// Values on the machine's stack. Python ints that fit are int64; the rest
// (only the legacy magic number in practice) are *big.Int. Strings are Go
// strings (valid UTF-8), bytes are pyBytes.
type (
	pyNone  struct{}
	pyBytes string
	pyTuple []any
	pyList  struct{ items []any }
	// pyDict keeps insertion order, as Python's dict does. Keys are limited to
	// comparable scalars (string, int64, bool, pyNone, pyBytes): a state dict
	// needs no other, and hashing never has to recurse.
	pyDict struct {
		keys  []any
		vals  []any
		index map[any]int
	}
	pyGlobal struct{ module, name string }
	// pyStorage is a storage a persistent id refers to; its bytes are in the
	// file (a zip member, or after the pickles in the legacy format).
	pyStorage struct {
		typ      *storageType
		key      string
		location string
		numel    int64
	}
	// pyTensor is a strided view of a storage, as _rebuild_tensor_v2 makes it.
	pyTensor struct {
		storage      *pyStorage
		offset       int64
		size, stride []int64
		requiresGrad bool
	}
)

func (g pyGlobal) String() string { return g.module + "." + g.name }

func (d *pyDict) set(k, v any) {
	if d.index == nil {
		d.index = map[any]int{}
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// pyTypeName names a value's Python type for error messages, without looking
// inside it (values may be deep or self-referencing).
func pyTypeName(v any) string {
	switch v.(type) {
	case pyNone:
		return "None"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyBytes:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return "global " + v.(pyGlobal).String()
	case *pyStorage:
		return "storage"
	case *pyTensor:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

// pyDescribe shows a scalar's value and any other value's type. Never %v on a
// value: a pickle can nest tuples a million deep, and fmt would recurse.
func pyDescribe(v any) string {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		return shortQuote(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return pyTypeName(v)
}

// persistentMode says how BINPERSID ids look: the zip format's 5-tuple or the
// legacy format's 6-tuple with a view (which must be None).
type persistentMode int

const (
	persistNone persistentMode = iota // a pickle that must not load storages
	persistZip
	persistLegacy
)

// pickleMachine runs one pickle at a time. ops counts over all pickles run on
// it, so the limit bounds a whole file.
type pickleMachine struct {
	lim      Limits
	ops      int
	storages map[string]*pyStorage
	globals  []string // every global referenced, in order (for tests)

	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
}

func newPickleMachine(lim Limits) *pickleMachine {
	return &pickleMachine{lim: lim.withDefaults(), storages: map[string]*pyStorage{}}
}

// Opcodes, named as in Python's pickle module. Only these are understood:
// torch.save writes protocol 2, and this set is what protocols 2 to 5 use for
// dicts, tuples, lists, scalars, strings, globals and persistent ids. The
// object-building opcodes (INST, OBJ, NEWOBJ, NEWOBJ_EX), extension registry
// (EXT1/2/4), out-of-band buffers and the text-mode protocol 0 forms are
// refused: a state dict needs none of them.
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinString      = 'T'
	opShortBinString = 'U'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opProto          = 0x80
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

// run executes the pickle starting at data[0] and returns the value STOP
// leaves, and the number of bytes the pickle took (files in the legacy format
// hold several pickles back to back). Callers pass at most lim.MaxBytes.
func (m *pickleMachine) run(data []byte, mode persistentMode) (any, int, error) {
	m.data, m.pos, m.stack, m.marks, m.memo = data, 0, m.stack[:0], m.marks[:0], map[uint32]any{}
	for {
		start := m.pos
		if m.pos >= len(m.data) {
			return nil, 0, pickleErr(start, "pickle ends without STOP: truncated, or larger than the %d-byte limit", m.lim.MaxBytes)
		}
		m.ops++
		if m.ops > m.lim.MaxOps {
			return nil, 0, pickleErr(start, "more than %d opcodes", m.lim.MaxOps)
		}
		op := m.data[m.pos]
		m.pos++
		if start == 0 && op != opProto {
			return nil, 0, pickleErr(start, "pickle does not start with PROTO: not a torch.save file")
		}
		done, err := m.step(op, start, mode)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				if pe.Offset < 0 {
					pe.Offset = int64(start)
				}
				return nil, 0, pe
			}
			return nil, 0, &Error{Offset: int64(start), Reason: err.Error()}
		}
		if done {
			if len(m.stack) != 1 || len(m.marks) != 0 {
				return nil, 0, pickleErr(start, "STOP with %d values and %d open marks on the stack (want 1 and 0)", len(m.stack), len(m.marks))
			}
			v := m.stack[0]
			m.stack = m.stack[:0]
			return v, m.pos, nil
		}
	}
}

// read takes n bytes of argument; n comes from the file, so it is checked
// against what is left before anything is sliced or allocated.
func (m *pickleMachine) read(n uint64) ([]byte, error) {
	if n > uint64(len(m.data)-m.pos) {
		return nil, errors.New("opcode argument runs past the end of the pickle")
	}
	b := m.data[m.pos : m.pos+int(n)]
	m.pos += int(n)
	return b, nil
}

func (m *pickleMachine) readUint(n int) (uint64, error) {
	b, err := m.read(uint64(n))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (m *pickleMachine) readLine() (string, error) {
	i := bytes.IndexByte(m.data[m.pos:], '\n')
	if i < 0 {
		return "", errors.New("GLOBAL name runs past the end of the pickle")
	}
	s := string(m.data[m.pos : m.pos+i])
	m.pos += i + 1
	return s, nil
}

func (m *pickleMachine) push(v any) { m.stack = append(m.stack, v) }

// floor is the lowest stack index the current mark level may pop.
func (m *pickleMachine) floor() int {
	if len(m.marks) == 0 {
		return 0
	}
	return m.marks[len(m.marks)-1]
}

func (m *pickleMachine) pop() (any, error) {
	if len(m.stack) <= m.floor() {
		return nil, errors.New("stack underflow")
	}
	v := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	return v, nil
}

func (m *pickleMachine) top() (any, error) {
	if len(m.stack) <= m.floor() {
		return nil, errors.New("stack underflow")
	}
	return m.stack[len(m.stack)-1], nil
}

// popMark returns the values pushed since the last MARK, removing them and
// the mark.
func (m *pickleMachine) popMark() ([]any, error) {
	if len(m.marks) == 0 {
		return nil, errors.New("no MARK to pop to")
	}
	k := m.marks[len(m.marks)-1]
	m.marks = m.marks[:len(m.marks)-1]
	items := append([]any(nil), m.stack[k:]...)
	m.stack = m.stack[:k]
	return items, nil
}

func (m *pickleMachine) setMemo(idx uint64) error {
	v, err := m.top()
	if err != nil {
		return err
	}
	if idx > math.MaxUint32 {
		return fmt.Errorf("memo index %d out of range", idx)
	}
	m.memo[uint32(idx)] = v
	return nil
}

func (m *pickleMachine) getMemo(idx uint64) error {
	v, ok := m.memo[uint32(idx)]
	if !ok || idx > math.MaxUint32 {
		return fmt.Errorf("memo index %d was never stored", idx)
	}
	m.push(v)
	return nil
}

func (m *pickleMachine) pushString(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("string is not valid UTF-8")
	}
	m.push(string(b))
	return nil
}

// step runs one opcode; it reports true on STOP.
func (m *pickleMachine) step(op byte, start int, mode persistentMode) (bool, error) {
	switch op {
	case opProto:
		if start != 0 {
			return false, errors.New("PROTO after the start of the pickle")
		}
		v, err := m.readUint(1)
		if err != nil {
			return false, err
		}
		if v < 2 || v > 5 {
			return false, fmt.Errorf("pickle protocol %d (torch.save writes 2; 2 to 5 are read)", v)
		}
	case opFrame:
		// Protocol 4 framing only groups opcodes for buffering; the opcodes
		// inside are read as usual, so the length needs only to be sane.
		n, err := m.readUint(8)
		if err != nil {
			return false, err
		}
		if n > uint64(len(m.data)-m.pos) {
			return false, errors.New("FRAME runs past the end of the pickle")
		}
	case opStop:
		return true, nil
	case opMark:
		m.marks = append(m.marks, len(m.stack))
	case opPop:
		if _, err := m.pop(); err != nil {
			return false, err
		}
	case opPopMark:
		if _, err := m.popMark(); err != nil {
			return false, err
		}
	case opDup:
		v, err := m.top()
		if err != nil {
			return false, err
		}
		m.push(v)
	case opNone:
		m.push(pyNone{})
	case opNewTrue:
		m.push(true)
	case opNewFalse:
		m.push(false)
	case opBinInt:
		v, err := m.readUint(4)
		if err != nil {
			return false, err
		}
		m.push(int64(int32(uint32(v))))
	case opBinInt1:
		v, err := m.readUint(1)
		if err != nil {
			return false, err
		}
		m.push(int64(v))
	case opBinInt2:
		v, err := m.readUint(2)
		if err != nil {
			return false, err
		}
		m.push(int64(v))
	case opLong1, opLong4:
		width := 1
		if op == opLong4 {
			width = 4
		}
		n, err := m.readUint(width)
		if err != nil {
			return false, err
		}
		if n > maxPickleIntBytes {
			return false, fmt.Errorf("%d-byte integer (at most %d are read)", n, maxPickleIntBytes)
		}
		b, err := m.read(n)
		if err != nil {
			return false, err
		}
		m.push(longValue(b))
	case opBinFloat:
		v, err := m.read(8)
		if err != nil {
			return false, err
		}
		m.push(math.Float64frombits(binary.BigEndian.Uint64(v)))
	case opBinUnicode, opShortBinUni, opBinUnicode8, opBinString, opShortBinString:
		n, err := m.readUint(argWidth(op))
		if err != nil {
			return false, err
		}
		b, err := m.read(n)
		if err != nil {
			return false, err
		}
		if err := m.pushString(b); err != nil {
			return false, err
		}
	case opBinBytes, opShortBinBytes, opBinBytes8:
		n, err := m.readUint(argWidth(op))
		if err != nil {
			return false, err
		}
		b, err := m.read(n)
		if err != nil {
			return false, err
		}
		m.push(pyBytes(b))
	case opEmptyTuple:
		m.push(pyTuple{})
	case opTuple:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		m.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(m.stack)-m.floor() < n {
			return false, errors.New("stack underflow")
		}
		t := append(pyTuple(nil), m.stack[len(m.stack)-n:]...)
		m.stack = m.stack[:len(m.stack)-n]
		m.push(t)
	case opEmptyList:
		m.push(&pyList{})
	case opList:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		m.push(&pyList{items: items})
	case opAppend, opAppends:
		var items []any
		if op == opAppend {
			v, err := m.pop()
			if err != nil {
				return false, err
			}
			items = []any{v}
		} else {
			var err error
			if items, err = m.popMark(); err != nil {
				return false, err
			}
		}
		t, err := m.top()
		if err != nil {
			return false, err
		}
		l, ok := t.(*pyList)
		if !ok {
			return false, fmt.Errorf("APPEND to a %s", pyTypeName(t))
		}
		l.items = append(l.items, items...)
	case opEmptyDict:
		m.push(&pyDict{})
	case opDict:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		d := &pyDict{}
		if err := setItems(d, items); err != nil {
			return false, err
		}
		m.push(d)
	case opSetItem, opSetItems:
		var items []any
		if op == opSetItem {
			if len(m.stack)-m.floor() < 2 {
				return false, errors.New("stack underflow")
			}
			items = []any{m.stack[len(m.stack)-2], m.stack[len(m.stack)-1]}
			m.stack = m.stack[:len(m.stack)-2]
		} else {
			var err error
			if items, err = m.popMark(); err != nil {
				return false, err
			}
		}
		t, err := m.top()
		if err != nil {
			return false, err
		}
		d, ok := t.(*pyDict)
		if !ok {
			return false, fmt.Errorf("SETITEM on a %s", pyTypeName(t))
		}
		if err := setItems(d, items); err != nil {
			return false, err
		}
	case opBinPut, opLongBinPut:
		idx, err := m.readUint(argWidth(op))
		if err != nil {
			return false, err
		}
		return false, m.setMemo(idx)
	case opMemoize:
		return false, m.setMemo(uint64(len(m.memo)))
	case opBinGet, opLongBinGet:
		idx, err := m.readUint(argWidth(op))
		if err != nil {
			return false, err
		}
		return false, m.getMemo(idx)
	case opGlobal:
		module, err := m.readLine()
		if err != nil {
			return false, err
		}
		name, err := m.readLine()
		if err != nil {
			return false, err
		}
		return false, m.global(module, name)
	case opStackGlobal:
		name, err := m.pop()
		if err != nil {
			return false, err
		}
		module, err := m.pop()
		if err != nil {
			return false, err
		}
		ms, ok1 := module.(string)
		ns, ok2 := name.(string)
		if !ok1 || !ok2 {
			return false, fmt.Errorf("STACK_GLOBAL of a %s and a %s (want two str)", pyTypeName(module), pyTypeName(name))
		}
		return false, m.global(ms, ns)
	case opReduce:
		args, err := m.pop()
		if err != nil {
			return false, err
		}
		fn, err := m.pop()
		if err != nil {
			return false, err
		}
		v, err := m.reduce(fn, args)
		if err != nil {
			return false, err
		}
		m.push(v)
	case opBuild:
		state, err := m.pop()
		if err != nil {
			return false, err
		}
		t, err := m.top()
		if err != nil {
			return false, err
		}
		// state_dict() carries a _metadata attribute (module versions), which
		// pickle restores with BUILD on the OrderedDict. It says nothing about
		// the weights, so it is checked for shape and dropped.
		if _, ok := t.(*pyDict); !ok {
			return false, fmt.Errorf("BUILD on a %s (only a state dict's OrderedDict takes attributes)", pyTypeName(t))
		}
		switch state.(type) {
		case *pyDict, pyNone:
		default:
			return false, fmt.Errorf("BUILD with a %s state", pyTypeName(state))
		}
	case opBinPersID:
		pid, err := m.pop()
		if err != nil {
			return false, err
		}
		s, err := m.persistent(pid, mode)
		if err != nil {
			return false, err
		}
		m.push(s)
	default:
		return false, fmt.Errorf("opcode 0x%02x %s is not allowed in a checkpoint", op, opName(op))
	}
	return false, nil
}

// argWidth is the size of the length or index argument of the string,
// bytes and memo opcodes.
func argWidth(op byte) int {
	switch op {
	case opShortBinUni, opShortBinString, opShortBinBytes, opBinPut, opBinGet:
		return 1
	case opBinUnicode8, opBinBytes8:
		return 8
	}
	return 4
}

// opName names refused opcodes in errors, so a reader of the message can tell
// an object-building pickle from a corrupt file.
func opName(op byte) string {
	names := map[byte]string{'i': "INST", 'o': "OBJ", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
		'I': "INT", 'L': "LONG", 'F': "FLOAT", 'S': "STRING", 'V': "UNICODE", 'g': "GET", 'p': "PUT", 'P': "PERSID",
		0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER"}
	if n, ok := names[op]; ok {
		return "(" + n + ")"
	}
	return "(unknown)"
}

// longValue decodes LONG1/LONG4's little-endian two's complement integer.
func longValue(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(v<<shift) >> shift // sign-extend
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return v
}

func setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return errors.New("SETITEMS with an odd number of values")
	}
	for i := 0; i < len(items); i += 2 {
		switch items[i].(type) {
		case string, int64, bool, pyNone, pyBytes:
		default:
			return fmt.Errorf("dict key of type %s (a state dict's keys are str)", pyTypeName(items[i]))
		}
		d.set(items[i], items[i+1])
	}
	return nil
}

// global resolves GLOBAL/STACK_GLOBAL against the allowlist. This is the one
// place a hostile pickle shows itself (os.system, builtins.eval, ...), so the
// error names what it asked for.
func (m *pickleMachine) global(module, name string) error {
	full := module + "." + name
	m.globals = append(m.globals, full)
	if !GlobalAllowed(full) {
		return &Error{Offset: -1, Global: full,
			Reason: fmt.Sprintf("global %s is not allowed in a checkpoint (only %s): the file may be an attempt to run code; load it only in a sandbox, or use model.safetensors",
				shortQuote(full), allowedGlobalsDescription)}
	}
	m.push(pyGlobal{module, name})
	return nil
}

// shortQuote quotes file-controlled text for messages, cut to a readable length.
func shortQuote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strconv.Quote(s)
}

func (m *pickleMachine) reduce(fn, args any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, fmt.Errorf("REDUCE calls a %s", pyTypeName(fn))
	}
	a, ok := args.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("REDUCE of %s with a %s for arguments", g, pyTypeName(args))
	}
	switch g.String() {
	case globalOrderedDict:
		if len(a) != 0 {
			return nil, fmt.Errorf("%s called with %d arguments (torch.save writes OrderedDict())", g, len(a))
		}
		return &pyDict{}, nil
	case globalRebuildTensorV2:
		return rebuildTensor(a)
	case globalRebuildParam, globalRebuildParamWithSt:
		want := 3
		if g.String() == globalRebuildParamWithSt {
			want = 4
		}
		if len(a) != want {
			return nil, fmt.Errorf("%s called with %d arguments, want %d", g, len(a), want)
		}
		t, ok := a[0].(*pyTensor)
		rg, ok2 := a[1].(bool)
		if !ok || !ok2 || !emptyDict(a[2]) {
			return nil, fmt.Errorf("%s(%s, %s, %s): want (tensor, bool, empty OrderedDict)", g, pyTypeName(a[0]), pyTypeName(a[1]), pyTypeName(a[2]))
		}
		if want == 4 { // Python attributes of a Parameter subclass: nothing to load
			switch a[3].(type) {
			case pyNone, *pyDict, pyTuple:
			default:
				return nil, fmt.Errorf("%s with a %s state", g, pyTypeName(a[3]))
			}
		}
		p := *t
		p.requiresGrad = rg
		return &p, nil
	}
	return nil, fmt.Errorf("%s cannot be called (a storage type is only valid in a persistent id)", g)
}

func emptyDict(v any) bool {
	d, ok := v.(*pyDict)
	return ok && len(d.keys) == 0
}

// rebuildTensor is _rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]). The view must lie inside the
// storage: libtorch would refuse it later, through an exit in gotch.
func rebuildTensor(a pyTuple) (*pyTensor, error) {
	if len(a) != 6 && len(a) != 7 {
		return nil, fmt.Errorf("%s called with %d arguments, want 6 or 7", globalRebuildTensorV2, len(a))
	}
	s, ok := a[0].(*pyStorage)
	if !ok {
		return nil, fmt.Errorf("%s: storage is a %s", globalRebuildTensorV2, pyTypeName(a[0]))
	}
	off, ok := a[1].(int64)
	if !ok || off < 0 {
		return nil, fmt.Errorf("%s: storage offset %s is not a non-negative int", globalRebuildTensorV2, pyDescribe(a[1]))
	}
	size, err := intTuple(a[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(a[3], "stride")
	if err != nil {
		return nil, err
	}
	rg, ok := a[4].(bool)
	if !ok {
		return nil, fmt.Errorf("%s: requires_grad is a %s", globalRebuildTensorV2, pyTypeName(a[4]))
	}
	if !emptyDict(a[5]) {
		return nil, fmt.Errorf("%s: backward hooks must be an empty OrderedDict, got a %s", globalRebuildTensorV2, pyTypeName(a[5]))
	}
	if len(a) == 7 {
		switch a[6].(type) {
		case pyNone, *pyDict:
		default:
			return nil, fmt.Errorf("%s: metadata is a %s", globalRebuildTensorV2, pyTypeName(a[6]))
		}
	}
	t := &pyTensor{storage: s, offset: off, size: size, stride: stride, requiresGrad: rg}
	if err := t.check(); err != nil {
		return nil, err
	}
	return t, nil
}

func intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("tensor %s is a %s, want a tuple of ints", what, pyTypeName(v))
	}
	if len(t) > maxPickleRank {
		return nil, fmt.Errorf("tensor %s has %d dimensions (at most %d)", what, len(t), maxPickleRank)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("tensor %s %d is %s, want a non-negative int", what, i, pyDescribe(x))
		}
		out[i] = n
	}
	return out, nil
}

// numel is the element count of the view, or an error when it overflows.
func (t *pyTensor) numel() (int64, error) {
	n := uint64(1)
	for _, d := range t.size {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("tensor size %v overflows", t.size)
		}
		n = lo
	}
	return int64(n), nil
}

// check verifies that every element of the view lies in the storage.
func (t *pyTensor) check() error {
	if len(t.size) != len(t.stride) {
		return fmt.Errorf("tensor size %v and stride %v differ in rank", t.size, t.stride)
	}
	n, err := t.numel()
	if err != nil {
		return err
	}
	if n == 0 {
		if t.offset > t.storage.numel {
			return fmt.Errorf("storage offset %d beyond a %d-element storage", t.offset, t.storage.numel)
		}
		return nil
	}
	last := uint64(t.offset)
	for i, d := range t.size {
		hi, lo := bits.Mul64(uint64(d-1), uint64(t.stride[i]))
		if hi != 0 {
			return fmt.Errorf("tensor size %v stride %v overflows", t.size, t.stride)
		}
		var carry uint64
		last, carry = bits.Add64(last, lo, 0)
		if carry != 0 || last > math.MaxInt64 {
			return fmt.Errorf("tensor size %v stride %v overflows", t.size, t.stride)
		}
	}
	if int64(last) >= t.storage.numel {
		return fmt.Errorf("tensor (offset %d, size %v, stride %v) reaches element %d of a %d-element storage",
			t.offset, t.size, t.stride, last, t.storage.numel)
	}
	return nil
}

// persistent resolves a persistent id: ('storage', StorageType, key,
// location, numel) in the zip format, with a sixth view entry, which must be
// None, in the legacy format.
func (m *pickleMachine) persistent(pid any, mode persistentMode) (*pyStorage, error) {
	if mode == persistNone {
		return nil, errors.New("persistent id outside the state dict pickle")
	}
	t, ok := pid.(pyTuple)
	want := 5
	if mode == persistLegacy {
		want = 6
	}
	if !ok || len(t) != want {
		return nil, fmt.Errorf("persistent id is a %s, want a %d-tuple ('storage', type, key, location, size)", pyTypeName(pid), want)
	}
	if kind, _ := t[0].(string); kind != "storage" {
		return nil, fmt.Errorf("persistent id of kind %s, want 'storage' (pickled modules are not loaded)", pyDescribe(t[0]))
	}
	g, ok := t[1].(pyGlobal)
	if !ok || storageTypes[g.String()] == nil {
		return nil, fmt.Errorf("persistent id names a %s, want a torch storage type", pyTypeName(t[1]))
	}
	key, ok1 := t[2].(string)
	loc, ok2 := t[3].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, fmt.Errorf("persistent id (%s, %s, %s) is not (str key, str location, int size)", pyTypeName(t[2]), pyTypeName(t[3]), pyTypeName(t[4]))
	}
	if !validStorageKey(key) {
		return nil, fmt.Errorf("storage key %s is not a plain name", shortQuote(key))
	}
	typ := storageTypes[g.String()]
	if hi, lo := bits.Mul64(uint64(numel), uint64(typ.size)); hi != 0 || lo > math.MaxInt64 {
		return nil, fmt.Errorf("storage %s: %d elements of %s overflow", shortQuote(key), numel, typ.name)
	}
	if mode == persistLegacy {
		if _, ok := t[5].(pyNone); !ok {
			return nil, fmt.Errorf("storage %s is a view of another storage (an old format gotch and beamtune do not read)", shortQuote(key))
		}
	}
	if s, ok := m.storages[key]; ok {
		if s.typ != typ || s.numel != numel {
			return nil, fmt.Errorf("storage %s declared twice, as %d %s and as %d %s", shortQuote(key), s.numel, s.typ.name, numel, typ.name)
		}
		return s, nil
	}
	s := &pyStorage{typ: typ, key: key, location: loc, numel: numel}
	m.storages[key] = s
	return s, nil
}

// validStorageKey: keys become zip member names (archive/data/<key>), so
// nothing that could walk out of the data folder.
func validStorageKey(k string) bool {
	if k == "" || len(k) > 256 || k == "." || k == ".." {
		return false
	}
	return !strings.ContainsAny(k, "/\\\x00")
}

// stateDict turns the pickle's result into name -> tensor. A pytorch_model.bin
// holds a flat dict or OrderedDict of tensors; anything else (a whole
// pickled module, a training checkpoint with an optimizer) is refused.
func stateDict(v any) (map[string]*pyTensor, error) {
	d, ok := v.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("the pickle holds a %s, want a state dict (dict of name -> tensor)", pyTypeName(v))
	}
	out := make(map[string]*pyTensor, len(d.keys))
	for i, k := range d.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("state dict key of type %s", pyTypeName(k))
		}
		t, ok := d.vals[i].(*pyTensor)
		if !ok {
			return nil, fmt.Errorf("state dict entry %s is a %s, not a tensor", shortQuote(name), pyTypeName(d.vals[i]))
		}
		out[name] = t
	}
	return out, nil
}

// storageLoc says where a storage's bytes are.
type storageLoc struct {
	zf  *zip.File // zip format: the member, read through archive/zip so its CRC is checked
	off int64     // legacy format: offset in the file
	n   int64     // bytes
}

// File is a checked torch.save checkpoint. Nothing of the tensors is
// read until Float32s asks for one, so the reader given to Open must stay
// readable while the File is used.
type File struct {
	r        io.ReaderAt
	tensors  map[string]*pyTensor
	names    []string
	storages map[string]storageLoc
	globals  []string // every global the pickles referenced (all allowed)
}

// Open checks the checkpoint held in r (size bytes): the format
// (zip or legacy), the pickle, every tensor against its storage and every
// storage against the bytes in the file. Errors are *Error, or an I/O
// error from r.
func Open(r io.ReaderAt, size int64, lim Limits) (*File, error) {
	lim = lim.withDefaults()
	var magic [4]byte
	if size < 4 {
		return nil, pickleErr(-1, "file of %d bytes is not a torch.save checkpoint", size)
	}
	if _, err := r.ReadAt(magic[:], 0); err != nil && err != io.EOF {
		return nil, err
	}
	switch {
	case string(magic[:]) == "PK\x03\x04":
		return openTorchZip(r, size, lim)
	case magic[0] == opProto:
		return openTorchLegacy(r, size, lim)
	}
	return nil, pickleErr(-1, "not a torch.save checkpoint (neither a zip nor a pickle)")
}

func openTorchZip(r io.ReaderAt, size int64, lim Limits) (*File, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, pickleErr(-1, "invalid zip: %v", err)
	}
	members := map[string]*zip.File{}
	var pkl *zip.File
	var prefix string
	for _, f := range zr.File {
		if _, dup := members[f.Name]; dup {
			return nil, pickleErr(-1, "zip member %s appears twice", shortQuote(f.Name))
		}
		members[f.Name] = f
		dir, base, ok := strings.Cut(f.Name, "/")
		if ok && base == "data.pkl" {
			if pkl != nil {
				return nil, pickleErr(-1, "two data.pkl members (%s and %s)", shortQuote(pkl.Name), shortQuote(f.Name))
			}
			pkl, prefix = f, dir
		}
	}
	if pkl == nil {
		return nil, pickleErr(-1, "zip without <archive>/data.pkl: not a torch.save checkpoint")
	}
	if _, ok := members[prefix+"/constants.pkl"]; ok {
		return nil, &Error{Member: pkl.Name, Offset: -1, Reason: "a TorchScript archive (it holds code); export the weights with torch.save(model.state_dict())"}
	}
	if bo, ok := members[prefix+"/byteorder"]; ok {
		b, err := readMember(bo, 16)
		if err != nil {
			return nil, &Error{Member: bo.Name, Offset: -1, Reason: err.Error()}
		}
		if string(b) != "little" {
			return nil, &Error{Member: bo.Name, Offset: -1, Reason: fmt.Sprintf("byte order %s (only little-endian checkpoints are read)", shortQuote(string(b)))}
		}
	}
	data, err := readMember(pkl, lim.MaxBytes)
	if err != nil {
		return nil, &Error{Member: pkl.Name, Offset: -1, Reason: err.Error()}
	}
	m := newPickleMachine(lim)
	v, _, err := m.run(data, persistZip)
	tf := &File{r: r, globals: m.globals, storages: map[string]storageLoc{}}
	if err == nil {
		tf.tensors, err = stateDict(v)
	}
	if err != nil {
		return nil, inMember(err, pkl.Name)
	}
	for key, s := range m.storages {
		f, ok := members[prefix+"/data/"+key]
		if !ok {
			return nil, &Error{Member: pkl.Name, Offset: -1, Reason: fmt.Sprintf("storage %s has no member %s/data/%s", shortQuote(key), prefix, key)}
		}
		n := s.numel * s.typ.size
		// torch.save stores members uncompressed. Requiring that bounds every
		// storage by the file itself: a compressed member could claim any size.
		if f.Method != zip.Store {
			return nil, &Error{Member: f.Name, Offset: -1, Reason: fmt.Sprintf("compressed storage (method %d); torch.save writes them stored", f.Method)}
		}
		if f.UncompressedSize64 != uint64(n) || f.CompressedSize64 != uint64(n) {
			return nil, &Error{Member: f.Name, Offset: -1, Reason: fmt.Sprintf("storage holds %d bytes, the pickle declares %d elements of %s (%d bytes)", f.UncompressedSize64, s.numel, s.typ.name, n)}
		}
		off, err := f.DataOffset()
		if err != nil || off < 0 || off > size || n > size-off {
			return nil, &Error{Member: f.Name, Offset: -1, Reason: fmt.Sprintf("storage data lies outside the %d-byte file", size)}
		}
		tf.storages[key] = storageLoc{zf: f, n: n}
	}
	tf.finish()
	return tf, nil
}

// inMember records which zip member a pickle error is about.
func inMember(err error, member string) error {
	var pe *Error
	if errors.As(err, &pe) {
		pe.Member = member
		return pe
	}
	return &Error{Member: member, Offset: -1, Reason: err.Error()}
}

// readMember reads a whole zip member of at most max bytes; archive/zip
// checks its CRC on the way.
func readMember(f *zip.File, max int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, fmt.Errorf("member of %d bytes exceeds the %d-byte limit", f.UncompressedSize64, max)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("member exceeds the %d-byte limit", max)
	}
	return b, nil
}

// legacyMagic is the big integer torch's pre-1.6 format starts with.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// openTorchLegacy reads the pre-1.6 format: pickles of the magic number, the
// protocol version (1001), the system info, the state dict and the list of
// storage keys, then each storage in key order as an int64 element count and
// its bytes.
func openTorchLegacy(r io.ReaderAt, size int64, lim Limits) (*File, error) {
	head := make([]byte, min(size, lim.MaxBytes))
	if n, err := r.ReadAt(head, 0); n != len(head) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	m := newPickleMachine(lim)
	pos := 0
	next := func(mode persistentMode) (any, error) {
		v, n, err := m.run(head[pos:], mode)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) && pe.Offset >= 0 {
				pe.Offset += int64(pos) // offsets in the file
			}
			return nil, err
		}
		pos += n
		return v, nil
	}
	v, err := next(persistNone)
	if err != nil {
		return nil, err
	}
	if b, ok := v.(*big.Int); !ok || b.Cmp(legacyMagic) != 0 {
		return nil, pickleErr(0, "a pickle that does not start with torch's magic number: not a torch.save checkpoint")
	}
	if v, err = next(persistNone); err != nil {
		return nil, err
	}
	if n, ok := v.(int64); !ok || n != 1001 {
		return nil, pickleErr(pos, "legacy protocol version %s, want 1001", pyDescribe(v))
	}
	if v, err = next(persistNone); err != nil {
		return nil, err
	}
	info, ok := v.(*pyDict)
	if !ok {
		return nil, pickleErr(pos, "legacy system info is a %s, want a dict", pyTypeName(v))
	}
	if i, ok := info.index["little_endian"]; ok && info.vals[i] != true {
		return nil, pickleErr(pos, "checkpoint written on a big-endian machine (only little-endian is read)")
	}
	mainAt := pos
	if v, err = next(persistLegacy); err != nil {
		return nil, err
	}
	tensors, err := stateDict(v)
	if err != nil {
		return nil, pickleErr(mainAt, "%v", err)
	}
	keysAt := pos
	if v, err = next(persistNone); err != nil {
		return nil, err
	}
	list, ok := v.(*pyList)
	if !ok {
		return nil, pickleErr(keysAt, "legacy storage key list is a %s", pyTypeName(v))
	}
	tf := &File{r: r, tensors: tensors, globals: m.globals, storages: map[string]storageLoc{}}
	off := int64(pos)
	for _, k := range list.items {
		key, ok := k.(string)
		if !ok {
			return nil, pickleErr(keysAt, "legacy storage key is a %s", pyTypeName(k))
		}
		s, ok := m.storages[key]
		if !ok {
			return nil, pickleErr(keysAt, "storage %s is listed but no tensor uses it", shortQuote(key))
		}
		if _, dup := tf.storages[key]; dup {
			return nil, pickleErr(keysAt, "storage %s listed twice", shortQuote(key))
		}
		var hdr [8]byte
		if off > size-8 {
			return nil, pickleErr(-1, "file ends before storage %s", shortQuote(key))
		}
		if n, err := r.ReadAt(hdr[:], off); n != len(hdr) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if got := int64(binary.LittleEndian.Uint64(hdr[:])); got != s.numel {
			return nil, pickleErr(-1, "storage %s at byte %d holds %d elements, the pickle declares %d", shortQuote(key), off, got, s.numel)
		}
		n := s.numel * s.typ.size
		if n > size-off-8 {
			return nil, pickleErr(-1, "storage %s (%d bytes) runs past the end of the file", shortQuote(key), n)
		}
		tf.storages[key] = storageLoc{off: off + 8, n: n}
		off += 8 + n
	}
	if len(tf.storages) != len(m.storages) {
		return nil, pickleErr(keysAt, "%d storages are used but %d listed", len(m.storages), len(tf.storages))
	}
	if off != size {
		return nil, pickleErr(-1, "%d bytes after the last storage", size-off)
	}
	tf.finish()
	return tf, nil
}

func (tf *File) finish() {
	for name := range tf.tensors {
		tf.names = append(tf.names, name)
	}
	sort.Strings(tf.names)
}

// Names returns the names of the file's tensors, sorted. The slice is the
// caller's.
func (tf *File) Names() []string { return slices.Clone(tf.names) }

// readStorage returns a storage's bytes.
func (tf *File) readStorage(s *pyStorage) ([]byte, error) {
	loc := tf.storages[s.key]
	buf := make([]byte, loc.n) // bounded by the file: checked in Open
	if loc.zf == nil {
		if n, err := tf.r.ReadAt(buf, loc.off); n != len(buf) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return buf, nil
	}
	rc, err := loc.zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, err
	}
	// Reading on to EOF is what makes archive/zip compare the CRC.
	if n, err := rc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("storage longer than declared")
		}
		return nil, err
	}
	return buf, nil
}

// Float32s returns the named tensor's values as float32, in row-major order,
// and its shape. Integer and bool tensors are refused, as for safetensors.
func (tf *File) Float32s(name string) ([]float32, []int64, error) {
	t, ok := tf.tensors[name]
	if !ok {
		return nil, nil, fmt.Errorf("no tensor %s", shortQuote(name))
	}
	shape := append([]int64(nil), t.size...)
	if t.storage.typ.decode == nil {
		return nil, shape, fmt.Errorf("dtype %s is not a float type", strings.TrimSuffix(t.storage.typ.name, "Storage"))
	}
	n, err := t.numel()
	if err != nil {
		return nil, shape, err
	}
	raw, err := tf.readStorage(t.storage)
	if err != nil {
		return nil, shape, fmt.Errorf("reading storage %s: %w", shortQuote(t.storage.key), err)
	}
	all := make([]float32, t.storage.numel)
	t.storage.typ.decode(all, raw)
	out := make([]float32, n)
	if n == 0 {
		return out, shape, nil
	}
	// Walk the view with an index counter; check() guaranteed every
	// position lies inside the storage.
	idx := make([]int64, len(t.size))
	pos := t.offset
	for i := range out {
		out[i] = all[pos]
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			pos += t.stride[d]
			if idx[d] < t.size[d] {
				break
			}
			pos -= idx[d] * t.stride[d]
			idx[d] = 0
		}
	}
	return out, shape, nil
}
