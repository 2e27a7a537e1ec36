package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sugarme/gotch/ts"
)

// Multi-task models: one encoder, one classification head per task.
//
// A multi-task model keeps BertForSequenceClassification's encoder and
// pooler (the bert.* weights) and replaces its classifier with one head per
// task, named tasks.<task>.classifier.weight and .bias. Its folder, a
// bundle, holds:
//   - config.json: the encoder's, as BertModel (transformers loads the
//     folder as the bare encoder and leaves the heads unused);
//   - model.safetensors: the encoder and every head;
//   - tasks.json (TasksFile): each head's task name, labels and problem type;
//   - the tokenizer files;
//   - tasks/<task>/ (TasksDir): one plain HF folder per task, the encoder
//     with that task's head as its classifier, which transformers and every
//     beamtune command load as a single-task model.
//
// The per-task folders repeat the encoder's weights: they are what a user
// publishes per task, and the bundle is what serves every task at once.

// Files of a multi-task bundle.
const (
	TasksFile = "tasks.json"
	TasksDir  = "tasks"
)

// TaskHead is one head of a multi-task model: the task it predicts.
type TaskHead struct {
	Name        string   `json:"name"`
	Labels      []string `json:"labels"`       // class names by index (regression: one, the score)
	ProblemType string   `json:"problem_type"` // HF's problem_type
}

// tasksFile is tasks.json.
type tasksFile struct {
	Tasks []TaskHead `json:"tasks"`
}

// headPrefix is the parameter-name prefix of a task's head; "" names a
// single-task model's classifier.
func headPrefix(task string) string {
	if task == "" {
		return "classifier."
	}
	return "tasks." + task + ".classifier."
}

// isHead reports whether the named parameter belongs to a classification
// head (the classifier, or a task's).
func isHead(name string) bool {
	return strings.HasPrefix(name, "classifier.") || strings.HasPrefix(name, "tasks.")
}

// CheckTaskName checks a task name: it names a head, a folder and a flag
// value, so it is 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit.
func CheckTaskName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("task name %q: want 1 to 64 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '-')
		if !ok {
			return fmt.Errorf("task name %q: use a-z, 0-9, _ and - (not first)", name)
		}
	}
	return nil
}

// IsMultiTask reports whether the local folder dir is a multi-task bundle.
func IsMultiTask(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, TasksFile))
	return err == nil
}

// ReadTasks reads and checks a bundle's tasks.json.
func ReadTasks(dir string) ([]TaskHead, error) {
	path := filepath.Join(dir, TasksFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTasks(data, path)
}

// ParseTasks decodes and checks tasks.json; source names it in errors.
func ParseTasks(data []byte, source string) ([]TaskHead, error) {
	var f tasksFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if err := checkHeads(f.Tasks); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return f.Tasks, nil
}

// HeadWeight is the name of a task head's weight in a bundle's weights.
func HeadWeight(task string) string { return headPrefix(task) + "weight" }

// checkHeads checks a list of task heads: at least one, unique valid names,
// labels, and a known problem type.
func checkHeads(heads []TaskHead) error {
	if len(heads) == 0 {
		return errors.New("no tasks")
	}
	seen := map[string]bool{}
	for _, h := range heads {
		if err := CheckTaskName(h.Name); err != nil {
			return err
		}
		if seen[h.Name] {
			return fmt.Errorf("task %s twice", h.Name)
		}
		seen[h.Name] = true
		if len(h.Labels) == 0 || len(h.Labels) > maxLabels {
			return fmt.Errorf("task %s: %d labels", h.Name, len(h.Labels))
		}
		switch h.ProblemType {
		case "single_label_classification", "multi_label_classification", "regression":
		default:
			return fmt.Errorf("task %s: problem_type %q", h.Name, h.ProblemType)
		}
	}
	return nil
}

// Heads are a multi-task model's task heads, in order (nil for a
// single-task model).
func (m *Bert) Heads() []TaskHead { return m.heads }

// Head is the named task's head.
func (m *Bert) Head(task string) (TaskHead, bool) {
	i := slices.IndexFunc(m.heads, func(h TaskHead) bool { return h.Name == task })
	if i < 0 {
		return TaskHead{}, false
	}
	return m.heads[i], true
}

// SetHeads makes m a multi-task model: its classifier is dropped and each
// task gets a fresh head, drawn as HF initialises a Linear layer (weights
// N(0, initializer_range), zero bias; seed the draw with WithSeed). It is
// done before Tune, LoRA and quantization.
func (m *Bert) SetHeads(heads []TaskHead) error {
	if err := checkHeads(heads); err != nil {
		return err
	}
	if m.lora != nil || len(m.int8) > 0 || m.frozen != nil {
		return errors.New("set task heads before tuning, LoRA or quantization")
	}
	kept := m.params[:0]
	for _, p := range m.params {
		if isHead(p.Name) {
			if !m.shared[p.Name] {
				drop(p.T)
			}
			delete(m.byName, p.Name)
			continue
		}
		kept = append(kept, p)
	}
	m.params = kept
	h := int64(m.Config.HiddenSize)
	for _, head := range heads {
		n := int64(len(head.Labels))
		for _, part := range []struct {
			name  string
			shape []int64
		}{{"weight", []int64{n, h}}, {"bias", []int64{n}}} {
			name := headPrefix(head.Name) + part.name
			t, err := initTensor(name, part.shape, m.Config.InitializerRange, m.Device)
			if err != nil {
				return fmt.Errorf("init %s: %w", name, err)
			}
			if err := m.addParam(name, t); err != nil {
				drop(t)
				return err
			}
		}
	}
	m.heads = slices.Clone(heads)
	m.Config.ID2Label, m.Config.ProblemType = nil, ""
	return nil
}

// TaskModel is the single-task model of one head: the encoder and that
// head as its classifier, with the task's labels and problem type. It
// shares m's float32 weights (free it before m; Free leaves them to m), so
// that exporting or scoring one task copies nothing. It does not take m's
// int8-packed layers or vocabulary map, which Free would release: quantize
// the view itself to run it in int8.
func (m *Bert) TaskModel(task string) (*Bert, error) {
	head, ok := m.Head(task)
	if !ok {
		return nil, fmt.Errorf("the model has no task %q (tasks: %s)", task, strings.Join(m.TaskNames(), ", "))
	}
	if m.lora != nil {
		return nil, errors.New("a task model of an unmerged LoRA model")
	}
	cfg := *m.Config
	cfg.SetLabels(head.Labels)
	cfg.ProblemType = head.ProblemType
	v := &Bert{Config: &cfg, Device: m.Device, byName: map[string]*Param{}, shared: map[string]bool{}}
	prefix := headPrefix(task)
	for _, p := range m.params {
		name := p.Name
		if isHead(name) {
			rest, ok := strings.CutPrefix(name, prefix)
			if !ok {
				continue
			}
			name = "classifier." + rest
		}
		q := &Param{Name: name, T: p.T, Decay: p.Decay}
		v.params = append(v.params, q)
		v.byName[name] = q
		v.shared[name] = true
	}
	return v, nil
}

// TaskNames are the names of m's task heads, in order.
func (m *Bert) TaskNames() []string {
	out := make([]string, len(m.heads))
	for i, h := range m.heads {
		out[i] = h.Name
	}
	return out
}

// ForwardTasks runs the encoder once and the heads of the named tasks on
// its output: Output.TaskLogits holds each task's logits in the order
// asked, and Output.Logits the first's. For a single-task model, tasks must
// be empty (its classifier). The caller frees the result.
func (m *Bert) ForwardTasks(b Batch, tasks []string, train, hidden bool) (*Output, error) {
	if len(m.heads) == 0 && len(tasks) > 0 {
		return nil, fmt.Errorf("tasks %v asked of a single-task model", tasks)
	}
	if len(m.heads) > 0 && len(tasks) == 0 {
		return nil, fmt.Errorf("a multi-task model needs a task (one of %s)", strings.Join(m.TaskNames(), ", "))
	}
	for _, t := range tasks {
		if _, ok := m.Head(t); !ok {
			return nil, fmt.Errorf("the model has no task %q (tasks: %s)", t, strings.Join(m.TaskNames(), ", "))
		}
	}
	return m.forward(b, tasks, train, hidden)
}

// writeBundle writes a multi-task model's folder into dir (see the top of
// this file).
func (m *Bert) writeBundle(dir, tokenizerDir string) error {
	cfg := *m.Config
	cfg.Architectures = []string{"BertModel"}
	if err := m.writeWeights(dir, cfg); err != nil {
		return err
	}
	tj, err := json.MarshalIndent(tasksFile{Tasks: m.heads}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, TasksFile), append(tj, '\n'), 0o644); err != nil {
		return err
	}
	if err := copyTokenizer(tokenizerDir, dir); err != nil {
		return err
	}
	for _, h := range m.heads {
		v, err := m.TaskModel(h.Name)
		if err != nil {
			return err
		}
		v.saveDType = m.saveDType
		sub := filepath.Join(dir, TasksDir, h.Name)
		err = os.MkdirAll(sub, 0o755)
		if err == nil {
			err = v.writeFolder(sub, tokenizerDir)
		}
		v.Free()
		if err != nil {
			return fmt.Errorf("task %s: %w", h.Name, err)
		}
	}
	return nil
}

// forwardHeads applies the pooler once and each named head ("" for the
// classifier) to the encoder output h.
func (m *Bert) forwardHeads(h *ts.Tensor, tasks []string, train bool) ([]*ts.Tensor, error) {
	if len(tasks) == 0 {
		tasks = []string{""}
	}
	var s scope
	defer s.release()
	first := s.selectIdx(h, 1, 0)
	pooled := s.tanh(m.linear(&s, "bert.pooler.dense", first, train))
	pooled = s.dropout(pooled, m.Config.ClassifierDropoutProb(), train)
	out := make([]*ts.Tensor, len(tasks))
	for i, t := range tasks {
		p := headPrefix(t)
		out[i] = s.linear(pooled, m.w(p+"weight"), m.w(p+"bias"))
	}
	if !s.ok() {
		return nil, fmt.Errorf("head: %w", s.err)
	}
	for _, t := range out {
		s.keep(t)
	}
	return out, nil
}
