package safetensors

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"os"
	"reflect"
	"testing"
)

const miniLMPath = "/root/.cache/beamtune/models/all-MiniLM-L6-v2/model.safetensors"

// The expected values below were measured with Python (safetensors 0.8.0,
// numpy 2.4.6) on the same file, whose SHA-256 is miniLMSHA256:
// safetensors.numpy.load_file gives 104 tensors, and re-saving them with
// safetensors.numpy.save reproduces the file byte for byte.
const miniLMSHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

func openMiniLM(t *testing.T) *File {
	t.Helper()
	if _, err := os.Stat(miniLMPath); err != nil {
		t.Skipf("MiniLM checkpoint not available (%v); download sentence-transformers/all-MiniLM-L6-v2 to %s to run this test", err, miniLMPath)
	}
	f, err := Open(miniLMPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestMiniLM(t *testing.T) {
	f := openMiniLM(t)
	if n := len(f.Names()); n != 104 {
		t.Errorf("%d tensors, want 104", n)
	}
	if md := f.Metadata(); !reflect.DeepEqual(md, map[string]string{"format": "pt"}) {
		t.Errorf("Metadata() = %v", md)
	}
	shapes := map[string]struct {
		dt    DType
		shape []int64
	}{
		"embeddings.word_embeddings.weight":           {F32, []int64{30522, 384}},
		"embeddings.position_ids":                     {I64, []int64{1, 512}},
		"embeddings.LayerNorm.weight":                 {F32, []int64{384}},
		"encoder.layer.0.attention.self.query.weight": {F32, []int64{384, 384}},
		"encoder.layer.5.output.dense.weight":         {F32, []int64{384, 1536}},
		"pooler.dense.bias":                           {F32, []int64{384}},
	}
	for name, want := range shapes {
		info, ok := f.Info(name)
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if info.DType != want.dt || !reflect.DeepEqual(info.Shape, want.shape) {
			t.Errorf("%s: %s %v, want %s %v", name, info.DType, info.Shape, want.dt, want.shape)
		}
	}

	emb, err := f.Float32("embeddings.word_embeddings.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(emb) != 30522*384 {
		t.Fatalf("%d values", len(emb))
	}
	for _, c := range []struct {
		row, col int
		bits     uint32
	}{{0, 0, 0xbca3c000}, {0, 1, 0xbb5f0000}, {100, 7, 0xbdf29f8c}, {30521, 383, 0x3b95c079}} {
		if got := math.Float32bits(emb[c.row*384+c.col]); got != c.bits {
			t.Errorf("word_embeddings[%d][%d] bits %#08x, want %#08x", c.row, c.col, got, c.bits)
		}
	}
	var sum float64
	for _, v := range emb {
		sum += float64(v)
	}
	// numpy sums pairwise, so allow for a different summation order.
	if want := 138.05072214923618; math.Abs(sum-want) > 1e-6 {
		t.Errorf("sum of word_embeddings = %.15g, want %.15g", sum, want)
	}
	ln, err := f.Float32("embeddings.LayerNorm.weight")
	if err != nil {
		t.Fatal(err)
	}
	for i, bits := range []uint32{0x3f19535e, 0x3f156678, 0x3f222fbf} {
		if got := math.Float32bits(ln[i]); got != bits {
			t.Errorf("LayerNorm.weight[%d] bits %#08x, want %#08x", i, got, bits)
		}
	}
	ids, err := f.Raw("embeddings.position_ids")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 512 {
		if v := int64(binary.LittleEndian.Uint64(ids[8*i:])); v != int64(i) {
			t.Fatalf("position_ids[%d] = %d", i, v)
		}
	}
}

// Reading every tensor and writing them back must reproduce the HF file
// exactly: the strongest evidence that the writer matches the reference.
func TestMiniLMRewriteIsByteIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("reads and hashes 90 MB")
	}
	f := openMiniLM(t)
	var ts []Tensor
	for _, name := range f.Names() {
		tn, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tn)
	}
	h := sha256.New()
	if err := Write(h, ts, f.Metadata()); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != miniLMSHA256 {
		t.Errorf("rewritten file SHA-256 %s, want the original's %s", got, miniLMSHA256)
	}
}
