package trainer

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/sugarme/gotch/ts"
)

// Hidden-state distillation.
//
// Besides the teacher's logits, a student can be taught to reproduce the
// teacher's intermediate representations: for each pair of a layer map, the
// MSE between the student's [CLS] vector after student layer s and the
// teacher's after teacher layer t (through a learned projection when the
// widths differ). The teacher's vectors are computed once, with its logits,
// and cached in the distillation shards (teacher_hidden), so the teacher is
// never re-run while the student trains.

// LayerPair maps a student hidden state to a teacher hidden state. Both count
// as HF's hidden_states do: 0 is the embeddings output, k is layer k's output.
type LayerPair struct{ Student, Teacher int }

// ParseLayerMap reads "student:teacher,..." pairs, e.g. "1:2,2:4,3:6".
func ParseLayerMap(s string) ([]LayerPair, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("hidden_layer_map is empty")
	}
	var pairs []LayerPair
	seen := map[int]bool{}
	for _, item := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			return nil, fmt.Errorf("hidden_layer_map %q: %q is not student:teacher", s, item)
		}
		st, err1 := strconv.Atoi(strings.TrimSpace(a))
		te, err2 := strconv.Atoi(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || st < 0 || te < 0 {
			return nil, fmt.Errorf("hidden_layer_map %q: %q needs two hidden-state numbers >= 0", s, item)
		}
		if seen[st] {
			return nil, fmt.Errorf("hidden_layer_map %q: student hidden state %d mapped twice", s, st)
		}
		seen[st] = true
		pairs = append(pairs, LayerPair{Student: st, Teacher: te})
	}
	return pairs, nil
}

// FormatLayerMap is ParseLayerMap's inverse.
func FormatLayerMap(pairs []LayerPair) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = fmt.Sprintf("%d:%d", p.Student, p.Teacher)
	}
	return strings.Join(parts, ",")
}

// DefaultLayerMap pairs each student layer's output with the teacher layer it
// stands for: a student cut from the teacher (studentLayers, 0-based teacher
// layers) learns the output of the layer it was copied from; a student from
// another checkpoint with studentDepth layers maps them evenly onto the
// teacher's teacherDepth, its last layer onto the teacher's last.
func DefaultLayerMap(studentLayers []int, studentDepth, teacherDepth int) []LayerPair {
	var pairs []LayerPair
	if len(studentLayers) > 0 {
		for k, l := range studentLayers {
			pairs = append(pairs, LayerPair{Student: k + 1, Teacher: l + 1})
		}
		return pairs
	}
	for k := 1; k <= studentDepth; k++ {
		pairs = append(pairs, LayerPair{Student: k, Teacher: max(1, (k*teacherDepth+studentDepth/2)/studentDepth)})
	}
	return pairs
}

// TeacherLayers is the teacher side of a layer map, in order: the hidden
// states whose [CLS] vectors the distillation shards cache.
func TeacherLayers(pairs []LayerPair) []int {
	out := make([]int, len(pairs))
	for i, p := range pairs {
		out[i] = p.Teacher
	}
	return out
}

// hiddenLoss is a trial's hidden-state term: the layer pairs, the teacher's
// width and the projections (nil entries when the widths match).
type hiddenLoss struct {
	weight       float64
	pairs        []LayerPair
	slots        []int // per pair: which cached teacher vector (the manifest's order)
	teacherWidth int
	proj         []*model.Param // one per pair; nil entries when widths match
}

// projectionName is a projection's name in checkpoints. The exported student
// folder never holds it: it only serves the training loss.
// A multi-task student has projections per task (each task's teacher may
// have its own width).
func projectionName(task string, j int) string {
	if task == "" {
		return fmt.Sprintf("distill.hidden_projection.%d.weight", j)
	}
	return fmt.Sprintf("distill.%s.hidden_projection.%d.weight", task, j)
}

// newHiddenLoss checks the configuration against the dataset and the
// student, and makes the projections (seeded, so a run is reproducible).
func newHiddenLoss(cfg Config, man *dataset.Manifest, rows *dataset.Rows, m *model.Bert, task string) (*hiddenLoss, error) {
	if cfg.HiddenMSE <= 0 {
		return nil, nil
	}
	if !rows.HasHidden() {
		return nil, fmt.Errorf("hidden_mse %g needs teacher hidden states in the distillation shards; beamtune distill caches them when hidden_mse is set", cfg.HiddenMSE)
	}
	pairs, err := ParseLayerMap(cfg.HiddenLayerMap)
	if err != nil {
		return nil, err
	}
	cached := man.TeacherHiddenLayers
	slots := make([]int, len(pairs))
	for j, p := range pairs {
		if p.Student > m.Config.NumHiddenLayers {
			return nil, fmt.Errorf("hidden_layer_map %q: the student has hidden states 0..%d, not %d", cfg.HiddenLayerMap, m.Config.NumHiddenLayers, p.Student)
		}
		if slots[j] = slices.Index(cached, p.Teacher); slots[j] < 0 {
			return nil, fmt.Errorf("hidden_layer_map %q wants teacher hidden state %d; the distillation shards hold %v", cfg.HiddenLayerMap, p.Teacher, cached)
		}
	}
	n := len(rows.Hidden[0])
	if len(cached) == 0 || n%len(cached) != 0 {
		return nil, fmt.Errorf("row %s has %d teacher hidden values for hidden states %v", rows.RowIDs[0], n, cached)
	}
	h := &hiddenLoss{weight: cfg.HiddenMSE, pairs: pairs, slots: slots, teacherWidth: n / len(cached), proj: make([]*model.Param, len(pairs))}
	if h.teacherWidth == m.Config.HiddenSize {
		return h, nil
	}
	err = model.WithSeed(cfg.Seed, func() error {
		for j := range pairs {
			p, err := model.NewProjection(projectionName(task, j), h.teacherWidth, m.Config.HiddenSize, m.Device)
			if err != nil {
				return err
			}
			h.proj[j] = p
		}
		return nil
	})
	if err != nil {
		h.free()
		return nil, err
	}
	return h, nil
}

// params are the trainable projections (none when the widths match).
func (h *hiddenLoss) params() []*model.Param {
	if h == nil {
		return nil
	}
	var out []*model.Param
	for _, p := range h.proj {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (h *hiddenLoss) free() {
	if h != nil {
		model.FreeParams(h.params())
	}
}

// loss is the weighted hidden-state term for a batch: out holds the
// student's hidden states, idx the batch's rows.
func (h *hiddenLoss) loss(out *model.Output, rows *dataset.Rows, idx []int, dev model.Device) (*ts.Tensor, error) {
	n, w := len(idx), h.teacherWidth
	student := make([]*ts.Tensor, len(h.pairs))
	teacher := make([]*ts.Tensor, len(h.pairs))
	proj := make([]*ts.Tensor, len(h.pairs))
	defer func() {
		for _, t := range teacher {
			if t != nil {
				_ = t.Drop()
			}
		}
	}()
	vals := make([]float32, n*w)
	for j, p := range h.pairs {
		at := h.slots[j] * w
		for k, i := range idx {
			row := rows.Hidden[i]
			if len(row) < at+w {
				return nil, fmt.Errorf("row %s has %d teacher hidden values, want at least %d", rows.RowIDs[i], len(row), at+w)
			}
			copy(vals[k*w:(k+1)*w], row[at:at+w])
		}
		t, err := model.Float32Tensor(vals, []int64{int64(n), int64(w)}, dev)
		if err != nil {
			return nil, err
		}
		teacher[j] = t
		student[j] = out.Hidden[p.Student]
		if h.proj[j] != nil {
			proj[j] = h.proj[j].T
		}
	}
	l, err := model.HiddenCLSLoss(student, teacher, proj)
	if err != nil {
		return nil, err
	}
	return l, nil
}
