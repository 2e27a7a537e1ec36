package dataset

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestShardRowsRoundTripInChunks: ReadShardRows reads a shard in chunks of
// 1,024 rows; every row of a 2,500-row shard (with teacher logits and [CLS]
// vectors, as in a distillation dataset) must come back whole and in order.
func TestShardRowsRoundTripInChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var want []ShardRow
	for i := range 2500 {
		r := ShardRow{ID: fmt.Sprintf("row-%04d", i), Label: int32(i % 2), Length: int32(2 + i%30)}
		for range r.Length {
			r.InputIDs = append(r.InputIDs, int32(rng.IntN(30000)))
		}
		r.TeacherLogits = []float32{rng.Float32(), rng.Float32()}
		for range 3 * 8 {
			r.TeacherHidden = append(r.TeacherHidden, rng.Float32())
		}
		want = append(want, r)
	}
	var buf strings.Builder
	if err := WriteShardRows(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadShardRows([]byte(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Label != w.Label || g.Length != w.Length || fmt.Sprint(g.InputIDs) != fmt.Sprint(w.InputIDs) ||
			fmt.Sprint(g.TeacherLogits) != fmt.Sprint(w.TeacherLogits) || fmt.Sprint(g.TeacherHidden) != fmt.Sprint(w.TeacherHidden) {
			t.Fatalf("row %d differs:\n got %+v\nwant %+v", i, g, w)
		}
	}
}
