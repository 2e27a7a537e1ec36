package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/beamtune/beamtune/model/safetensors"
)

// Files of a LoRA adapter folder. The first two are PEFT's, so PEFT's
// PeftModel.from_pretrained loads the folder; AdapterBaseFile is beamtune's
// pointer to the base model, which PEFT ignores.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
	AdapterBaseFile    = "adapter_base.json"
)

// peftKeyPrefix starts every key of a PEFT adapter file: the PeftModel's
// base_model (the LoRA model) and its model (the transformers model).
const peftKeyPrefix = "base_model.model."

// AdapterConfig is the part of PEFT's LoraConfig (adapter_config.json) that
// beamtune writes and reads.
type AdapterConfig struct {
	PeftType            string  `json:"peft_type"`
	TaskType            string  `json:"task_type"`
	BaseModelNameOrPath string  `json:"base_model_name_or_path"`
	R                   int     `json:"r"`
	LoraAlpha           float64 `json:"lora_alpha"`
	LoraDropout         float64 `json:"lora_dropout"`
	// TargetModules is a list of names, or a regular expression PEFT
	// matches against whole module names; beamtune finds the adapted layers
	// from the weight file's keys, so it only writes lists.
	TargetModules   json.RawMessage    `json:"target_modules"`
	ModulesToSave   []string           `json:"modules_to_save"`
	Bias            string             `json:"bias"`
	FanInFanOut     bool               `json:"fan_in_fan_out"`
	InferenceMode   bool               `json:"inference_mode"`
	InitLoraWeights any                `json:"init_lora_weights"`
	UseRSLoRA       bool               `json:"use_rslora"`
	UseDoRA         bool               `json:"use_dora"`
	RankPattern     map[string]any     `json:"rank_pattern"`
	AlphaPattern    map[string]float64 `json:"alpha_pattern"`
}

// AdapterBase is adapter_base.json: which model the adapter was trained on,
// the digest of that model's weights file, and what the adapter's head
// predicts (PEFT folders carry no config.json).
type AdapterBase struct {
	// Path is the base model folder, local (absolute) or gs://.
	Path string `json:"base_model"`
	// WeightsFile and SHA256 identify the base weights the adapter was
	// trained against; loading refuses a base whose weights changed.
	WeightsFile string         `json:"weights_file"`
	SHA256      string         `json:"weights_sha256"`
	ID2Label    map[int]string `json:"id2label"`
	ProblemType string         `json:"problem_type"`
}

// Labels are the adapter's head's label names in id order (nil when the
// record has none, as for an adapter PEFT wrote).
func (b AdapterBase) Labels() []string { return labelNames(b.ID2Label) }

// IsAdapter reports whether dir holds a LoRA adapter rather than a model.
func IsAdapter(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, AdapterConfigFile))
	return err == nil
}

// ReadAdapterBase returns where the adapter in dir says its base model is:
// adapter_base.json's record, or (for an adapter PEFT wrote) PEFT's
// base_model_name_or_path with no digest.
func ReadAdapterBase(dir string) (AdapterBase, error) {
	ac, err := readAdapterConfig(dir)
	if err != nil {
		return AdapterBase{}, err
	}
	path := filepath.Join(dir, AdapterBaseFile)
	record, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		record, err = nil, nil
	}
	if err != nil {
		return AdapterBase{}, err
	}
	return AdapterBaseOf(ac, record, path)
}

// AdapterBaseOf is the base an adapter applies to, from its config and the
// content of its adapter_base.json at recordPath (nil when the folder has
// none: then PEFT's base_model_name_or_path, with no digest).
func AdapterBaseOf(ac *AdapterConfig, record []byte, recordPath string) (AdapterBase, error) {
	if record != nil {
		return ParseAdapterBase(record, recordPath)
	}
	if ac.BaseModelNameOrPath == "" {
		configPath := strings.TrimSuffix(recordPath, AdapterBaseFile) + AdapterConfigFile
		return AdapterBase{}, fmt.Errorf("%s: base_model_name_or_path is empty and there is no %s: name the base model folder", configPath, AdapterBaseFile)
	}
	return AdapterBase{Path: ac.BaseModelNameOrPath}, nil
}

// ParseAdapterBase reads adapter_base.json's content (path names it in errors).
func ParseAdapterBase(data []byte, path string) (AdapterBase, error) {
	var b AdapterBase
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}
	if b.Path == "" {
		return b, fmt.Errorf("%s: base_model is empty", path)
	}
	return b, nil
}

func readAdapterConfig(dir string) (*AdapterConfig, error) {
	path := filepath.Join(dir, AdapterConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseAdapterConfig(data, path)
}

// ParseAdapterConfig reads adapter_config.json's content and refuses what
// beamtune cannot apply (path names it in errors).
func ParseAdapterConfig(data []byte, path string) (*AdapterConfig, error) {
	var ac AdapterConfig
	if err := json.Unmarshal(data, &ac); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case ac.PeftType != "LORA":
		return nil, fmt.Errorf("%s: peft_type %q: beamtune reads LORA adapters", path, ac.PeftType)
	case ac.TaskType != "" && ac.TaskType != "SEQ_CLS":
		return nil, fmt.Errorf("%s: task_type %q: beamtune reads sequence-classification (SEQ_CLS) adapters", path, ac.TaskType)
	case ac.UseDoRA:
		return nil, fmt.Errorf("%s: use_dora: DoRA adapters are not supported", path)
	case ac.FanInFanOut:
		return nil, fmt.Errorf("%s: fan_in_fan_out is for Conv1D layers, which BERT has none of", path)
	case len(ac.RankPattern) > 0 || len(ac.AlphaPattern) > 0:
		return nil, fmt.Errorf("%s: rank_pattern and alpha_pattern are not supported: one r and lora_alpha for every layer", path)
	case ac.R <= 0:
		return nil, fmt.Errorf("%s: r must be positive, got %d", path, ac.R)
	}
	return &ac, nil
}

// WeightsDigest is the sha256 of the model weights file in dir
// (model.safetensors, else pytorch_model.bin) and that file's name.
func WeightsDigest(dir string) (file, digest string, err error) {
	for _, name := range []string{SafetensorsFile, PytorchFile} {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		digest, err := Digest(f)
		f.Close()
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		return name, digest, nil
	}
	return "", "", fmt.Errorf("%s: no %s or %s", dir, SafetensorsFile, PytorchFile)
}

// Digest is the hex sha256 of what r holds, as adapter_base.json records
// a base's weights.
func Digest(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ExportAdapter writes the model's LoRA adapter as a PEFT folder:
// adapter_config.json, adapter_model.safetensors (the lora_A/lora_B weights
// and the classifier, which PEFT saves as modules_to_save, under PEFT's key
// names), adapter_base.json (base), the tokenizer files of tokenizerDir and
// the extra files. The folder appears whole or not at all.
func (m *Bert) ExportAdapter(dir, tokenizerDir string, base AdapterBase, extra map[string][]byte) error {
	if len(m.heads) > 0 {
		return fmt.Errorf("export %s: LoRA adapters of multi-task models are not supported", dir)
	}
	c := m.loraCfg
	if c == nil {
		return fmt.Errorf("export adapter: the model has no LoRA adapter")
	}
	targets, err := json.Marshal(c.Targets)
	if err != nil {
		return err
	}
	ac := AdapterConfig{
		PeftType: "LORA", TaskType: "SEQ_CLS", BaseModelNameOrPath: base.Path,
		R: c.R, LoraAlpha: c.Alpha, LoraDropout: c.Dropout, TargetModules: targets,
		ModulesToSave: []string{"classifier"}, Bias: "none", InferenceMode: true, InitLoraWeights: true,
		UseRSLoRA: c.RSLoRA, RankPattern: map[string]any{}, AlphaPattern: map[string]float64{},
	}
	base.ID2Label, base.ProblemType = m.Config.ID2Label, m.Config.Task()
	var saved []*Param
	saved = append(saved, m.adapters...)
	for _, p := range m.params {
		if strings.HasPrefix(p.Name, "classifier.") {
			saved = append(saved, p)
		}
	}
	tensors, err := ParamTensors(saved)
	if err != nil {
		return err
	}
	for i := range tensors {
		tensors[i].Name = peftKeyPrefix + tensors[i].Name
	}
	return writeFolderAtomically(dir, func(tmp string) error {
		if err := writeJSON(filepath.Join(tmp, AdapterConfigFile), ac); err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(tmp, AdapterBaseFile), base); err != nil {
			return err
		}
		if err := safetensors.WriteFile(filepath.Join(tmp, AdapterWeightsFile), tensors, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		if err := copyTokenizer(tokenizerDir, tmp); err != nil {
			return err
		}
		for name, data := range extra {
			if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// loadAdapter loads the base model an adapter folder names (opts.BaseDir
// when set), checks its weights against the recorded digest, and applies
// the adapter: merged into the weights unless opts.Unmerged.
func loadAdapter(dir string, opts LoadOptions) (*Bert, *LoadReport, error) {
	ac, err := readAdapterConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	ref, err := ReadAdapterBase(dir)
	if err != nil {
		return nil, nil, err
	}
	baseDir := opts.BaseDir
	if baseDir == "" {
		baseDir = ref.Path
	}
	if _, err := os.Stat(filepath.Join(baseDir, ConfigFile)); err != nil {
		return nil, nil, fmt.Errorf("%s: adapter's base model %q is not a local model folder (%v)", dir, baseDir, err)
	}
	if ref.SHA256 != "" {
		file, digest, err := WeightsDigest(baseDir)
		if err != nil {
			return nil, nil, err
		}
		if file != ref.WeightsFile || digest != ref.SHA256 {
			return nil, nil, fmt.Errorf("%s: the adapter was trained on %s with %s sha256 %s; %s now has %s sha256 %s: not the same base model",
				dir, ref.Path, ref.WeightsFile, ref.SHA256, baseDir, file, digest)
		}
	}
	w, err := safetensors.Open(filepath.Join(dir, AdapterWeightsFile), nil)
	if err != nil {
		return nil, nil, err
	}
	defer w.Close()
	loraA, loraB, replaced := map[string]string{}, map[string]string{}, map[string]string{}
	for _, key := range w.Names() {
		name, ok := strings.CutPrefix(key, peftKeyPrefix)
		if !ok {
			return nil, nil, fmt.Errorf("%s: key %q does not start with %q: not a PEFT adapter of a transformers model", filepath.Join(dir, AdapterWeightsFile), key, peftKeyPrefix)
		}
		if prefix, ok := strings.CutSuffix(name, ".lora_A.weight"); ok {
			loraA[prefix] = key
		} else if prefix, ok := strings.CutSuffix(name, ".lora_B.weight"); ok {
			loraB[prefix] = key
		} else {
			replaced[name] = key
		}
	}
	// The head's labels: as recorded, else as many as the saved classifier
	// has rows (a PEFT adapter), named as the base names them if it agrees.
	labels := labelNames(ref.ID2Label)
	if labels == nil {
		if info, ok := w.Info(peftKeyPrefix + "classifier.weight"); ok && len(info.Shape) == 2 {
			cfg, err := LoadConfig(baseDir)
			if err != nil {
				return nil, nil, err
			}
			if labels = cfg.Labels(); len(labels) != int(info.Shape[0]) {
				labels = make([]string, info.Shape[0])
				for i := range labels {
					labels[i] = "LABEL_" + strconv.Itoa(i)
				}
			}
		}
	}
	if opts.HeadFromScratch {
		// A new task's head: the adapter's own is not used.
		delete(replaced, "classifier.weight")
		delete(replaced, "classifier.bias")
		labels, ref.ProblemType = opts.Labels, ""
	}
	_, headSaved := replaced["classifier.weight"]
	var m *Bert
	var rep *LoadReport
	if opts.Base != nil {
		if opts.Base.lora != nil || opts.Base.Quantized() || opts.Base.inputMap != nil {
			return nil, nil, fmt.Errorf("%s: a shared base must be a plain float32 model", dir)
		}
		m, rep = opts.Base.shareBase(), &LoadReport{Format: "shared base"}
		if labels != nil && !headSaved && len(labels) != m.Config.NumLabels() {
			m.Free()
			return nil, nil, fmt.Errorf("%s: the adapter has %d labels and no head, the base's head has %d", dir, len(labels), m.Config.NumLabels())
		}
		if labels != nil {
			m.Config.SetLabels(labels)
		}
		opts.Unmerged = true // merging would write the shared weights
	} else {
		if m, rep, err = Load(baseDir, LoadOptions{Labels: labels, HeadFromScratch: headSaved || opts.HeadFromScratch, Device: opts.Device}); err != nil {
			return nil, nil, err
		}
	}
	if ref.ProblemType != "" {
		m.Config.ProblemType = ref.ProblemType
	}
	fail := func(err error) (*Bert, *LoadReport, error) {
		m.Free()
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, AdapterWeightsFile), err)
	}
	src := stSource{w}
	for name, key := range replaced {
		p := m.byName[name]
		if p == nil {
			return fail(fmt.Errorf("%s: the base model has no weight %s", key, name))
		}
		t, shape, err := src.tensor(key, m.Device)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", key, err))
		}
		want, err := ParamShape(m.Config, name)
		if err != nil || !slices.Equal(shape, want) {
			drop(t)
			return fail(fmt.Errorf("%s: shape %v, the model's %s is %v", key, shape, name, want))
		}
		if err := m.replaceParam(name, t); err != nil {
			return fail(err)
		}
	}
	cfg := LoRAConfig{R: ac.R, Alpha: ac.LoraAlpha, Dropout: ac.LoraDropout, RSLoRA: ac.UseRSLoRA}
	m.lora, m.loraCfg = map[string]*loraLinear{}, &cfg
	for _, prefix := range LinearLayers(m.Config) {
		ka, okA := loraA[prefix]
		kb, okB := loraB[prefix]
		delete(loraA, prefix)
		delete(loraB, prefix)
		if !okA && !okB {
			continue
		}
		if !okA || !okB {
			return fail(fmt.Errorf("%s has only one of lora_A and lora_B", prefix))
		}
		a, sa, err := src.tensor(ka, m.Device)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", ka, err))
		}
		b, sb, err := src.tensor(kb, m.Device)
		if err != nil {
			drop(a)
			return fail(fmt.Errorf("%s: %w", kb, err))
		}
		ws := Shape(m.w(prefix + ".weight"))
		if len(sa) != 2 || len(sb) != 2 || sa[0] != int64(ac.R) || sb[1] != int64(ac.R) || sa[1] != ws[1] || sb[0] != ws[0] {
			drop(a, b)
			return fail(fmt.Errorf("%s: lora_A %v and lora_B %v do not fit r=%d and the layer's weight %v", prefix, sa, sb, ac.R, ws))
		}
		if err := m.addLoRA(prefix, a, b, cfg.Scale(), ac.LoraDropout); err != nil {
			return fail(err)
		}
		cfg.Targets = append(cfg.Targets, prefix)
	}
	for prefix := range loraA {
		return fail(fmt.Errorf("lora weights for %s, which is not a linear layer of this model", prefix))
	}
	for prefix := range loraB {
		return fail(fmt.Errorf("lora weights for %s, which is not a linear layer of this model", prefix))
	}
	if len(m.lora) == 0 {
		return fail(fmt.Errorf("no lora_A/lora_B weights"))
	}
	rep.Dir, rep.Format = dir, fmt.Sprintf("LoRA adapter (r=%d, %d layers) over %s", ac.R, len(m.lora), baseDir)
	if !opts.Unmerged {
		if err := m.MergeLoRA(); err != nil {
			return fail(err)
		}
	}
	return m, rep, nil
}

// labelNames lists id2label's names in id order, nil when it is empty or
// has gaps.
func labelNames(id2label map[int]string) []string {
	if len(id2label) == 0 {
		return nil
	}
	out := make([]string, len(id2label))
	for i := range out {
		name, ok := id2label[i]
		if !ok {
			return nil
		}
		out[i] = name
	}
	return out
}
