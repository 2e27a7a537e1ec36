package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"sync/atomic"
)

// Default limits. They are orders of magnitude above what real checkpoints
// need (MiniLM: an 11 KB header, 104 tensors, rank 2) and low enough that a
// hostile header cannot make the reader hold more than a few hundred MB.
const (
	// DefaultMaxHeaderSize matches the reference implementation's limit.
	DefaultMaxHeaderSize = 100_000_000
	DefaultMaxTensors    = 100_000
	// DefaultMaxRank is numpy 1.x's limit on array dimensions.
	DefaultMaxRank = 32
)

// Options bounds what the reader accepts. A zero or negative field means the
// default; the limits cannot be switched off.
type Options struct {
	// MaxHeaderSize is the largest JSON header, in bytes, the reader will
	// load. The header is read whole, so this bounds the reader's memory.
	MaxHeaderSize int64
	// MaxTensors is the largest number of tensors a header may declare.
	MaxTensors int
	// MaxRank is the largest number of dimensions a tensor may have.
	MaxRank int
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.MaxHeaderSize <= 0 {
		r.MaxHeaderSize = DefaultMaxHeaderSize
	}
	if r.MaxTensors <= 0 {
		r.MaxTensors = DefaultMaxTensors
	}
	if r.MaxRank <= 0 {
		r.MaxRank = DefaultMaxRank
	}
	return r
}

// FormatError reports a file that is malformed or exceeds a limit.
type FormatError struct {
	// Tensor names the offending tensor, or is empty when the problem is
	// not tied to one (header length, JSON syntax, trailing bytes).
	Tensor string
	// Reason says what is wrong, in words.
	Reason string
}

func (e *FormatError) Error() string {
	if e.Tensor == "" {
		return "safetensors: " + e.Reason
	}
	return "safetensors: tensor " + truncQuote(e.Tensor) + ": " + e.Reason
}

func formatErr(tensor, format string, args ...any) error {
	return &FormatError{Tensor: tensor, Reason: fmt.Sprintf(format, args...)}
}

var (
	// ErrNotFound is returned (wrapped) when a tensor name is not in the file.
	ErrNotFound = errors.New("safetensors: tensor not found")
	// ErrClosed is returned by reads after Close.
	ErrClosed = errors.New("safetensors: file already closed")
)

// TensorInfo describes one tensor as declared in the header.
type TensorInfo struct {
	DType DType
	// Shape is the size of each dimension, outermost first; an empty shape
	// is a scalar holding one element.
	Shape []int64
	// Offsets are the [begin, end) byte offsets of the tensor's data,
	// relative to the start of the data buffer that follows the header.
	Offsets [2]int64
}

// NumElements returns the number of elements (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// NumBytes returns the size of the tensor's data in bytes.
func (t TensorInfo) NumBytes() int64 { return t.Offsets[1] - t.Offsets[0] }

// File is an open safetensors file whose header has been fully validated.
// Its methods are safe for concurrent use, as long as the underlying
// io.ReaderAt is (an *os.File is).
type File struct {
	r        io.ReaderAt
	closer   io.Closer // nil when the caller owns r
	base     int64     // file offset of the data buffer: 8 + header length
	tensors  map[string]TensorInfo
	names    []string
	metadata map[string]string
	closed   atomic.Bool
}

// Open opens and validates the safetensors file at path. opts may be nil for
// the default limits. The caller must Close the returned File.
func Open(path string, opts *Options) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// The size of a pipe or device says nothing about its content, and every
	// check below is against the size.
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("safetensors: %s is not a regular file", path)
	}
	sf, err := ReadFrom(f, st.Size(), opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sf.closer = f
	return sf, nil
}

// ReadFrom validates the safetensors file held in r, which must contain
// exactly size bytes; that lets the data come from anywhere that supports
// random access, such as a cloud storage object reader. size must be the
// true size: every limit is checked against it. opts may be nil for the
// default limits. Close on the returned File does not close r.
func ReadFrom(r io.ReaderAt, size int64, opts *Options) (*File, error) {
	o := opts.withDefaults()
	if size < 8 {
		return nil, formatErr("", "file is %d bytes, too small to hold the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readFullAt(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(o.MaxHeaderSize) {
		return nil, formatErr("", "header length %d exceeds the %d-byte limit (Options.MaxHeaderSize)", n, o.MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, formatErr("", "header length %d exceeds the %d bytes that follow it in the file", n, size-8)
	}
	raw, err := readHeader(r, int64(n))
	if err != nil {
		return nil, fmt.Errorf("safetensors: reading header: %w", err)
	}
	base := 8 + int64(n)
	h, err := parseHeader(raw, size-base, o)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(h.tensors))
	for name := range h.tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	return &File{r: r, base: base, tensors: h.tensors, names: names, metadata: h.metadata}, nil
}

// readHeader reads n bytes at offset 8, growing the buffer as data actually
// arrives: should the caller's size be wrong, a short source costs at most
// twice what it really holds rather than the size claimed in the file.
func readHeader(r io.ReaderAt, n int64) ([]byte, error) {
	const chunk = 1 << 20
	buf := make([]byte, 0, min(n, chunk))
	for int64(len(buf)) < n {
		want := int(min(n-int64(len(buf)), chunk))
		buf = slices.Grow(buf, want)
		if err := readFullAt(r, buf[len(buf):len(buf)+want], 8+int64(len(buf))); err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+want]
	}
	return buf, nil
}

// readFullAt fills p from r at off. io.ReaderAt may return io.EOF together
// with a full buffer at the end of the source; that is success.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Names returns the tensor names in sorted order. The slice is a copy.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info returns the header entry for name, and false if there is none.
func (f *File) Info(name string) (TensorInfo, bool) {
	ti, ok := f.tensors[name]
	ti.Shape = slices.Clone(ti.Shape) // callers must not alter our copy
	return ti, ok
}

// Metadata returns a copy of the "__metadata__" map, or nil if the file has
// none.
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

func (f *File) lookup(name string) (TensorInfo, error) {
	if f.closed.Load() {
		return TensorInfo{}, ErrClosed
	}
	ti, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %s", ErrNotFound, truncQuote(name))
	}
	return ti, nil
}

// Raw returns a fresh copy of the tensor's bytes, little-endian, row-major.
func (f *File) Raw(name string) ([]byte, error) {
	ti, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if err := f.probeEnd(name, ti); err != nil {
		return nil, err
	}
	// The range was checked against the size given to ReadFrom when the
	// header was parsed, and probeEnd has seen its last byte, so this
	// allocation is bounded by the real source.
	buf := make([]byte, ti.NumBytes())
	if err := readFullAt(f.r, buf, f.base+ti.Offsets[0]); err != nil {
		return nil, fmt.Errorf("safetensors: reading tensor %s: %w", truncQuote(name), err)
	}
	return buf, nil
}

// Float32 returns the tensor's values converted to float32. F32, F16 and
// BF16 convert exactly (including subnormals, infinities and NaNs); F64 is
// rounded to the nearest float32, overflowing to ±Inf. Integer and boolean
// tensors are refused: use Raw.
func (f *File) Float32(name string) ([]float32, error) {
	ti, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !ti.DType.IsFloat() {
		return nil, fmt.Errorf("safetensors: tensor %s has dtype %s, which Float32 does not convert; use Raw", truncQuote(name), ti.DType)
	}
	if err := f.probeEnd(name, ti); err != nil {
		return nil, err
	}
	es := int64(ti.DType.Size())
	out := make([]float32, ti.NumBytes()/es)
	// Convert in chunks so that a large tensor costs its float32 result plus
	// one chunk, not the result plus a full copy of its raw bytes.
	const chunk = 1 << 20 // a multiple of every element size
	buf := make([]byte, min(ti.NumBytes(), chunk))
	for done := int64(0); done < ti.NumBytes(); {
		p := buf[:min(ti.NumBytes()-done, chunk)]
		if err := readFullAt(f.r, p, f.base+ti.Offsets[0]+done); err != nil {
			return nil, fmt.Errorf("safetensors: reading tensor %s: %w", truncQuote(name), err)
		}
		decodeFloats(out[done/es:], p, ti.DType)
		done += int64(len(p))
	}
	return out, nil
}

// probeLimit is the tensor size above which Raw and Float32 first check
// that the source really holds the tensor's last byte. Smaller buffers are
// allocated straight away: one extra read per tensor would cost more (on a
// cloud object reader, a round trip) than the memory at stake.
const probeLimit = 1 << 20

// probeEnd reads the last byte of a large tensor before its buffer is
// allocated. ReadFrom trusts the size it is given; should a source be shorter
// than claimed, a header declaring a terabyte tensor must cost one failed
// read, not a terabyte allocation.
func (f *File) probeEnd(name string, ti TensorInfo) error {
	if ti.NumBytes() <= probeLimit {
		return nil
	}
	var b [1]byte
	if err := readFullAt(f.r, b[:], f.base+ti.Offsets[1]-1); err != nil {
		return fmt.Errorf("safetensors: reading tensor %s: %w", truncQuote(name), err)
	}
	return nil
}

// decodeFloats converts little-endian src of dtype dt into dst.
func decodeFloats(dst []float32, src []byte, dt DType) {
	switch dt {
	case F32:
		for i := range len(src) / 4 {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F64:
		for i := range len(src) / 8 {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case F16:
		for i := range len(src) / 2 {
			dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range len(src) / 2 {
			dst[i] = BF16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
}

// Close releases the file opened by Open. For a File from ReadFrom it only
// marks the File closed. Calling Close twice is harmless.
func (f *File) Close() error {
	if f.closed.Swap(true) || f.closer == nil {
		return nil
	}
	return f.closer.Close()
}
