package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/transforms"
)

func init() {
	register.DoFn4x1[context.Context, string, func(*dataset.BadRecord) bool, func(int64), error](&writeDeadLetterFn{})
	register.Emitter1[int64]()
	register.Function2x0(keyDeadLetter)
	register.Iter1[dataset.BadRecord]()
	register.Emitter2[string, dataset.BadRecord]()
	beam.RegisterType(reflect.TypeOf((*writeDeadLetterFn)(nil)).Elem())
}

// PrepareOptions configures the prepare pipeline.
type PrepareOptions struct {
	// Inputs are files or globs of one corpus to split by hash (Fractions).
	Inputs []string `json:"inputs,omitempty"`
	// Train, Validation and Test are files or globs of given splits; when any
	// is set, Inputs must be empty and no split is assigned by hash.
	Train      []string `json:"train,omitempty"`
	Validation []string `json:"validation,omitempty"`
	Test       []string `json:"test,omitempty"`

	Format string         `json:"format"` // csv, tsv, jsonl, text, or auto (from the file name)
	Header bool           `json:"header"`
	Fields dataset.Fields `json:"fields"`
	Labels []string       `json:"labels,omitempty"` // the label vocabulary; inferred when empty

	// Task is the kind of problem (dataset.SingleLabel when ""): carried by
	// the manifest to every later stage. LabelSeparator splits a
	// multi-label field ("" is ","); LabelRange ("min:max") bounds
	// regression labels.
	Task           string `json:"task,omitempty"`
	LabelSeparator string `json:"label_separator,omitempty"`
	LabelRange     string `json:"label_range,omitempty"`
	// LabelNames is a file naming the labels, one a line: line i (from 0)
	// names the label written i in the data (GoEmotions' emotions.txt, AG
	// News' classes.txt with --label_names_from=1). The names become the
	// label vocabulary, in the file's order, and appear in every later
	// stage's output instead of the ids.
	LabelNames     string `json:"label_names,omitempty"`
	LabelNamesFrom int    `json:"label_names_from,omitempty"` // the id of the file's first line

	labelIDs map[string]string // LabelNames read: id -> name (filled by withLabelNames)

	Fractions transforms.Fractions `json:"fractions"`
	Salt      string               `json:"salt"`
	// ValidationFromTrain moves this share of the given training file's
	// texts (by the same salted hash) into validation, for corpora that ship
	// only train and test files (AG News): the test split stays untouched
	// for the final number while training still selects checkpoints.
	ValidationFromTrain float64 `json:"validation_from_train,omitempty"`

	ModelDir       string  `json:"model_dir"` // its tokenizer.json is used
	MaxLength      int     `json:"max_length"`
	MaxRecordBytes int     `json:"max_record_bytes"`
	MaxBadFraction float64 `json:"max_bad_fraction"`
	ShardBytes     int64   `json:"shard_bytes"`
	KeepText       bool    `json:"keep_text"`

	Output string `json:"output"` // folder for manifest.json and shards, local or gs://
	Runner string `json:"-"`      // "" = --runner flag (prism by default)
}

// DefaultPrepareOptions are the defaults the CLI starts from.
func DefaultPrepareOptions() PrepareOptions {
	return PrepareOptions{
		Format: "auto", Header: true, Fractions: transforms.Fractions{Train: 0.8, Validation: 0.1, Test: 0.1},
		Salt: "beamtune", MaxLength: 128, MaxRecordBytes: dataset.DefaultMaxRecordBytes,
		MaxBadFraction: 0.05, ShardBytes: 64 << 20,
	}
}

// PrepareResult is what RunPrepare produced.
type PrepareResult struct {
	Manifest *dataset.Manifest
	Skipped  bool // the output already held a manifest for the same inputs and options
}

// RunPrepare reads, validates, dedupes, splits, tokenizes and shards a corpus.
// It is a no-op when Output already holds a manifest with the same
// fingerprint; otherwise it writes a fresh data folder and then replaces the
// manifest atomically, so readers never see a mix of runs.
func RunPrepare(ctx context.Context, o PrepareOptions) (*PrepareResult, error) {
	o, err := withLabelNames(ctx, o)
	if err != nil {
		return nil, err
	}
	files, err := resolveInputs(ctx, o)
	if err != nil {
		return nil, err
	}
	if _, err := CheckModelDir(ctx, o.ModelDir, ModelUse{Role: "--model", Tokenizer: true, Bundle: true}); err != nil {
		return nil, err
	}
	if err := CheckOutput(ctx, o.Output); err != nil {
		return nil, err
	}
	tokPath := storage.Join(o.ModelDir, model.TokenizerFile)
	tokData, err := storage.ReadFile(ctx, tokPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	tokSum := sha256.Sum256(tokData)
	fp, err := prepareFingerprint(ctx, o, files, hex.EncodeToString(tokSum[:]))
	if err != nil {
		return nil, err
	}
	if old, err := dataset.ReadManifest(ctx, o.Output); err == nil && old.Fingerprint == fp {
		slog.Info("prepare: output already holds this dataset; nothing to do", "output", o.Output, "fingerprint", fp[:12])
		// Chunks a run could not delete (its deletes kept failing, or it
		// reported failure after its manifest landed) are removed here:
		// with the dataset complete, nothing else would ever remove them.
		removeSpill(ctx, o.Output, fp)
		return &PrepareResult{Manifest: old, Skipped: true}, nil
	}
	plan, err := planShards(ctx, o, files)
	if err != nil {
		return nil, err
	}
	p, err := buildPrepare(o, files, plan, fp, tokPath, hex.EncodeToString(tokSum[:]))
	if err != nil {
		return nil, err
	}
	_, err = run(ctx, o.Runner, p)
	// The chunks are only the run's shuffle: drop them whether it worked or
	// not (a failed run's chunks would otherwise sit in a folder no manifest
	// names until a later run's cleanup).
	removeSpill(ctx, o.Output, fp)
	if err != nil {
		return nil, err
	}
	m, err := dataset.ReadManifest(ctx, o.Output)
	if err != nil {
		return nil, fmt.Errorf("prepare finished but its manifest cannot be read: %w", err)
	}
	if m.Fingerprint != fp {
		return nil, fmt.Errorf("prepare: %s holds a manifest of another run (fingerprint %s, want %s): was another prepare writing there?", o.Output, m.Fingerprint[:12], fp[:12])
	}
	removeStaleData(ctx, o.Output, m.DataDir)
	return &PrepareResult{Manifest: m}, nil
}

// resolveInputs expands globs into InputFiles, each with its split.
func resolveInputs(ctx context.Context, o PrepareOptions) ([]transforms.InputFile, error) {
	files, err := resolveInputFiles(ctx, o)
	return files, badInput(err)
}

func resolveInputFiles(ctx context.Context, o PrepareOptions) ([]transforms.InputFile, error) {
	given := len(o.Train)+len(o.Validation)+len(o.Test) > 0
	if given && len(o.Inputs) > 0 {
		return nil, errors.New("give either --input (one corpus, split by hash) or --train/--validation/--test files, not both")
	}
	if !given && len(o.Inputs) == 0 {
		return nil, errors.New("no input: give --input or --train/--validation/--test")
	}
	if !given {
		if err := o.Fractions.Validate(); err != nil {
			return nil, err
		}
	}
	task, err := dataset.ParseTask(o.Task)
	if err != nil {
		return nil, err
	}
	labelRange, err := dataset.ParseLabelRange(o.LabelRange)
	if err != nil {
		return nil, err
	}
	if labelRange != nil && task != dataset.Regression {
		return nil, fmt.Errorf("label_range is for --task=%s", dataset.Regression)
	}
	if task == dataset.Regression && len(o.Labels) > 0 {
		return nil, fmt.Errorf("label_vocab is for classification; a regression label is a number")
	}
	if o.ValidationFromTrain < 0 || o.ValidationFromTrain >= 1 {
		return nil, fmt.Errorf("validation_from_train %g: want a share in [0, 1)", o.ValidationFromTrain)
	}
	if o.ValidationFromTrain > 0 && (len(o.Train) == 0 || len(o.Validation) > 0) {
		return nil, errors.New("validation_from_train needs --train files and no --validation files")
	}
	if o.Output == "" {
		return nil, errors.New("no --output folder")
	}
	// A bad gs:// output (credentials in it, say) is refused here, before
	// the pipeline runs and its workers name the output in their errors.
	if storage.IsGCS(o.Output) {
		if _, _, err := storage.ParseGCS(o.Output); err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
	}
	var out []transforms.InputFile
	add := func(patterns []string, split string) error {
		for _, pat := range patterns {
			matches, err := storage.Glob(ctx, pat)
			if err != nil {
				return fmt.Errorf("input %s: %w", storage.Redact(pat), err)
			}
			if len(matches) == 0 {
				return fmt.Errorf("input %s: no such file", storage.Redact(pat))
			}
			for _, m := range matches {
				f, err := dataset.ParseFormat(o.Format, m)
				if err != nil {
					return err
				}
				out = append(out, transforms.InputFile{Path: m, Parse: dataset.ParseConfig{
					Format: f, Header: o.Header, Fields: o.Fields, Split: split,
					MaxRecordBytes: o.MaxRecordBytes, Labels: o.Labels,
					Task: task, LabelSeparator: o.LabelSeparator, LabelRange: labelRange, LabelNames: o.labelIDs,
				}})
			}
		}
		return nil
	}
	for _, g := range []struct {
		pats  []string
		split string
	}{{o.Inputs, ""}, {o.Train, dataset.SplitTrain}, {o.Validation, dataset.SplitValidation}, {o.Test, dataset.SplitTest}} {
		if err := add(g.pats, g.split); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, f := range out {
		if seen[f.Path] {
			return nil, fmt.Errorf("input %s is named twice", f.Path)
		}
		seen[f.Path] = true
	}
	return out, nil
}

// prepareFingerprint identifies a prepare run by its inputs (path, size and
// version as storage reports them) and everything that changes its output.
func prepareFingerprint(ctx context.Context, o PrepareOptions, files []transforms.InputFile, tokSHA string) (string, error) {
	h := sha256.New()
	o.Output = "" // where the data goes does not change what it is
	cfg, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("fingerprint of the options: %w", err)
	}
	h.Write(cfg)
	h.Write([]byte(tokSHA))
	for _, f := range files {
		st, err := storage.Stat(ctx, f.Path)
		if err != nil {
			return "", fmt.Errorf("input %s: %w", f.Path, err)
		}
		fmt.Fprintf(h, "\n%s|%s|%d|%d|%d", f.Path, f.Parse.Split, st.Size, st.ModTime.UnixNano(), st.Generation)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// planShards fixes each split's shard count before the run, from the
// inputs' stored sizes: the bytes a split's rows take in a shard (token ids,
// id, text) come close to the bytes of their text in a TSV, CSV or JSONL
// file, and a gzip input (seen by its magic bytes, as the reader sees it) is
// counted as four times its size. Counting the rows first would need a pass
// over the corpus, or holding it, before the first row could be placed.
func planShards(ctx context.Context, o PrepareOptions, files []transforms.InputFile) (transforms.ShardPlan, error) {
	est := map[string]float64{}
	for _, f := range files {
		st, err := storage.Stat(ctx, f.Path)
		if err != nil {
			return transforms.ShardPlan{}, fmt.Errorf("input %s: %w", f.Path, err)
		}
		size := float64(st.Size)
		if gz, err := isGzip(ctx, f.Path); err != nil {
			return transforms.ShardPlan{}, err
		} else if gz {
			size *= 4
		}
		switch split := f.Parse.Split; {
		case split == "":
			est[dataset.SplitTrain] += size * o.Fractions.Train
			est[dataset.SplitValidation] += size * o.Fractions.Validation
			est[dataset.SplitTest] += size * o.Fractions.Test
		case split == dataset.SplitTrain && o.ValidationFromTrain > 0:
			est[dataset.SplitTrain] += size * (1 - o.ValidationFromTrain)
			est[dataset.SplitValidation] += size * o.ValidationFromTrain
		default:
			est[split] += size
		}
	}
	bytes := map[string]int64{}
	for split, v := range est {
		bytes[split] = int64(math.Ceil(v))
	}
	return transforms.PlanShards(bytes, o.ShardBytes), nil
}

func isGzip(ctx context.Context, path string) (bool, error) {
	r, err := storage.Open(ctx, path)
	if err != nil {
		return false, fmt.Errorf("input %s: %w", path, err)
	}
	defer r.Close()
	var magic [2]byte
	n, err := io.ReadFull(r, magic[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("input %s: %w", path, err)
	}
	return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b, nil
}

// spillDir is where a run's shard chunks wait, relative to the output.
func spillDir(fp string) string { return "data-" + fp[:12] + "/_spill" }

// removeSpill deletes the shard chunks of the run with fingerprint fp. They
// are scratch: a failure only leaves garbage, so it is logged, not returned.
func removeSpill(ctx context.Context, out, fp string) {
	if err := storage.RemoveAll(ctx, storage.Join(out, spillDir(fp))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("prepare: cannot remove the spill folder", "dir", spillDir(fp), "err", err)
	}
}

// buildPrepare wires the pipeline so that nothing proportional to the corpus
// goes through a GroupByKey or a side input, which prism and the direct
// runner hold in memory: one pass per file reads, tokenizes and spills each
// row to a chunk of its final shard; Beam groups only the chunks' names by
// shard; one writer per shard dedupes, sorts and writes it (see
// transforms.ShardPlan). The records are not reshuffled after reading: that
// would put every row through the runner's memory again.
func buildPrepare(o PrepareOptions, files []transforms.InputFile, plan transforms.ShardPlan, fp, tokPath, tokSHA string) (*beam.Pipeline, error) {
	p, s := beam.NewPipelineWithRoot()
	dataDir := "data-" + fp[:12]

	inputs := beam.Reshuffle(s, beam.CreateList(s.Scope("Inputs"), files))
	chunks, allBad, fingerprints, seenLabels := beam.ParDo4(s.Scope("ReadTokenizeSpill"), &transforms.SpillRecordsFn{
		TokenizerPath: tokPath, MaxLength: o.MaxLength, KeepText: o.KeepText,
		Split: transforms.KeyByTextFn{Salt: o.Salt, Fractions: o.Fractions, ValidationFromTrain: o.ValidationFromTrain},
		Plan:  plan, TempDir: storage.Join(o.Output, spillDir(fp)),
	}, inputs)
	labels := transforms.LabelVocabularyOf(s, seenLabels, o.Labels)

	byShard := beam.GroupByKey(s.Scope("GroupChunksByShard"), beam.ParDo(s.Scope("RouteChunks"), &transforms.RouteSpillFn{Plan: plan}, chunks))
	shards, shardStats, events := beam.ParDo3(s.Scope("WriteShards"), &transforms.WriteShardFn{Root: o.Output, Dir: dataDir, Plan: plan, Task: o.Task},
		byShard, beam.SideInput{Input: labels})
	st := beam.Combine(s.Scope("Stats"), &transforms.StatsFn{}, shardStats)

	deadLetter := dataDir + "/" + dataset.DeadLetterFile
	written := beam.ParDo(s.Scope("WriteDeadLetter"), &writeDeadLetterFn{Path: storage.Join(o.Output, deadLetter)},
		beam.GroupByKey(s, beam.ParDo(s, keyDeadLetter, allBad)))

	badCounts := stats.SumPerKey(s.Scope("CountRejected"), beam.ParDo(s, transforms.BadKindCount, allBad))
	dedupeCounts := stats.SumPerKey(s.Scope("CountDedupe"), beam.ParDo(s, transforms.DedupeKindCount, events))

	cfg, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	task, err := dataset.ParseTask(o.Task)
	if err != nil {
		return nil, err
	}
	base := dataset.Manifest{Fingerprint: fp, DataDir: dataDir, Config: cfg, Task: task}
	base.Tokenizer.Path, base.Tokenizer.SHA256, base.Tokenizer.MaxLength = tokPath, tokSHA, o.MaxLength
	base.Rejected.DeadLetter = deadLetter
	beam.ParDo0(s.Scope("WriteManifest"), &transforms.WriteManifestFn{Root: o.Output, Base: base, MaxBadFraction: o.MaxBadFraction, Inputs: len(files)},
		beam.Impulse(s),
		beam.SideInput{Input: shards}, beam.SideInput{Input: st}, beam.SideInput{Input: labels},
		beam.SideInput{Input: badCounts}, beam.SideInput{Input: dedupeCounts},
		beam.SideInput{Input: fingerprints}, beam.SideInput{Input: written})
	return p, nil
}

// keyDeadLetter sends every bad record to one writer, which sorts them so the
// file is the same on every runner. Dead letters are bounded by
// --max_bad_fraction and each keeps at most 1 MiB of raw text.
func keyDeadLetter(b dataset.BadRecord, emit func(string, dataset.BadRecord)) {
	emit("rejects", b)
}

// writeDeadLetterFn writes the dead-letter JSONL file: one line per rejected
// record with its source, line, reason and raw text.
type writeDeadLetterFn struct {
	Path string
}

func (fn *writeDeadLetterFn) ProcessElement(ctx context.Context, _ string, bad func(*dataset.BadRecord) bool, emitRows func(int64)) error {
	w, err := storage.Create(ctx, fn.Path)
	if err != nil {
		return err
	}
	var rows []dataset.BadRecord
	var b dataset.BadRecord
	for bad(&b) {
		rows = append(rows, b)
	}
	// Deterministic order: the same input gives the same file on every runner.
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Source != rows[j].Source {
			return rows[i].Source < rows[j].Source
		}
		return rows[i].Line < rows[j].Line
	})
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			w.Abort()
			return fmt.Errorf("dead letter %s: %w", fn.Path, err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	emitRows(int64(len(rows)))
	return nil
}

// removeStaleData deletes data folders of earlier runs once the new manifest
// is in place. Failures only leave garbage, so they are logged, not returned.
func removeStaleData(ctx context.Context, out, keep string) {
	matches, err := storage.Glob(ctx, storage.Join(out, "data-*/*"))
	if err != nil {
		slog.Warn("prepare: cannot list old data folders", "err", err)
		return
	}
	stale := map[string]bool{}
	for _, m := range matches {
		rel := strings.TrimPrefix(strings.TrimPrefix(m, strings.TrimSuffix(out, "/")), "/")
		dir := strings.SplitN(rel, "/", 2)[0]
		if dir != keep && strings.HasPrefix(dir, "data-") {
			stale[dir] = true
		}
	}
	for dir := range stale {
		if err := storage.RemoveAll(ctx, storage.Join(out, dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			slog.Warn("prepare: cannot remove old data folder", "dir", dir, "err", err)
		}
	}
}

// withLabelNames reads o.LabelNames, if set, into the id -> name map the
// parsers apply, and makes the names the label vocabulary.
func withLabelNames(ctx context.Context, o PrepareOptions) (PrepareOptions, error) {
	if o.LabelNames == "" {
		return o, nil
	}
	if len(o.Labels) > 0 {
		return o, badInputf("give --label_names or --label_vocab, not both")
	}
	if o.Task == dataset.Regression {
		return o, badInputf("--label_names is for classification; a regression label is a number")
	}
	data, err := storage.ReadFileLimit(ctx, o.LabelNames, 16<<20)
	if err != nil {
		return o, badInputf("--label_names: %w", err)
	}
	o.labelIDs = map[string]string{}
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimRight(string(data), "\r\n"), "\n") {
		name := strings.TrimSpace(line)
		if name == "" || seen[name] {
			return o, badInputf("%s:%d: a label name must be non-empty and given once, got %q", o.LabelNames, i+1, name)
		}
		seen[name] = true
		o.labelIDs[strconv.Itoa(o.LabelNamesFrom+i)] = name
		o.Labels = append(o.Labels, name)
	}
	return o, nil
}
