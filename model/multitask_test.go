package model

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
)

// testHeads are two tasks of different kinds and sizes.
var testHeads = []TaskHead{
	{Name: "topic", Labels: []string{"a", "b", "c"}, ProblemType: "single_label_classification"},
	{Name: "score", Labels: []string{"score"}, ProblemType: "regression"},
}

func multiTaskTiny(t *testing.T) *Bert {
	t.Helper()
	m := loadTiny(t)
	if err := WithSeed(5, func() error { return m.SetHeads(testHeads) }); err != nil {
		m.Free()
		t.Fatal(err)
	}
	return m
}

// taskLogits runs the named tasks on b in eval mode, one encoder pass.
func taskLogits(t *testing.T, m *Bert, b Batch, tasks ...string) [][]float32 {
	t.Helper()
	var out [][]float32
	if err := NoGrad(func() error {
		o, err := m.ForwardTasks(b, tasks, false, false)
		if err != nil {
			return err
		}
		defer o.Free()
		for _, l := range o.TaskLogits {
			v, err := Float32s(l)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTaskHeadsGetGradientsOnlyFromTheirTask: a backward pass through one
// task's logits reaches that task's head and the shared encoder, and leaves
// every other head without a gradient.
func TestTaskHeadsGetGradientsOnlyFromTheirTask(t *testing.T) {
	m := multiTaskTiny(t)
	defer m.Free()
	if m.Param("classifier.weight") != nil {
		t.Fatal("the single-task classifier survived SetHeads")
	}
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	for _, task := range []string{"topic", "score"} {
		err := WithGrad(true, func() error {
			out, err := m.ForwardTasks(b, []string{task}, true, false)
			if err != nil {
				return err
			}
			defer out.Free()
			loss, err := out.Logits.Sum(gotch.Float, false)
			if err != nil {
				return err
			}
			defer loss.Drop()
			return loss.Backward()
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Params() {
			g, err := p.T.Grad(false)
			if err != nil {
				t.Fatal(err)
			}
			defined, _ := g.Defined()
			nonzero := false
			if defined {
				v := values(t, g)
				nonzero = slices.ContainsFunc(v, func(x float32) bool { return x != 0 })
			}
			drop(g)
			own := strings.HasPrefix(p.Name, "tasks."+task+".")
			other := strings.HasPrefix(p.Name, "tasks.") && !own
			switch {
			case other && nonzero:
				t.Errorf("%s: %s got a gradient from task %s", task, p.Name, task)
			case own && !nonzero:
				t.Errorf("%s: its own head %s got no gradient", task, p.Name)
			case p.Name == "bert.encoder.layer.0.attention.self.query.weight" && !nonzero:
				t.Errorf("%s: the shared encoder got no gradient", task)
			}
		}
		if err := ZeroGrad(m.Params()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMultiTaskBundle: one encoder pass serves every head with the logits
// each head gives alone; the bundle reloads exactly; each tasks/<task>/
// folder is a plain single-task model with that head's logits.
func TestMultiTaskBundle(t *testing.T) {
	defer LockThread()()
	m := multiTaskTiny(t)
	defer m.Free()
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	both := taskLogits(t, m, b, "topic", "score")
	if len(both) != 2 || len(both[0]) != 2*3 || len(both[1]) != 2*1 {
		t.Fatalf("logits of both tasks: %d heads, sizes %d", len(both), len(both[0]))
	}
	for i, task := range []string{"topic", "score"} {
		if d := maxAbsDiff(taskLogits(t, m, b, task)[0], both[i]); d != 0 {
			t.Errorf("%s alone differs from the shared pass by %g", task, d)
		}
	}
	if _, err := m.Forward(b, false, false); err == nil || !strings.Contains(err.Error(), "topic, score") {
		t.Errorf("Forward of a multi-task model without a task: %v", err)
	}
	if _, err := m.ForwardTasks(b, []string{"sentiment"}, false, false); err == nil || !strings.Contains(err.Error(), `"sentiment"`) {
		t.Errorf("an unknown task: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "bundle")
	extra := map[string][]byte{"tasks/topic/extra.txt": []byte("x")}
	if err := m.Export(dir, "", extra); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, TasksDir, "topic", "extra.txt")); err != nil {
		t.Errorf("per-task extra file: %v", err)
	}
	back, rep, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	if len(rep.NewlyInitialized)+len(rep.Unused) != 0 {
		t.Errorf("bundle reload should be exact: %s", rep)
	}
	if !slices.Equal(back.TaskNames(), []string{"topic", "score"}) {
		t.Errorf("tasks after reload: %v", back.TaskNames())
	}
	got := taskLogits(t, back, b, "topic", "score")
	for i := range both {
		if d := maxAbsDiff(got[i], both[i]); d != 0 {
			t.Errorf("head %d changed by %g after export and reload", i, d)
		}
	}
	for i, h := range testHeads {
		single, rep, err := Load(filepath.Join(dir, TasksDir, h.Name), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.NewlyInitialized)+len(rep.Unused) != 0 || single.Heads() != nil {
			t.Errorf("%s folder is not a plain single-task model: %s", h.Name, rep)
		}
		if !slices.Equal(single.Config.Labels(), h.Labels) || single.Config.Task() != h.ProblemType {
			t.Errorf("%s folder: labels %v, task %s", h.Name, single.Config.Labels(), single.Config.Task())
		}
		if d := maxAbsDiff(evalLogits(t, single, b), both[i]); d != 0 {
			t.Errorf("%s folder's logits differ from the bundle's head by %g", h.Name, d)
		}
		single.Free()
	}
	// The task model shares the bundle's tensors: freeing it leaves them.
	v, err := back.TaskModel("topic")
	if err != nil {
		t.Fatal(err)
	}
	v.Free()
	if d := maxAbsDiff(taskLogits(t, back, b, "topic")[0], both[0]); d != 0 {
		t.Errorf("freeing a task model changed the bundle by %g", d)
	}
	// Nor does it take the bundle's int8-packed layers with it.
	applied, fallback, err := Quantize(back, QuantizeInt8, HostCPU())
	if err != nil {
		t.Fatal(err)
	}
	if applied != QuantizeInt8 {
		t.Logf("int8 part skipped: %s", fallback)
		return
	}
	quantized := taskLogits(t, back, b, "topic")[0]
	v, err = back.TaskModel("topic")
	if err != nil {
		t.Fatal(err)
	}
	v.Free()
	if d := maxAbsDiff(taskLogits(t, back, b, "topic")[0], quantized); d != 0 || !back.Quantized() {
		t.Errorf("freeing a task model of a quantized bundle changed it by %g (quantized: %v)", d, back.Quantized())
	}
}

// TestSetHeadsChecksTasks refuses bad task lists by name.
func TestSetHeadsChecksTasks(t *testing.T) {
	for _, tc := range []struct {
		heads []TaskHead
		want  string
	}{
		{nil, "no tasks"},
		{[]TaskHead{{Name: "Topic", Labels: []string{"a"}, ProblemType: "regression"}}, `"Topic"`},
		{[]TaskHead{testHeads[0], testHeads[0]}, "topic twice"},
		{[]TaskHead{{Name: "x", ProblemType: "regression"}}, "0 labels"},
		{[]TaskHead{{Name: "x", Labels: []string{"a"}, ProblemType: "ranking"}}, `"ranking"`},
	} {
		m := loadTiny(t)
		err := m.SetHeads(tc.heads)
		m.Free()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetHeads(%v) = %v, want an error naming %s", tc.heads, err, tc.want)
		}
	}
}
