package model

import "testing"

// TestMallocKeepsLargeBlocks: with the thresholds init sets, an 8 MiB block
// (about an int8 forward's largest intermediate: 6 MB for the FFN at batch
// 32 × 32 tokens) comes from the
// heap and its memory stays in the process after free; under glibc's
// defaults the first such block is an mmap that free unmaps.
func TestMallocKeepsLargeBlocks(t *testing.T) {
	if !mallocTuned {
		t.Skipf("allocator not tuned: %s", MallocTuning())
	}
	mmapped, kept := largeBlockProbe(8 << 20)
	if mmapped {
		t.Fatal("an 8 MiB block was mmapped: the mmap threshold was not raised")
	}
	if !kept {
		t.Fatal("an 8 MiB block's memory left the heap on free: the trim threshold was not raised")
	}
}
