package safetensors

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"unicode/utf8"
)

// Tensor is one tensor to write.
type Tensor struct {
	Name  string
	DType DType
	// Shape is the size of each dimension, outermost first; nil or empty
	// for a scalar.
	Shape []int64
	// Data is the little-endian, row-major content; its length must be
	// exactly the element size times the element count.
	Data []byte
}

// Tensor returns the named tensor with a fresh copy of its bytes, ready to
// be modified and passed to Write.
func (f *File) Tensor(name string) (Tensor, error) {
	data, err := f.Raw(name)
	if err != nil {
		return Tensor{}, err
	}
	ti, _ := f.Info(name)
	return Tensor{Name: name, DType: ti.DType, Shape: ti.Shape, Data: data}, nil
}

// FromFloat32 encodes values as a tensor of dtype F32, F64, F16 or BF16.
// F16 and BF16 round to nearest, ties to even (see Float32ToF16 and
// Float32ToBF16). len(values) must equal the element count of shape.
func FromFloat32(name string, dt DType, shape []int64, values []float32) (Tensor, error) {
	if !dt.IsFloat() {
		return Tensor{}, fmt.Errorf("safetensors: FromFloat32: %s is not a floating-point dtype", dt)
	}
	n, err := byteSize(Bool, shape) // element count: Bool is one byte each
	if err != nil {
		return Tensor{}, fmt.Errorf("safetensors: FromFloat32: tensor %q: shape %v: %v", name, shape, err)
	}
	if n != int64(len(values)) {
		return Tensor{}, fmt.Errorf("safetensors: FromFloat32: tensor %q: shape %v holds %d elements, got %d values", name, shape, n, len(values))
	}
	data := make([]byte, len(values)*dt.Size())
	switch dt {
	case F32:
		for i, v := range values {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
	case F64:
		for i, v := range values {
			binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(float64(v)))
		}
	case F16:
		for i, v := range values {
			binary.LittleEndian.PutUint16(data[2*i:], Float32ToF16(v))
		}
	case BF16:
		for i, v := range values {
			binary.LittleEndian.PutUint16(data[2*i:], Float32ToBF16(v))
		}
	}
	return Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), Data: data}, nil
}

// Write writes tensors and metadata (which may be nil) to w in safetensors
// format. Everything is validated before the first byte is written, so an
// invalid argument never leaves a partial file behind.
//
// The layout is the reference writer's: tensors sorted by decreasing dtype
// alignment, then by name, so each tensor's data starts at a multiple of its
// element size; the header lists them in that order after "__metadata__"
// (whose keys are sorted; an empty map is omitted), and is padded with
// spaces to a multiple of 8 bytes.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, order, err := prepare(tensors, metadata)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, i := range order {
		if len(tensors[i].Data) == 0 {
			continue
		}
		if _, err := w.Write(tensors[i].Data); err != nil {
			return err
		}
	}
	return nil
}

// prepare validates the input and returns the padded header and the order in
// which to write the tensors' data.
func prepare(tensors []Tensor, metadata map[string]string) ([]byte, []int, error) {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if err := checkWritable(t); err != nil {
			return nil, nil, err
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("safetensors: write: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
	}
	keys := make([]string, 0, len(metadata))
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("safetensors: write: metadata %q: key and value must be valid UTF-8", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)

	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		ta, tb := tensors[order[a]], tensors[order[b]]
		ra, rb := dtypes[ta.DType].rank, dtypes[tb.DType].rank
		if ra != rb {
			return ra > rb
		}
		return ta.Name < tb.Name
	})

	// Hand-written rather than encoding/json so that the bytes match the
	// reference (serde_json) exactly: no HTML escaping of <, > and &, and the
	// same escapes for control characters.
	h := []byte{'{'}
	if len(keys) > 0 {
		h = appendJSONString(h, metadataKey)
		h = append(h, ':', '{')
		for i, k := range keys {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendJSONString(h, k)
			h = append(h, ':')
			h = appendJSONString(h, metadata[k])
		}
		h = append(h, '}')
	}
	var off int64
	for n, i := range order {
		t := tensors[i]
		if n > 0 || len(keys) > 0 {
			h = append(h, ',')
		}
		h = appendJSONString(h, t.Name)
		h = append(h, `:{"dtype":`...)
		h = appendJSONString(h, string(t.DType))
		h = append(h, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				h = append(h, ',')
			}
			h = strconv.AppendInt(h, d, 10)
		}
		h = append(h, `],"data_offsets":[`...)
		h = strconv.AppendInt(h, off, 10)
		h = append(h, ',')
		off += int64(len(t.Data))
		h = strconv.AppendInt(h, off, 10)
		h = append(h, ']', '}')
	}
	h = append(h, '}')
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	if len(h) > DefaultMaxHeaderSize {
		return nil, nil, fmt.Errorf("safetensors: write: header is %d bytes, more than readers accept (%d)", len(h), DefaultMaxHeaderSize)
	}
	return h, order, nil
}

func checkWritable(t Tensor) error {
	if !utf8.ValidString(t.Name) {
		return fmt.Errorf("safetensors: write: tensor %q: name is not valid UTF-8", t.Name)
	}
	if t.Name == metadataKey {
		return fmt.Errorf("safetensors: write: %q is reserved and cannot name a tensor", metadataKey)
	}
	if !t.DType.Supported() {
		return fmt.Errorf("safetensors: write: tensor %q: unsupported dtype %q", t.Name, string(t.DType))
	}
	nbytes, err := byteSize(t.DType, t.Shape)
	if err != nil {
		return fmt.Errorf("safetensors: write: tensor %q: shape %v: %v", t.Name, t.Shape, err)
	}
	if nbytes != int64(len(t.Data)) {
		return fmt.Errorf("safetensors: write: tensor %q: shape %v of %s needs %d bytes, data has %d", t.Name, t.Shape, t.DType, nbytes, len(t.Data))
	}
	return nil
}

// appendJSONString appends s as a JSON string escaped the way serde_json
// does: only the quote, the backslash and control characters, the common
// ones with their short escapes and the rest as lowercase \u00XX.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}

// WriteFile writes a safetensors file at path atomically: the data goes to a
// temporary file in the same directory, which is fsynced and then renamed
// over path, and the directory is fsynced so the rename survives a crash.
// Readers therefore see either the old file or the complete new one, never a
// torn checkpoint. The file is created with mode 0644.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	// Validate before creating anything so bad input leaves no temp file.
	if _, _, err := prepare(tensors, metadata); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = Write(bw, tensors, metadata); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		// The new file is in place; only its durability is in doubt, so
		// report it without removing anything.
		return fmt.Errorf("safetensors: %s written, but syncing its directory failed: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable. Some file systems cannot fsync a
// directory; there the rename is as durable as it gets, so that is not an
// error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}
