package pipelines

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/model/pickle"
	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/beamtune/beamtune/model/tokenizer"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// Checks the driver makes before it builds a pipeline. A pipeline that is
// handed a broken model folder or an unwritable output fails on a worker,
// after it has started, and Beam buries the reason under its execution plan;
// the same checks here fail in milliseconds with one line that names the
// file and the reason.

// ErrBadInput is what every error about a command's input wraps: a model
// folder, dataset, input file, output or flag that cannot be used as given.
// Commands exit with status 2 for it (1 is a failure while running).
var ErrBadInput = errors.New("bad input")

// inputError is an error in what the command was given. Its text is the
// reason alone; errors.Is(err, ErrBadInput) tells it apart.
type inputError struct{ err error }

func (e inputError) Error() string        { return e.err.Error() }
func (e inputError) Unwrap() error        { return e.err }
func (e inputError) Is(target error) bool { return target == ErrBadInput }

// badInput marks err as an input error (nil stays nil).
func badInput(err error) error {
	if err == nil || errors.Is(err, ErrBadInput) {
		return err
	}
	return inputError{err}
}

// badInputf is fmt.Errorf for input errors.
func badInputf(format string, args ...any) error { return inputError{fmt.Errorf(format, args...)} }

// ModelUse says what a command needs of a model folder beyond the rule that
// every folder meets.
type ModelUse struct {
	// Role names the folder in errors ("--init", "--teacher", "model student").
	Role string
	// Tokenizer: the command tokenizes text with the folder's tokenizer.json.
	Tokenizer bool
	// Head: the command needs the model's classification head (id2label).
	Head bool
	// Labels, when set, are the labels the model must predict, in order
	// (Head is then implied).
	Labels []string
	// Bundle: the command takes a multi-task bundle (train --init, predict).
	// Elsewhere a bundle is refused, naming its task folders.
	Bundle bool
	// Trust, when set, is the policy the folder must be signed under: its
	// signature and closed file set are verified first.
	Trust signing.Trust
}

// maxConfigBytes bounds the config.json read in the driver: a real one is a
// few KB.
const maxConfigBytes = 1 << 20

// maxTokenizerBytes bounds the tokenizer.json read in the driver (the
// largest HF tokenizers are a few tens of MB).
const maxTokenizerBytes = 256 << 20

// CheckModelDir is the one rule for model folders, applied by every command
// that reads one (train --init, distill --teacher, evaluate --model and
// --champion, predict, retrain), before any pipeline is built:
//
//   - A folder that beamtune published (it carries the training log or the
//     training job that publishing adds) must be complete: it has
//     _COMPLETE, written last. A folder without it is a publication that did
//     not finish, and is refused.
//   - Any other folder is a plain HF folder (from save_pretrained, a hub
//     download, the pretrained model setup installs) and is taken as it is.
//
// Either way the folder must hold a valid config.json (within beamtune's
// limits), weights whose header is sound (model.safetensors: header length,
// dtypes, shapes and offsets against the file size; pytorch_model.bin: the
// pickle is scanned without running it), and, when use asks, a tokenizer.json
// that parses and the labels the data has. Nothing is loaded into libtorch.
func CheckModelDir(ctx context.Context, dir string, use ModelUse) (*model.Config, error) {
	cfg, err := checkModelDir(ctx, dir, use)
	if err != nil && use.Role != "" {
		err = fmt.Errorf("%s: %w", use.Role, err)
	}
	return cfg, badInput(err)
}

func checkModelDir(ctx context.Context, dir string, use ModelUse) (*model.Config, error) {
	if dir == "" {
		return nil, errors.New("no model folder given")
	}
	if storage.IsGCS(dir) {
		if _, _, err := storage.ParseGCS(dir); err != nil {
			return nil, err
		}
	}
	if err := verifyModelDir(ctx, dir, use.Trust); err != nil {
		return nil, err
	}
	configPath := storage.Join(dir, model.ConfigFile)
	configData, err := storage.ReadFileLimit(ctx, configPath, maxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		if ok, err := storage.Exists(ctx, storage.Join(dir, model.AdapterConfigFile)); err == nil && ok {
			return checkAdapterDir(ctx, dir, use)
		}
		if ok, err := storage.Exists(ctx, dir); err == nil && !ok {
			return nil, fmt.Errorf("model folder %s does not exist", dir)
		}
		return nil, fmt.Errorf("%s: no %s: not a HF model folder (nor a LoRA adapter folder: no %s)", dir, model.ConfigFile, model.AdapterConfigFile)
	}
	if err != nil {
		return nil, err
	}
	if err := checkPublished(ctx, dir); err != nil {
		return nil, err
	}
	cfg, err := model.ParseConfig(configData, configPath)
	if err != nil {
		return nil, err
	}
	tensors, err := checkWeights(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := checkTokenizer(ctx, dir, configPath, cfg, use); err != nil {
		return nil, err
	}
	heads, err := checkBundle(ctx, dir, tensors, use)
	if err != nil || heads != nil {
		return cfg, err
	}
	if use.Head || use.Labels != nil {
		if err := checkHead(dir, cfg, tensors, use.Labels); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// checkBundle applies the rule to a multi-task bundle: tasks.json is sound,
// every task's head is in the weights, and the command takes bundles. It
// returns the bundle's heads, or nil for a folder that is not a bundle.
func checkBundle(ctx context.Context, dir string, tensors []string, use ModelUse) ([]model.TaskHead, error) {
	heads, err := readBundleTasks(ctx, dir)
	if err != nil || heads == nil {
		return nil, err
	}
	names := make([]string, len(heads))
	for i, h := range heads {
		names[i] = h.Name
		if !slices.Contains(tensors, model.HeadWeight(h.Name)) {
			return nil, fmt.Errorf("%s: its weights have no %s, the head of task %s", dir, model.HeadWeight(h.Name), h.Name)
		}
	}
	if !use.Bundle {
		return nil, fmt.Errorf("%s is a multi-task bundle (tasks %s): give one task's folder, %s", dir, strings.Join(names, ", "), storage.Join(dir, model.TasksDir, names[0]))
	}
	return heads, nil
}

// readBundleTasks reads dir's tasks.json: nil when dir is not a bundle.
func readBundleTasks(ctx context.Context, dir string) ([]model.TaskHead, error) {
	path := storage.Join(dir, model.TasksFile)
	data, err := storage.ReadFileLimit(ctx, path, maxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return model.ParseTasks(data, path)
}

// BundleTasks is the task heads of a multi-task bundle, nil for another
// model folder (the folder is assumed checked by CheckModelDir).
func BundleTasks(ctx context.Context, dir string) ([]model.TaskHead, error) {
	heads, err := readBundleTasks(ctx, dir)
	return heads, badInput(err)
}

// checkAdapterDir applies the rule to a LoRA adapter folder (PEFT's
// layout): the folder's adapter_config.json and weights header, its
// tokenizer, and its base model folder, by the same rule. The config
// returned is the base's with the adapter's labels.
func checkAdapterDir(ctx context.Context, dir string, use ModelUse) (*model.Config, error) {
	if err := checkPublished(ctx, dir); err != nil {
		return nil, err
	}
	acPath := storage.Join(dir, model.AdapterConfigFile)
	data, err := storage.ReadFileLimit(ctx, acPath, maxConfigBytes)
	if err != nil {
		return nil, err
	}
	ac, err := model.ParseAdapterConfig(data, acPath)
	if err != nil {
		return nil, err
	}
	basePath := storage.Join(dir, model.AdapterBaseFile)
	record, err := storage.ReadFileLimit(ctx, basePath, maxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		record, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	base, err := model.AdapterBaseOf(ac, record, basePath)
	if err != nil {
		return nil, err
	}
	cfg, err := checkModelDir(ctx, base.Path, ModelUse{})
	if err != nil {
		return nil, fmt.Errorf("%s: its base model: %w", dir, err)
	}
	if base.SHA256 != "" {
		if err := checkBaseDigest(ctx, dir, base); err != nil {
			return nil, err
		}
	}
	wPath := storage.Join(dir, model.AdapterWeightsFile)
	info, err := storage.Stat(ctx, wPath)
	if err != nil {
		return nil, err
	}
	tensors, err := checkSafetensorsHeader(ctx, wPath, info.Size)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(tensors, func(n string) bool { return strings.HasSuffix(n, ".lora_A.weight") }) {
		return nil, fmt.Errorf("%s has no lora_A weights: not a LoRA adapter", wPath)
	}
	if len(base.ID2Label) > 0 {
		cfg.ID2Label = base.ID2Label
	}
	if base.ProblemType != "" {
		cfg.ProblemType = base.ProblemType
	}
	if err := checkTokenizer(ctx, dir, storage.Join(base.Path, model.ConfigFile), cfg, use); err != nil {
		return nil, err
	}
	if use.Head || use.Labels != nil {
		head := slices.Contains(tensors, "base_model.model."+headWeight)
		if !head {
			// The head may be the base's own (an adapter saved without modules_to_save).
			if baseTensors, err := checkWeights(ctx, base.Path); err == nil {
				head = slices.Contains(baseTensors, headWeight)
			}
		}
		if !head {
			return nil, fmt.Errorf("%s has no classification head (neither the adapter nor its base has %s)", dir, headWeight)
		}
		if err := checkHead(dir, cfg, []string{headWeight}, use.Labels); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// checkBaseDigest compares the adapter's record of its base's weights with
// the weights there now (the load on the workers checks it again).
func checkBaseDigest(ctx context.Context, dir string, base model.AdapterBase) error {
	path := storage.Join(base.Path, base.WeightsFile)
	r, err := storage.Open(ctx, path)
	if err != nil {
		return fmt.Errorf("%s: its base model: %w", dir, err)
	}
	defer r.Close()
	got, err := model.Digest(r)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if got != base.SHA256 {
		return fmt.Errorf("%s: the adapter was trained on %s with sha256 %s, which now has sha256 %s: not the same base model",
			storage.Join(dir, model.AdapterBaseFile), path, base.SHA256, got)
	}
	return nil
}

// checkTokenizer checks dir's tokenizer.json whenever the folder has one:
// it must be there when the command tokenizes with it, and fit the model
// whose config.json is at configPath.
func checkTokenizer(ctx context.Context, dir, configPath string, cfg *model.Config, use ModelUse) error {
	tokPath := storage.Join(dir, model.TokenizerFile)
	data, err := storage.ReadFileLimit(ctx, tokPath, maxTokenizerBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist) && use.Tokenizer:
		return fmt.Errorf("%s: no %s: the model folder must carry the tokenizer it was trained with", dir, model.TokenizerFile)
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		tok, err := tokenizer.FromJSON(data)
		if err != nil {
			return fmt.Errorf("%s: %w", tokPath, err)
		}
		// Token ids past the embedding table fail the first forward pass
		// on a worker ("index out of range"): a tokenizer of another model.
		if tok.VocabSize() > cfg.VocabSize {
			return fmt.Errorf("%s has token ids up to %d, but %s has vocab_size %d: the tokenizer belongs to another model",
				tokPath, tok.VocabSize()-1, configPath, cfg.VocabSize)
		}
	}
	return nil
}

// beamtuneMetadata are the files publishing adds to a model folder, copied
// before any of the model's own (see storage.PublishDir): their presence
// marks a beamtune-published folder.
var beamtuneMetadata = []string{trainer.PublishedJobFile, report.PublishedTrainLogFile}

// checkPublished applies the completeness half of the rule.
func checkPublished(ctx context.Context, dir string) error {
	if storage.Published(ctx, dir) {
		return nil
	}
	for _, name := range beamtuneMetadata {
		ok, err := storage.Exists(ctx, storage.Join(dir, name))
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("%s: published by beamtune (it has %s) but has no %s: its publication did not finish; run the command that publishes it again",
				dir, name, storage.CompleteMarker)
		}
	}
	return nil
}

// checkWeights checks the folder's weights file without loading it and
// returns the names of its tensors.
func checkWeights(ctx context.Context, dir string) ([]string, error) {
	st := storage.Join(dir, model.SafetensorsFile)
	info, err := storage.Stat(ctx, st)
	if err == nil {
		return checkSafetensorsHeader(ctx, st, info.Size)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	bin := storage.Join(dir, model.PytorchFile)
	info, err = storage.Stat(ctx, bin)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no %s or %s", dir, model.SafetensorsFile, model.PytorchFile)
	}
	if err != nil {
		return nil, err
	}
	return checkPickle(ctx, bin, info.Size)
}

// checkSafetensorsHeader reads the 8-byte header length and the header, and
// validates the header against the file's size: the data itself is not read.
func checkSafetensorsHeader(ctx context.Context, path string, size int64) ([]string, error) {
	r, err := storage.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	prefix := make([]byte, min(size, 8))
	if _, err := io.ReadFull(r, prefix); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(prefix) == 8 {
		// The header length comes from the file: read no more of it than
		// the parser will accept, or than the file holds.
		n := binary.LittleEndian.Uint64(prefix)
		if n <= uint64(safetensors.DefaultMaxHeaderSize) && n <= uint64(size-8) {
			head := make([]byte, n)
			if _, err := io.ReadFull(r, head); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			prefix = append(prefix, head...)
		}
	}
	f, err := safetensors.ReadFrom(headerOnly{prefix}, size, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := f.Names()
	return names, f.Close()
}

// headerOnly is a safetensors file of which only the first bytes are at
// hand: reads past them fail, which the header check never does.
type headerOnly struct{ b []byte }

func (h headerOnly) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(h.b)) {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, h.b[off:])
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// checkPickle scans a pytorch_model.bin the way loading it would, without
// running it: a refused pickle (one that calls os.system, say) never reaches
// a worker.
func checkPickle(ctx context.Context, path string, size int64) ([]string, error) {
	var ra io.ReaderAt
	if storage.IsGCS(path) {
		data, err := storage.ReadFile(ctx, path)
		if err != nil {
			return nil, err
		}
		ra, size = bytes.NewReader(data), int64(len(data))
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		ra = f
	}
	pf, err := pickle.Open(ra, size, pickle.Limits{})
	if err != nil {
		var pe *pickle.Error
		if errors.As(err, &pe) && pe.File == "" {
			pe.File = path
			return nil, pe
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pf.Names(), nil
}

// headWeight is the classification head's weight in a HF
// BertForSequenceClassification checkpoint; a bare encoder (BertModel, as
// pretrained models ship) has none.
const headWeight = "classifier.weight"

// checkHead makes sure the model has a trained classification head and,
// when want is set, that it predicts the data's labels.
func checkHead(dir string, cfg *model.Config, tensors []string, want []string) error {
	if !slices.Contains(tensors, headWeight) {
		return fmt.Errorf("%s has no classification head (its weights have no %s): fine-tune it first (beamtune train --init=%s)", dir, headWeight, dir)
	}
	got := cfg.Labels()
	if want != nil && strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		return fmt.Errorf("%s predicts %d labels [%s], the data has %d [%s]", dir, len(got), strings.Join(got, ","), len(want), strings.Join(want, ","))
	}
	return nil
}

// CheckDataset reads and checks a prepared dataset's manifest in the driver.
func CheckDataset(ctx context.Context, dir string) (*dataset.Manifest, error) {
	if dir == "" {
		return nil, badInputf("no dataset folder given (--data)")
	}
	m, err := dataset.ReadManifest(ctx, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, badInputf("%s: no %s: not a dataset folder made by beamtune prepare", dir, dataset.ManifestFile)
	}
	return m, badInput(err)
}

// probeFile is what CheckOutput writes and removes.
const probeFile = ".beamtune-write-probe"

// CheckOutput makes sure files can be written under dir (a local folder,
// made if missing, or a gs:// prefix) by writing and removing a probe file.
func CheckOutput(ctx context.Context, dir string) error {
	if dir == "" {
		return badInputf("no output folder given (--output)")
	}
	if storage.IsGCS(dir) {
		if _, _, err := storage.ParseGCS(dir); err != nil {
			return badInputf("output: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return badInputf("output %s cannot be written: %w", dir, err)
	}
	probe := storage.Join(dir, probeFile)
	if err := storage.WriteFile(ctx, probe, []byte("beamtune\n")); err != nil {
		return badInputf("output %s cannot be written: %w", storage.Redact(dir), err)
	}
	if err := storage.Remove(ctx, probe); err != nil {
		return fmt.Errorf("output %s: removing the write probe: %w", storage.Redact(dir), err)
	}
	return nil
}

// CheckThreshold resolves the threshold rule a stage will decide a model's
// labels by (see model.Thresholds.Resolve) before any worker starts, and
// returns the thresholds and the rule's name: a rule for a model that is not
// multi-label, or tuned thresholds the folder lacks, fail here.
func CheckThreshold(ctx context.Context, dir, task, rule string, labels int) ([]float64, string, error) {
	if task != dataset.MultiLabel {
		if rule != "" {
			return nil, "", badInputf("--threshold is for %s models; %s is a %s model", dataset.MultiLabel, dir, task)
		}
		return nil, "", nil
	}
	path := storage.Join(dir, model.ThresholdsFile)
	var th *model.Thresholds
	data, err := storage.ReadFile(ctx, path)
	switch {
	case err == nil:
		if th, err = model.ParseThresholds(data, path); err != nil {
			return nil, "", badInputf("%v", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", err
	}
	values, name, err := th.Resolve(rule, labels)
	if err != nil {
		return nil, "", badInputf("%s: %v", dir, err)
	}
	return values, name, nil
}

// CheckTrainedModel checks a trained model folder against the prepared
// dataset at data: the folder as CheckModelDir does (with its tokenizer and
// the dataset's labels), and the same task kind. role names the flag.
func CheckTrainedModel(ctx context.Context, dir, role, data string, trust signing.Trust) (*dataset.Manifest, *model.Config, error) {
	man, err := CheckDataset(ctx, data)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := CheckModelDir(ctx, dir, ModelUse{Role: role, Tokenizer: true, Labels: man.Labels, Trust: trust})
	if err != nil {
		return nil, nil, err
	}
	if cfg.Task() != man.TaskKind() {
		return nil, nil, badInputf("%s: %s is a %s model, the dataset %s is %s", role, dir, cfg.Task(), data, man.TaskKind())
	}
	return man, cfg, nil
}

// verifyModelDir checks dir (and a LoRA adapter's base) under the trust
// policy, on a local copy for gs:// folders.
func verifyModelDir(ctx context.Context, dir string, trust signing.Trust) error {
	if !trust.Enabled() {
		return nil
	}
	if ok, err := storage.Exists(ctx, dir); err == nil && !ok && !storage.IsGCS(dir) {
		return fmt.Errorf("model folder %s does not exist", dir)
	}
	_, _, cleanup, err := trainer.FetchModel(ctx, dir, "", trust)
	if err != nil {
		return err
	}
	cleanup()
	return nil
}
