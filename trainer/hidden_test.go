package trainer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/sugarme/gotch"
)

func TestParseLayerMap(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []LayerPair
		err  string
	}{
		{in: "1:2,2:4,3:6", want: []LayerPair{{1, 2}, {2, 4}, {3, 6}}},
		{in: " 0 : 0 , 2:5", want: []LayerPair{{0, 0}, {2, 5}}},
		{in: "", err: "empty"},
		{in: "1-2", err: "not student:teacher"},
		{in: "1:x", err: "two hidden-state numbers"},
		{in: "-1:2", err: "two hidden-state numbers"},
		{in: "1:2,1:3", err: "mapped twice"},
	} {
		got, err := ParseLayerMap(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %v, %v; want %v", c.in, got, err, c.want)
		}
		if back, _ := ParseLayerMap(FormatLayerMap(got)); !reflect.DeepEqual(back, got) {
			t.Errorf("%q does not survive FormatLayerMap: %q", c.in, FormatLayerMap(got))
		}
	}
}

func TestDefaultLayerMap(t *testing.T) {
	for _, c := range []struct {
		layers        []int
		depth, tDepth int
		want          string
	}{
		{layers: []int{0, 2, 4}, tDepth: 6, want: "1:1,2:3,3:5"},
		{layers: []int{1, 3, 5}, tDepth: 6, want: "1:2,2:4,3:6"},
		{depth: 3, tDepth: 6, want: "1:2,2:4,3:6"},
		{depth: 4, tDepth: 6, want: "1:2,2:3,3:5,4:6"},
		{depth: 4, tDepth: 12, want: "1:3,2:6,3:9,4:12"},
		{depth: 2, tDepth: 2, want: "1:1,2:2"},
	} {
		if got := FormatLayerMap(DefaultLayerMap(c.layers, c.depth, c.tDepth)); got != c.want {
			t.Errorf("layers %v, depth %d of %d: %s, want %s", c.layers, c.depth, c.tDepth, got, c.want)
		}
	}
}

// distillDataset runs TeacherShard over every shard of a prepared dataset,
// caching the teacher's [CLS] vectors of hidden states layers, and writes the
// distillation manifest, as pipelines.RunDistill does on Beam.
func distillDataset(t *testing.T, data, teacher, out string, layers []int) *dataset.Manifest {
	t.Helper()
	ctx := context.Background()
	tm, _, err := model.Load(teacher, model.LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Free()
	score := func(rows *dataset.Rows) (EvalResult, error) { return EvaluateHidden(tm, rows, 64, layers) }
	man, err := dataset.ReadManifest(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	dm := *man
	dm.DataDir, dm.Shards, dm.TeacherHiddenLayers = "data-t", nil, layers
	for _, s := range man.Shards {
		x, err := TeacherShard(ctx, score, data, out, "data-t", s)
		if err != nil {
			t.Fatal(err)
		}
		dm.Shards = append(dm.Shards, x)
	}
	b, err := json.Marshal(dm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, dataset.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return &dm
}

// clsDistance is the mean squared distance between the student's [CLS]
// vector of hidden state studentLayer and the teacher's cached one (slot),
// over the validation rows: what the hidden-state loss drives down.
func clsDistance(t *testing.T, studentDir string, rows *dataset.Rows, studentLayer, slot, width int) float64 {
	t.Helper()
	m, _, err := model.Load(studentDir, model.LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	ev, err := EvaluateHidden(m, rows, 64, []int{studentLayer})
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	var n int
	for i := range ev.Hidden {
		tv := rows.Hidden[i][slot*width : (slot+1)*width]
		for k, v := range ev.Hidden[i] {
			d := float64(v - tv[k])
			sum += d * d
			n++
		}
	}
	return sum / float64(n)
}

// TestDistillHiddenStates covers the hidden-state loss end to end on a tiny
// model: the teacher's [CLS] vectors are cached by TeacherShard, a
// student cut from the teacher gets closer to them with the loss than
// without, a narrower student trains a projection that checkpoints keep and
// the exported folder does not, a run killed mid-way resumes bit for bit,
// and bad maps are refused with the reason.
func TestDistillHiddenStates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyDataset(t, data, 600, 128)

	tj := tinyJob(data, filepath.Join(dir, "teacher"))
	tj.Config.Epochs = 2
	tres, err := Train(ctx, tj, nil)
	if err != nil {
		t.Fatal(err)
	}
	teacher := tres.BestDir

	ddata := filepath.Join(dir, "distill-data")
	if err := os.MkdirAll(ddata, 0o755); err != nil {
		t.Fatal(err)
	}
	layers := []int{1, 2} // both layers of the 2-layer teacher
	man := distillDataset(t, data, teacher, ddata, layers)
	valid, err := dataset.LoadSplit(ctx, ddata, man, dataset.SplitValidation)
	if err != nil {
		t.Fatal(err)
	}
	const width = 32 // the tiny teacher's hidden size
	if !valid.HasHidden() || len(valid.Hidden[0]) != len(layers)*width {
		t.Fatalf("distillation rows carry %d teacher hidden values, want %d", len(valid.Hidden[0]), len(layers)*width)
	}

	student := func(name string, mod func(*Job)) Job {
		j := tinyJob(ddata, filepath.Join(dir, name))
		j.Init = teacher
		j.StudentLayers = []int{0}
		j.Config.Epochs = 2
		j.Config.Alpha = 0.5
		mod(&j)
		return j
	}

	// A one-layer student cut from the teacher, with and without the loss on
	// its layer-1 output against the teacher's layer 2.
	plain := student("plain", func(j *Job) {})
	withHidden := student("hidden", func(j *Job) { j.Config.HiddenMSE, j.Config.HiddenLayerMap = 5, "1:2" })
	// The same, streaming the distillation shards: teacher logits and
	// [CLS] vectors come with their rows.
	streamed := student("hidden-streamed", func(j *Job) {
		j.Config.HiddenMSE, j.Config.HiddenLayerMap, j.Config.Input = 5, "1:2", InputStream
	})
	var dist [3]float64
	for i, j := range []Job{plain, withHidden, streamed} {
		res, err := Train(ctx, j, nil)
		if err != nil {
			t.Fatalf("%s: %v", j.Output, err)
		}
		dist[i] = clsDistance(t, res.FinalDir, valid, 1, 1, width)
	}
	t.Logf("validation [CLS] distance to teacher layer 2: %.4f without the hidden loss, %.4f with it, %.4f with it streamed", dist[0], dist[1], dist[2])
	if !(dist[1] < 0.5*dist[0]) || !(dist[2] < 0.5*dist[0]) {
		t.Errorf("the hidden-state loss should pull the student's [CLS] vector towards the teacher's: distance %.4f with it (%.4f streamed), %.4f without", dist[1], dist[2], dist[0])
	}

	// A narrower student from its own checkpoint: 1 layer, width 16, so the
	// loss needs a learned 32x16 projection.
	cfg, err := model.LoadConfig(teacher)
	if err != nil {
		t.Fatal(err)
	}
	narrow := *cfg
	narrow.HiddenSize, narrow.IntermediateSize, narrow.NumHiddenLayers = 16, 32, 1
	sm, err := model.NewBert(&narrow, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	smallDir := filepath.Join(dir, "small-init")
	if err := sm.Export(smallDir, "", nil); err != nil {
		t.Fatal(err)
	}
	sm.Free()
	proj := func(name string) Job {
		return student(name, func(j *Job) {
			j.Init, j.StudentLayers = smallDir, nil
			j.Config.Epochs = 4
			j.Config.HiddenMSE, j.Config.HiddenLayerMap = 1, "1:2"
		})
	}
	ref := proj("projected")
	res, err := Train(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 76 {
		t.Fatalf("steps = %d, want 76", res.Steps)
	}
	ck, err := latestCheckpoint(ctx, ref.Output)
	if err != nil || ck == "" {
		t.Fatalf("no checkpoint in %s: %v", ref.Output, err)
	}
	ckWeights := finalWeights(t, ck)
	pw, ok := ckWeights[projectionName("", 0)]
	if !ok || len(pw) != 32*16 {
		t.Fatalf("checkpoint %s lacks the 32x16 projection (%d values)", ck, len(pw))
	}
	final := finalWeights(t, res.FinalDir)
	for n := range final {
		if strings.HasPrefix(n, "distill.") {
			t.Errorf("the exported student holds training-only tensor %s", n)
		}
	}
	if w := final["bert.encoder.layer.0.output.dense.weight"]; len(w) != 32*16 {
		t.Fatalf("exported student is not the 16-wide one: %d values in output.dense", len(w))
	}

	// Killed after the step-10 checkpoint and resumed: projection and
	// optimizer state come back, so the weights match bit for bit.
	killed := proj("projected-killed")
	killAfterCheckpoint(t, killed, 10)
	resumed, err := Train(ctx, killed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.Resumed {
		t.Fatal("the second run did not resume")
	}
	got := finalWeights(t, resumed.FinalDir)
	for name, w := range final {
		if !reflect.DeepEqual(got[name], w) {
			t.Fatalf("%s differs after a kill and resume", name)
		}
	}
	if last := finalWeights(t, mustLatest(t, killed.Output)); !reflect.DeepEqual(last[projectionName("", 0)], pw) {
		t.Errorf("the resumed run's projection differs from the uninterrupted run's")
	}

	// Bad configurations are refused with the reason.
	for _, c := range []struct {
		mod  func(*Job)
		want string
	}{
		{func(j *Job) { j.Config.HiddenMSE, j.Config.HiddenLayerMap = 1, "3:2" }, "the student has hidden states 0..1, not 3"},
		{func(j *Job) { j.Config.HiddenMSE, j.Config.HiddenLayerMap = 1, "1:0" }, "wants teacher hidden state 0"},
		{func(j *Job) { j.Config.HiddenMSE, j.Config.HiddenLayerMap = 1, "" }, "hidden_layer_map is empty"},
		{func(j *Job) { j.Config.HiddenMSE, j.Config.HiddenLayerMap, j.Data = 1, "1:2", data }, "needs teacher hidden states"},
	} {
		j := student("bad", c.mod)
		j.Resume = false
		if _, err := Train(ctx, j, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
	}
}

func mustLatest(t *testing.T, out string) string {
	t.Helper()
	dir, err := latestCheckpoint(context.Background(), out)
	if err != nil || dir == "" {
		t.Fatalf("no checkpoint in %s: %v", out, err)
	}
	return dir
}
