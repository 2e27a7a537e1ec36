package safetensors

// DType is an element type as spelled in the safetensors header ("F32",
// "BF16", ...). It is a string rather than an enum so that an unknown dtype
// read from a file can still be named in an error message.
type DType string

// The dtypes this package reads and writes.
const (
	Bool DType = "BOOL"
	U8   DType = "U8"
	I8   DType = "I8"
	I16  DType = "I16"
	U16  DType = "U16"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I32  DType = "I32"
	U32  DType = "U32"
	F32  DType = "F32"
	F64  DType = "F64"
	I64  DType = "I64"
	U64  DType = "U64"
)

// dtypeInfo holds the element size and the position of the dtype in the
// reference implementation's Dtype enum. The writer orders tensors by
// decreasing rank (then name) exactly like the reference writer does; since
// the enum is declared in increasing alignment order, that keeps every tensor
// aligned to its element size and makes our output byte-identical to Python's.
type dtypeInfo struct {
	size int
	rank int
}

var dtypes = map[DType]dtypeInfo{
	Bool: {1, 0},
	U8:   {1, 4},
	I8:   {1, 5},
	I16:  {2, 11},
	U16:  {2, 12},
	F16:  {2, 13},
	BF16: {2, 14},
	I32:  {4, 15},
	U32:  {4, 16},
	F32:  {4, 17},
	F64:  {8, 19},
	I64:  {8, 20},
	U64:  {8, 21},
}

// knownUnsupported are dtypes the reference implementation defines but this
// package refuses. Listing them lets the error say "unsupported" rather than
// "unknown", which tells the user the file is fine and the reader is not.
var knownUnsupported = map[DType]bool{
	"F4": true, "F6_E2M3": true, "F6_E3M2": true,
	"F8_E5M2": true, "F8_E4M3": true, "F8_E8M0": true,
	"F8_E4M3FNUZ": true, "F8_E5M2FNUZ": true, "C64": true,
}

// Size returns the size of one element in bytes, or 0 if the dtype is not
// supported by this package.
func (d DType) Size() int { return dtypes[d].size }

// Supported reports whether this package can read and write the dtype.
func (d DType) Supported() bool { _, ok := dtypes[d]; return ok }

// IsFloat reports whether the dtype is a floating-point type that
// (*File).Float32 can convert.
func (d DType) IsFloat() bool {
	switch d {
	case F16, BF16, F32, F64:
		return true
	}
	return false
}
