package safetensors

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to ReadFrom. For every input it checks that
// the reader never panics, only fails with a *FormatError (the source is in
// memory, so there are no I/O errors), and allocates no more than a small
// multiple of the input while validating. For accepted inputs it checks that
// every tensor reads back with the size its header implies, and that
// writing the tensors and reading them again gives the same content.
func FuzzOpen(f *testing.F) {
	for _, c := range maliciousCases() {
		if len(c.file) < 4096 {
			f.Add(c.file)
		}
	}
	for _, name := range []string{"golden.safetensors", "golden_bf16.safetensors"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		sf, err := ReadFrom(bytes.NewReader(data), int64(len(data)), nil)
		runtime.ReadMemStats(&after)
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(64*len(data)+256<<10); got > limit {
			t.Fatalf("validating a %d-byte input allocated %d bytes", len(data), got)
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			return
		}
		defer sf.Close()

		var covered int64
		var ts []Tensor
		for _, name := range sf.Names() {
			info, ok := sf.Info(name)
			if !ok {
				t.Fatalf("Names lists %q but Info does not know it", name)
			}
			nbytes, err := byteSize(info.DType, info.Shape)
			if err != nil || nbytes != info.NumBytes() {
				t.Fatalf("%q: accepted with shape %v, %s, offsets %v", name, info.Shape, info.DType, info.Offsets)
			}
			covered += nbytes
			tn, err := sf.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(tn.Data)) != nbytes {
				t.Fatalf("%q: Raw returned %d bytes, want %d", name, len(tn.Data), nbytes)
			}
			if info.DType.IsFloat() {
				v, err := sf.Float32(name)
				if err != nil || int64(len(v)) != info.NumElements() {
					t.Fatalf("%q: Float32 = %d values, %v; want %d", name, len(v), err, info.NumElements())
				}
			}
			ts = append(ts, tn)
		}
		if covered != int64(len(data))-sf.base {
			t.Fatalf("tensors cover %d bytes of a %d-byte buffer", covered, int64(len(data))-sf.base)
		}

		// Whatever the reader accepts, the writer must be able to write and
		// the reader to read back unchanged.
		var buf bytes.Buffer
		if err := Write(&buf, ts, sf.Metadata()); err != nil {
			t.Fatalf("rewriting an accepted file: %v", err)
		}
		sf2, err := ReadFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil)
		if err != nil {
			t.Fatalf("reading a rewritten file: %v", err)
		}
		if !reflect.DeepEqual(sf.Names(), sf2.Names()) {
			t.Fatalf("names changed: %q -> %q", sf.Names(), sf2.Names())
		}
		if m1, m2 := sf.Metadata(), sf2.Metadata(); len(m1) != 0 || len(m2) != 0 {
			if !reflect.DeepEqual(m1, m2) {
				t.Fatalf("metadata changed: %q -> %q", m1, m2)
			}
		}
		for _, tn := range ts {
			tn2, err := sf2.Tensor(tn.Name)
			if err != nil {
				t.Fatal(err)
			}
			if tn.DType != tn2.DType || !reflect.DeepEqual(tn.Shape, tn2.Shape) || !bytes.Equal(tn.Data, tn2.Data) {
				t.Fatalf("%q changed: %s %v -> %s %v", tn.Name, tn.DType, tn.Shape, tn2.DType, tn2.Shape)
			}
		}
	})
}
