package model

// #include <malloc.h>
import "C"

import (
	"os"
	"strings"
	"unsafe"
)

// libtorch allocates every intermediate tensor with malloc. Left to its
// defaults, glibc returns a freed block of more than 128 KiB (or, once its
// dynamic threshold has grown, 32 MiB) to the kernel, and gives back the top
// of the heap whenever more than twice that is free there; the next forward
// maps the same memory again, and its pages fault in one by one on first
// touch. Without those faults int8 inference at batch 32 runs 1.16× faster
// (BENCHMARKS.md); ONNX Runtime avoids them with its own arena.
//
// So the process keeps its freed memory for reuse: blocks up to 32 MiB (the
// ceiling glibc's own dynamic threshold grows to; larger blocks, such as the
// 47 MB gradient of MiniLM's word embeddings, stay fresh mappings, since a
// thread's heap holds at most 64 MiB) come from the heap, and the heap's top
// is trimmed only when more than trimThreshold is free there. Peak RSS is
// what the largest step needs either way, plus a few percent; what changes
// is that the memory stays mapped between steps (BENCHMARKS.md, Compression:
// "the allocator kept warm").
const (
	mmapThreshold = 32 << 20
	trimThreshold = 256 << 20
)

// mallocTuned says whether init set the thresholds; mallocSetting says,
// for doctor, what the process runs with.
var (
	mallocTuned   bool
	mallocSetting string
)

func init() {
	if t := os.Getenv("GLIBC_TUNABLES"); strings.Contains(t, "glibc.malloc.") {
		mallocSetting = "the user's GLIBC_TUNABLES (" + t + ")"
		return
	}
	// mallopt returns 1 on success; a glibc that refuses a value keeps its
	// default, which is slower but correct, so the result only feeds doctor.
	ok := C.mallopt(C.M_MMAP_THRESHOLD, C.int(mmapThreshold)) == 1
	ok = C.mallopt(C.M_TRIM_THRESHOLD, C.int(trimThreshold)) == 1 && ok
	mallocTuned = ok
	mallocSetting = "freed memory kept for reuse (mmap threshold 32 MiB, trim threshold 256 MiB)"
	if !ok {
		mallocSetting = "glibc defaults (mallopt refused the thresholds)"
	}
}

// MallocTuning describes the allocator settings of this process, for doctor.
func MallocTuning() string { return mallocSetting }

// largeBlockProbe allocates and frees one block of size bytes and reports
// whether glibc served it by mmap and whether the freed memory stayed in
// the process (not trimmed or unmapped): the behaviour init sets, measured
// rather than assumed (TestMallocKeepsLargeBlocks).
func largeBlockProbe(size int) (mmapped, kept bool) {
	before := C.mallinfo2()
	p := C.malloc(C.size_t(size))
	if p == nil {
		return false, false
	}
	// Touch every page, so that a trim would have resident memory to give back.
	b := unsafe.Slice((*byte)(p), size)
	for i := 0; i < size; i += 4096 {
		b[i] = 1
	}
	during := C.mallinfo2()
	C.free(p)
	after := C.mallinfo2()
	mmapped = during.hblks > before.hblks
	kept = !mmapped && after.arena >= during.arena && after.fordblks >= C.size_t(size)
	return mmapped, kept
}
