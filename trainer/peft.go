package trainer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
)

// Tuning resolves the run's parameter-efficient fine-tuning settings for a
// model of `layers` encoder layers: unset LoRA fields take PEFT's defaults
// (r 8, lora_alpha 8, query and value).
func (c Config) Tuning(layers int) (model.Tuning, error) {
	t := model.Tuning{Method: c.PEFT}
	switch t.Method {
	case "none":
		t.Method = model.TuneFull
	case model.TuneFull, model.TuneLoRA, model.TuneBitFit:
	default:
		return t, fmt.Errorf("peft %q: want lora, bitfit or none", c.PEFT)
	}
	if t.Method == model.TuneLoRA {
		t.LoRA = model.LoRAConfig{R: c.LoRAR, Alpha: c.LoRAAlpha, Dropout: c.LoRADropout, Targets: splitList(c.LoRATargets)}
		if t.LoRA.R == 0 {
			t.LoRA.R = model.DefaultLoRAR
		}
		if t.LoRA.Alpha == 0 {
			t.LoRA.Alpha = model.DefaultLoRAAlpha
		}
		if len(t.LoRA.Targets) == 0 {
			t.LoRA.Targets = model.DefaultLoRATargets
		}
	} else if c.LoRAR != 0 || c.LoRAAlpha != 0 || c.LoRADropout != 0 || c.LoRATargets != "" {
		return t, fmt.Errorf("lora_r, lora_alpha, lora_dropout and lora_targets need peft=lora")
	}
	var err error
	t.FreezeEmbeddings, t.FreezeLayers, err = model.ParseFreeze(c.FreezeLayers, layers)
	return t, err
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// FetchModel makes the model folder at path (local or gs://) readable
// here, with the base model when it is a LoRA adapter folder: base when
// set, else the one the adapter names. Load it with model.Load(local,
// model.LoadOptions{BaseDir: baseLocal}). cleanup removes what was copied.
// Under a trust policy both folders are verified (signature and closed
// file set) here, after the copy and before anything reads them.
func FetchModel(ctx context.Context, path, base string, trust signing.Trust) (local, baseLocal string, cleanup func(), err error) {
	local, cleanLocal, err := storage.LocalDir(ctx, path)
	if err != nil {
		return "", "", nil, err
	}
	if _, err := trust.Check(local, path); err != nil {
		cleanLocal()
		return "", "", nil, err
	}
	if !model.IsAdapter(local) {
		return local, "", cleanLocal, nil
	}
	if base == "" {
		ref, err := model.ReadAdapterBase(local)
		if err != nil {
			cleanLocal()
			return "", "", nil, err
		}
		base = ref.Path
	}
	baseLocal, cleanBase, err := storage.LocalDir(ctx, base)
	if err != nil {
		cleanLocal()
		return "", "", nil, fmt.Errorf("%s: the adapter's base model: %w", path, err)
	}
	if _, err := trust.Check(baseLocal, base); err != nil {
		cleanBase()
		cleanLocal()
		return "", "", nil, fmt.Errorf("%s: the adapter's base model: %w", path, err)
	}
	return local, baseLocal, func() { cleanBase(); cleanLocal() }, nil
}

// LoadModel loads the model folder at path (local or gs://; a LoRA adapter
// with its base, merged) for inference, and returns the local copy's folder
// for the files beside the weights (thresholds, vocabulary map) until
// cleanup.
func LoadModel(ctx context.Context, path string, opts model.LoadOptions, trust signing.Trust) (m *model.Bert, local string, cleanup func(), err error) {
	local, base, cleanup, err := FetchModel(ctx, path, "", trust)
	if err != nil {
		return nil, "", nil, err
	}
	opts.BaseDir = base
	m, _, err = model.Load(local, opts)
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return m, local, cleanup, nil
}

// adapterBase is the record a LoRA run's adapters carry of their base: the
// folder it started from, as an absolute path or gs:// URL, and the digest
// of its weights.
func adapterBase(path, local string) (model.AdapterBase, error) {
	if !storage.IsGCS(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return model.AdapterBase{}, err
		}
		path = abs
	}
	file, digest, err := model.WeightsDigest(local)
	if err != nil {
		return model.AdapterBase{}, err
	}
	return model.AdapterBase{Path: path, WeightsFile: file, SHA256: digest}, nil
}

// MergeAdapter writes the LoRA adapter folder at adapter (local or gs://)
// folded into its base as a plain HF folder at out: config.json,
// model.safetensors, the tokenizer (the adapter's, else the base's) and a
// multi-label model's thresholds. base, when set, replaces the base model
// folder the adapter names.
func MergeAdapter(ctx context.Context, adapter, base, out string, trust signing.Trust) error {
	local, baseLocal, cleanup, err := FetchModel(ctx, adapter, base, trust)
	if err != nil {
		return err
	}
	defer cleanup()
	if baseLocal == "" {
		return fmt.Errorf("%s is not a LoRA adapter folder (no %s)", adapter, model.AdapterConfigFile)
	}
	tokenizerDir := adapter
	if _, err := os.Stat(filepath.Join(local, model.TokenizerFile)); err != nil {
		tokenizerDir = baseLocal
	}
	defer model.LockThread()()
	m, rep, err := model.Load(local, model.LoadOptions{BaseDir: baseLocal})
	if err != nil {
		return err
	}
	defer m.Free()
	var extra map[string][]byte
	if data, err := os.ReadFile(filepath.Join(local, model.ThresholdsFile)); err == nil {
		extra = map[string][]byte{model.ThresholdsFile: data}
	}
	if err := ExportModel(ctx, m, out, tokenizerDir, extra); err != nil {
		return err
	}
	slog.Info("merge: "+rep.String(), "output", out)
	return nil
}
