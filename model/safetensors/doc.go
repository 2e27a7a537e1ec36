// Package safetensors reads and writes the Hugging Face safetensors
// checkpoint format in pure Go.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// UTF-8 JSON describing every tensor (dtype, shape and byte range) plus an
// optional "__metadata__" string map, and then one contiguous byte buffer
// holding the tensors back to back in little-endian, row-major order.
//
// # Reading untrusted files
//
// Checkpoints arrive from the network, so the reader treats every file as
// hostile. Open and ReadFrom validate the whole header before any tensor data
// is touched, and refuse a file (with a *FormatError naming the tensor and the
// problem) when:
//
//   - the header length is larger than the file or than Options.MaxHeaderSize;
//   - the header is not valid UTF-8, not a single JSON object, or repeats a
//     key (encoding/json would silently keep the last one, which lets two
//     tools disagree on what a file contains);
//   - there are more tensors than Options.MaxTensors, or a shape has more
//     dimensions than Options.MaxRank, or a negative dimension;
//   - the element count or byte size of a tensor overflows int64, or does not
//     match its data_offsets;
//   - the data ranges overlap, leave gaps, or do not end exactly at the end of
//     the file (the same rule the reference implementation enforces).
//
// The reader never allocates on the strength of a number in the header alone:
// the header buffer is bounded by the real file size and the limit, and a
// tensor buffer is only allocated after its range has been proven to lie
// inside the file. Library code never panics on malformed input; FuzzOpen
// exercises that.
//
// # Writing
//
// Write and WriteFile produce files that the reference implementation (and so
// Python's safetensors, transformers and torch) load. The layout follows the
// reference writer exactly: tensors ordered by decreasing dtype alignment and
// then by name, the header written as compact JSON in that same order with
// "__metadata__" first, and padded with spaces to a multiple of 8 bytes so that
// every tensor starts at an offset aligned to its element size. For the same
// tensors and metadata (metadata keys inserted in sorted order) the output is
// byte-identical to safetensors.numpy.save; see NOTES.md.
//
// Supported dtypes are BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64,
// I64 and U64. The 8-bit, 6-bit and 4-bit float types and C64 are recognised
// but refused with an explicit "unsupported dtype" error, because their
// packing rules are still moving upstream and nothing in beamtune uses them.
//
// Imports: the standard library only (no gotch, no cgo); model and
// model/pickle use it, and so can any tool.
package safetensors
