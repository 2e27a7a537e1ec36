package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"github.com/beamtune/beamtune/model/pickle"
	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Checkpoint file names inside a model folder, as HF writes them.
const (
	ConfigFile      = "config.json"
	SafetensorsFile = "model.safetensors"
	PytorchFile     = "pytorch_model.bin"
	TokenizerFile   = "tokenizer.json" // HF tokenizers' format, which beamtune tokenizes with
)

// TokenizerFiles are copied next to exported weights so the folder is a
// complete HF model (AutoTokenizer loads it) and beamtune can tokenize with it.
var TokenizerFiles = []string{TokenizerFile, "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}

// LoadOptions tunes Load.
type LoadOptions struct {
	// Labels, when set, replaces the checkpoint's label names (a new task).
	// If the checkpoint's head has another size, loading fails with a shape
	// error: drop the head (HeadFromScratch) to start a fresh one.
	Labels []string
	// HeadFromScratch ignores any classifier weights in the checkpoint.
	HeadFromScratch bool
	Device          Device
	// BaseDir, for a LoRA adapter folder, is the local base model folder to
	// apply it to ("": the one adapter_base.json names).
	BaseDir string
	// Unmerged keeps a LoRA adapter's update apart from the base weights
	// (to train it further); by default it is merged, the fastest form for
	// inference.
	Unmerged bool
	// Base, for a LoRA adapter folder, is its base model already loaded
	// (from BaseDir): the result shares Base's weights instead of loading
	// them again and keeps the adapter unmerged, so that several adapters
	// serve from one copy of the base. Base must outlive the result.
	Base *Bert
}

// LoadReport says what loading did, in the terms HF's from_pretrained uses.
type LoadReport struct {
	Dir    string
	Format string // "safetensors" or "pytorch_model.bin"
	// NewlyInitialized are model weights the checkpoint lacked (only the
	// classification head is allowed to be missing).
	NewlyInitialized []string
	// Unused are checkpoint weights the model has no place for.
	Unused []string
	// Renamed counts keys mapped from old names (LayerNorm gamma/beta) or
	// from a bare BertModel checkpoint (no "bert." prefix).
	Renamed int
}

// String is the report as a few log lines.
func (r *LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "loaded %s from %s", r.Format, r.Dir)
	if r.Renamed > 0 {
		fmt.Fprintf(&b, "; %d keys renamed (bert. prefix, gamma/beta)", r.Renamed)
	}
	if len(r.NewlyInitialized) > 0 {
		fmt.Fprintf(&b, "; newly initialized (train them): %s", strings.Join(r.NewlyInitialized, ", "))
	}
	if len(r.Unused) > 0 {
		fmt.Fprintf(&b, "; checkpoint weights not used: %s", strings.Join(r.Unused, ", "))
	}
	return b.String()
}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	return ParseConfig(data, path)
}

// Load builds a model from a HF checkpoint folder (config.json plus
// model.safetensors or pytorch_model.bin), or from a LoRA adapter folder
// (PEFT's layout) and the base model it names. Weights of any float dtype
// become float32 on opts.Device.
func Load(dir string, opts LoadOptions) (*Bert, *LoadReport, error) {
	if IsAdapter(dir) {
		return loadAdapter(dir, opts)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(opts.Labels) > 0 {
		cfg.SetLabels(opts.Labels)
	}
	weights, format, err := readWeights(dir)
	if err != nil {
		return nil, nil, err
	}
	defer weights.close()
	if opts.Device.Name == "" {
		opts.Device = gotch.CPU // the zero value means CPU (gotch would end the process)
	}

	rep := &LoadReport{Dir: dir, Format: format}
	m, err := NewBert(cfg, opts.Device)
	if err != nil {
		return nil, nil, err
	}
	if IsMultiTask(dir) {
		heads, err := ReadTasks(dir)
		if err == nil {
			err = m.SetHeads(heads)
		}
		if err != nil {
			m.Free()
			return nil, nil, err
		}
	}
	found := map[string]string{} // model name -> checkpoint key
	for _, key := range weights.names() {
		name, renamed := canonicalName(key, m.byName)
		switch {
		case name == "":
			if !ignoredKey(key) {
				rep.Unused = append(rep.Unused, key)
			}
			continue
		case opts.HeadFromScratch && isHead(name):
			rep.Unused = append(rep.Unused, key)
			continue
		}
		if prev, dup := found[name]; dup {
			m.Free()
			return nil, nil, fmt.Errorf("%s: checkpoint keys %q and %q both map to %s", dir, prev, key, name)
		}
		found[name] = key
		if renamed {
			rep.Renamed++
		}
	}
	for _, p := range m.params {
		if _, ok := found[p.Name]; !ok {
			rep.NewlyInitialized = append(rep.NewlyInitialized, p.Name)
		}
	}
	var notHead []string
	for _, n := range rep.NewlyInitialized {
		if !isHead(n) {
			notHead = append(notHead, n)
		}
	}
	if len(notHead) > 0 {
		m.Free()
		return nil, nil, fmt.Errorf("%s: checkpoint lacks %d encoder weight(s), e.g. %s: not a BERT checkpoint for this config.json",
			dir, len(notHead), strings.Join(notHead[:min(3, len(notHead))], ", "))
	}
	for _, p := range m.params { // model order, so the first error is always the same one
		name := p.Name
		key, ok := found[name]
		if !ok {
			continue
		}
		want := Shape(p.T) // as NewBert and SetHeads built it
		t, got, err := weights.tensor(key, opts.Device)
		if err != nil {
			m.Free()
			return nil, nil, fmt.Errorf("%s: %s: %w", dir, key, err)
		}
		if !slices.Equal(got, want) {
			drop(t)
			m.Free()
			return nil, nil, fmt.Errorf("%s: size mismatch for %s: checkpoint has shape %v, model (config.json) expects %v", dir, key, got, want)
		}
		if err := m.replaceParam(name, t); err != nil {
			m.Free()
			return nil, nil, err
		}
	}
	sort.Strings(rep.Unused)
	return m, rep, nil
}

// canonicalName maps a checkpoint key to a model parameter name, or "" when
// the model has no such parameter.
func canonicalName(key string, known map[string]*Param) (name string, renamed bool) {
	k := key
	// Checkpoints saved before transformers 2.x call LayerNorm's parameters gamma and beta.
	if s, ok := strings.CutSuffix(k, ".gamma"); ok {
		k, renamed = s+".weight", true
	} else if s, ok := strings.CutSuffix(k, ".beta"); ok {
		k, renamed = s+".bias", true
	}
	if _, ok := known[k]; ok {
		return k, renamed
	}
	// A BertModel checkpoint (like all-MiniLM-L6-v2) has no "bert." prefix.
	if _, ok := known["bert."+k]; ok {
		return "bert." + k, true
	}
	return "", false
}

// ignoredKey: buffers HF also skips silently when loading.
func ignoredKey(key string) bool {
	return strings.HasSuffix(key, "embeddings.position_ids")
}

// replaceParam swaps in a loaded tensor for the named parameter.
func (m *Bert) replaceParam(name string, t *ts.Tensor) error {
	p := m.byName[name]
	weightsChanged()
	if err := t.RequiresGrad_(true); err != nil {
		drop(t)
		return fmt.Errorf("%s: requires_grad: %w", name, err)
	}
	if m.shared[name] {
		delete(m.shared, name) // the base's tensor stays with the base
	} else {
		drop(p.T)
	}
	p.T = t
	return nil
}

// weightSource is a checkpoint file being read.
type weightSource interface {
	names() []string
	tensor(key string, dev Device) (*ts.Tensor, []int64, error)
	close()
}

func readWeights(dir string) (weightSource, string, error) {
	st := filepath.Join(dir, SafetensorsFile)
	if _, err := os.Stat(st); err == nil {
		f, err := safetensors.Open(st, nil)
		if err != nil {
			return nil, "", err
		}
		return stSource{f}, "safetensors", nil
	}
	bin := filepath.Join(dir, PytorchFile)
	if _, err := os.Stat(bin); err == nil {
		slog.Warn("loading pytorch_model.bin (a pickle); model.safetensors is preferred: it cannot run code and loads without unpickling", "path", bin)
		src, err := openBin(bin)
		if err != nil {
			return nil, "", err
		}
		return src, PytorchFile, nil
	}
	return nil, "", fmt.Errorf("%s: no %s or %s", dir, SafetensorsFile, PytorchFile)
}

type stSource struct{ f *safetensors.File }

func (s stSource) names() []string { return s.f.Names() }
func (s stSource) close()          { _ = s.f.Close() }
func (s stSource) tensor(key string, dev Device) (*ts.Tensor, []int64, error) {
	info, _ := s.f.Info(key)
	if !info.DType.IsFloat() {
		return nil, info.Shape, fmt.Errorf("dtype %s is not a float type", info.DType)
	}
	vals, err := s.f.Float32(key)
	if err != nil {
		return nil, nil, err
	}
	t, err := tensorOfFloat32(vals, info.Shape, dev)
	return t, info.Shape, err
}

// binSource reads a pytorch_model.bin. The file is checked whole by
// pickle.Open (package model/pickle) before any tensor is read, and tensors
// are then read one at a time in pure Go: gotch's pickle reader is not used,
// since it trusts the sizes in the file and exits the process (Must*) on a
// bad view.
type binSource struct {
	f  *os.File
	tf *pickle.File
}

// openBin opens and checks path. A refused file gives a *pickle.Error whose
// File is path.
func openBin(path string) (binSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return binSource{}, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return binSource{}, err
	}
	tf, err := pickle.Open(f, st.Size(), pickle.Limits{})
	if err != nil {
		f.Close()
		var pe *pickle.Error
		if errors.As(err, &pe) {
			pe.File = path
			return binSource{}, pe
		}
		return binSource{}, fmt.Errorf("%s: %w", path, err)
	}
	return binSource{f: f, tf: tf}, nil
}

func (b binSource) names() []string { return b.tf.Names() }
func (b binSource) close()          { _ = b.f.Close() }
func (b binSource) tensor(key string, dev Device) (*ts.Tensor, []int64, error) {
	vals, shape, err := b.tf.Float32s(key)
	if err != nil {
		return nil, shape, err
	}
	t, err := tensorOfFloat32(vals, shape, dev)
	return t, shape, err
}

// tensorOfFloat32 copies values into a new float32 tensor.
func tensorOfFloat32(vals []float32, shape []int64, dev Device) (*ts.Tensor, error) {
	var raw []byte
	if len(vals) > 0 {
		// Little-endian float32 bytes, as libtorch stores them on x86 and arm64.
		raw = unsafe.Slice((*byte)(unsafe.Pointer(&vals[0])), 4*len(vals))
	}
	t, err := ts.OfDataSize(raw, shape, gotch.Float)
	if err != nil {
		return nil, err
	}
	return toDevice(t, dev)
}

// Export writes a HF-compatible folder: config.json (BertForSequenceClassification
// with id2label/label2id), model.safetensors (float32) and the tokenizer files
// found in tokenizerDir, and the extra files (name → content, e.g.
// ThresholdsFile). A multi-task model writes its bundle instead (see
// multitask.go); an extra file's name may then be tasks/<task>/NAME. The
// folder appears whole or not at all: it is written beside dir and renamed
// into place.
func (m *Bert) Export(dir, tokenizerDir string, extra map[string][]byte) error {
	if m.lora != nil {
		return fmt.Errorf("export %s: the model has an unmerged LoRA adapter: merge it (MergeLoRA) or export the adapter (ExportAdapter)", dir)
	}
	write := m.writeFolder
	if len(m.heads) > 0 {
		write = m.writeBundle
	}
	return writeFolderAtomically(dir, func(tmp string) error {
		if err := write(tmp, tokenizerDir); err != nil {
			return err
		}
		for name, data := range extra {
			// A bundle's task folders take their own files (tasks/<task>/NAME).
			path := filepath.Join(tmp, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeFolderAtomically has fill write a folder's files into a temporary
// folder beside dir, then renames it into place: dir appears whole or not
// at all, and an old dir is replaced only once the new one is complete.
func writeFolderAtomically(dir string, fill func(tmp string) error) error {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := fill(tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	// rename cannot replace a non-empty folder: move the old one aside first.
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			_ = os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

func (m *Bert) writeFolder(dir, tokenizerDir string) error {
	cfg := *m.Config
	cfg.Architectures = []string{"BertForSequenceClassification"}
	cfg.ProblemType = cfg.Task() // named always, so transformers never guesses it from the labels' dtype
	if err := m.writeWeights(dir, cfg); err != nil {
		return err
	}
	return copyTokenizer(tokenizerDir, dir)
}

// writeWeights writes cfg as dir's config.json and every parameter as its
// model.safetensors.
func (m *Bert) writeWeights(dir string, cfg Config) error {
	cj, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	dt := safetensors.F32
	if m.saveDType == SaveBF16 {
		dt = safetensors.BF16
		// transformers reads torch_dtype to load the weights in their own type.
		var fields map[string]any
		if err := json.Unmarshal(cj, &fields); err != nil {
			return err
		}
		fields["torch_dtype"] = "bfloat16"
		if cj, err = json.MarshalIndent(fields, "", "  "); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), append(cj, '\n'), 0o644); err != nil {
		return err
	}
	tensors, err := ParamTensorsAs(m.params, dt)
	if err != nil {
		return err
	}
	return safetensors.WriteFile(filepath.Join(dir, SafetensorsFile), tensors, map[string]string{"format": "pt"})
}

// copyTokenizer copies the tokenizer files found in tokenizerDir ("": none)
// into dir.
func copyTokenizer(tokenizerDir, dir string) error {
	if tokenizerDir == "" {
		return nil
	}
	for _, name := range TokenizerFiles {
		if err := copyFile(filepath.Join(tokenizerDir, name), filepath.Join(dir, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // a model may come without a tokenizer (test models fed token ids)
			}
			return fmt.Errorf("export tokenizer: %w", err)
		}
	}
	return nil
}

// StateDict returns every parameter as a float32 safetensors tensor under its HF name.
func (m *Bert) StateDict() ([]safetensors.Tensor, error) { return ParamTensors(m.params) }

// ParamTensors copies parameters into safetensors tensors under their names.
func ParamTensors(params []*Param) ([]safetensors.Tensor, error) {
	return ParamTensorsAs(params, safetensors.F32)
}

// ParamTensorsAs is ParamTensors with the values rounded to dt (F32 or
// BF16, round to nearest even).
func ParamTensorsAs(params []*Param, dt safetensors.DType) ([]safetensors.Tensor, error) {
	out := make([]safetensors.Tensor, 0, len(params))
	for _, p := range params {
		if p.rows != nil { // a row-sparse table's rows catch up first
			if err := p.rows.current(p.T, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", p.Name, err)
			}
		}
		vals, err := Float32s(p.T)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		t, err := safetensors.FromFloat32(p.Name, dt, Shape(p.T), vals)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
