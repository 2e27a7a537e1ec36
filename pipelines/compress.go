package pipelines

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/model/tokenizer"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
	"github.com/beamtune/beamtune/transforms"
)

// Folders and files of a compress run (under CompressOptions.Output).
const (
	CompressedModel  = "compressed"    // the published result
	compressPruneDir = "prune"         // step-N/importance.json and step-N/model
	compressRecovery = "recovery"      // the recovery distillation's run folder
	CompressSummary  = "compress.json" // what each stage did, in the result folder
)

// CompressOptions configures beamtune compress.
type CompressOptions struct {
	Model  string // the published model to compress (teacher or student)
	Data   string // the prepared dataset it was trained on
	Output string // run folder; the result is Output/compressed
	// HeadKeep and FFNKeep are the shares of attention heads (all layers
	// together) and of FFN width (every layer alike) to keep; 1 keeps all.
	HeadKeep, FFNKeep float64
	// ParamKeep, when set, is the share of the encoder layers' weight
	// parameters to keep instead: attention weights scale with the heads
	// kept and FFN weights with the width kept, so both shares become
	// ParamKeep (HeadKeep and FFNKeep must then be left at 1).
	ParamKeep float64
	// PruneSteps prunes in that many equal rounds, re-measuring importance
	// before each; ImportanceBatches bounds the batches scored per shard.
	PruneSteps        int
	ImportanceBatches int
	// Recovery distils the pruned model from the source (Recovery.Epochs 0 skips it).
	Recovery trainer.Config
	// PruneVocab keeps only the tokens the training split uses, the special
	// tokens and KeepTokens (a file, one token a line).
	PruneVocab bool
	KeepTokens string
	// VocabMinCount drops tokens used fewer times than this in the training
	// split as well (default 1: every used token stays); dropped ids read as
	// [UNK]. Rare tokens are most of a corpus's vocabulary and few of its
	// tokens, so this is the lever when the corpus alone keeps too many.
	VocabMinCount int
	InferBatch    int
	Device        string
	Threads       int
	Resume        bool
	Runner        string
	Security
}

// CompressStats is the summary written as compress.json.
type CompressStats struct {
	Source       string  `json:"source"`
	SourceParams int64   `json:"source_params"`
	Params       int64   `json:"params"`
	Heads        []int   `json:"heads_per_layer"`
	FFNWidth     int     `json:"ffn_width"`
	VocabSize    int     `json:"vocab_size"`
	SourceVocab  int     `json:"source_vocab_size"`
	Recovered    bool    `json:"recovered"`
	Seconds      float64 `json:"seconds"`
}

// CompressResult is the published model and its summary.
type CompressResult struct {
	Dir   string
	Stats CompressStats
}

// RunCompress prunes heads and FFN neurons by importance (measured on the
// workers that read the training shards), recovers accuracy by distilling
// from the source, prunes the vocabulary to the corpus, and publishes the
// result as Output/compressed, a plain HF folder.
func RunCompress(ctx context.Context, o CompressOptions) (*CompressResult, error) {
	start := time.Now()
	if o.Model == "" || o.Data == "" || o.Output == "" {
		return nil, badInputf("compress needs --model, --data and --output")
	}
	if o.ParamKeep != 0 {
		if o.ParamKeep < 0 || o.ParamKeep > 1 || o.HeadKeep != 1 || o.FFNKeep != 1 {
			return nil, badInputf("--param_keep %g: want a share in (0, 1], without --head_keep or --ffn_keep", o.ParamKeep)
		}
		o.HeadKeep, o.FFNKeep = o.ParamKeep, o.ParamKeep
	}
	if o.HeadKeep <= 0 || o.HeadKeep > 1 || o.FFNKeep <= 0 || o.FFNKeep > 1 {
		return nil, badInputf("--head_keep %g and --ffn_keep %g must be in (0, 1]", o.HeadKeep, o.FFNKeep)
	}
	if o.PruneSteps <= 0 {
		o.PruneSteps = 1
	}
	if o.Recovery.PEFT != "" || o.Recovery.FreezeLayers != "" {
		return nil, badInputf("compress: the recovery distillation trains every weight of the pruned model (peft %q, freeze_layers %q given)", o.Recovery.PEFT, o.Recovery.FreezeLayers)
	}
	man, src, err := CheckTrainedModel(ctx, o.Model, "--model", o.Data, o.Trust)
	if err != nil {
		return nil, err
	}
	if err := CheckOutput(ctx, o.Output); err != nil {
		return nil, err
	}
	if o.KeepTokens != "" && !o.PruneVocab {
		return nil, badInputf("--keep_tokens needs --prune_vocab")
	}
	stats := CompressStats{Source: o.Model, SourceParams: src.ParamCount(), SourceVocab: src.VocabSize}
	cur := o.Model
	pruning := o.HeadKeep < 1 || o.FFNKeep < 1
	if pruning {
		totalHeads := 0
		for l := 0; l < src.NumHiddenLayers; l++ {
			totalHeads += src.LayerHeads(l)
		}
		for step := 1; step <= o.PruneSteps; step++ {
			frac := float64(step) / float64(o.PruneSteps)
			keepHeads := max(src.NumHiddenLayers, int(math.Round(float64(totalHeads)*(1-(1-o.HeadKeep)*frac))))
			width := max(1, int(math.Round(float64(src.IntermediateSize)*(1-(1-o.FFNKeep)*frac))))
			next, err := pruneStep(ctx, o, man, cur, step, keepHeads, width)
			if err != nil {
				return nil, fmt.Errorf("prune step %d: %w", step, err)
			}
			cur = next
		}
		if o.Recovery.Epochs > 0 {
			res, err := RunDistill(ctx, DistillOptions{
				Data: o.Data, Teacher: o.Model, StudentInit: cur, Output: storage.Join(o.Output, compressRecovery),
				Config: o.Recovery, InferBatch: o.InferBatch, Device: o.Device, Threads: o.Threads, Resume: o.Resume, Runner: o.Runner,
				Security: Security{Trust: o.Trust}, ownStudentInit: true,
			})
			if err != nil {
				return nil, fmt.Errorf("recovery: %w", err)
			}
			cur, stats.Recovered = res.Student.ModelDir, true
		}
	}
	out := storage.Join(o.Output, CompressedModel)
	if err := finishCompressed(ctx, o, man, cur, out, &stats); err != nil {
		return nil, err
	}
	stats.Seconds = time.Since(start).Seconds()
	data, err := json.MarshalIndent(stats, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := storage.WriteFile(ctx, storage.Join(o.Output, CompressSummary), data); err != nil {
		return nil, err
	}
	slog.Info("compress: done", "model", out, "params", stats.Params, "source_params", stats.SourceParams, "seconds", stats.Seconds)
	return &CompressResult{Dir: out, Stats: stats}, nil
}

// pruneStep scores the heads and neurons of model dir on the training
// shards (in parallel on the workers), prunes to keepHeads heads and FFN
// width, and writes the smaller model to prune/step-N/model. A step that
// finished before (its model folder is complete) is reused on --resume.
func pruneStep(ctx context.Context, o CompressOptions, man *dataset.Manifest, dir string, step, keepHeads, width int) (string, error) {
	stepDir := storage.Join(o.Output, compressPruneDir, fmt.Sprintf("step-%d", step))
	out := storage.Join(stepDir, "model")
	if o.Resume {
		if _, err := storage.Stat(ctx, storage.Join(out, model.SafetensorsFile)); err == nil {
			slog.Info("compress: prune step already done", "step", step, "model", out)
			return out, nil
		}
	}
	shards := man.ShardsOf(dataset.SplitTrain)
	if len(shards) == 0 {
		return "", fmt.Errorf("%s has no training shards", o.Data)
	}
	impPath := storage.Join(stepDir, "importance.json")
	p, s := beam.NewPipelineWithRoot()
	col := beam.Reshuffle(s, beam.CreateList(s.Scope("Shards"), shards))
	fn := &transforms.ImportanceFn{Root: o.Data, MaxBatches: max(1, o.ImportanceBatches)}
	fn.ModelDir, fn.MaxBatchSize, fn.Device, fn.Threads = dir, o.InferBatch, o.Device, o.Threads
	fn.Trust = o.trustFor(dir)
	fn.DataTokenizerSHA256 = man.Tokenizer.SHA256
	transforms.SumImportance(s, fn, col, impPath)
	if _, err := run(ctx, o.Runner, p); err != nil {
		return "", err
	}
	imp, err := transforms.ReadImportance(ctx, impPath)
	if err != nil {
		return "", err
	}
	m, err := loadForCompress(ctx, dir, o.Device, o.trustFor(dir))
	if err != nil {
		return "", err
	}
	defer m.Free()
	plan, err := trainer.PlanPrune(m.Config, imp, keepHeads, width)
	if err != nil {
		return "", err
	}
	if err := model.OnTorchThread(func() error { return plan.Apply(m) }); err != nil {
		return "", err
	}
	heads := make([]int, m.Config.NumHiddenLayers)
	for l := range heads {
		heads[l] = m.Config.LayerHeads(l)
	}
	slog.Info("compress: pruned", "step", step, "heads_per_layer", heads, "ffn_width", m.Config.IntermediateSize, "params", m.NumParams(), "batches_scored", imp.Batches)
	if err := trainer.ExportModel(ctx, m, out, dir, nil); err != nil {
		return "", err
	}
	return out, nil
}

// trustFor is the trust policy a model folder compress reads is checked
// under: the source's, and none for the folders of its own run (pruning
// steps, recovery), which it made itself and does not sign.
func (o CompressOptions) trustFor(dir string) signing.Trust {
	if dir == o.Model {
		return o.Trust
	}
	return signing.Trust{}
}

func loadForCompress(ctx context.Context, dir, device string, trust signing.Trust) (*model.Bert, error) {
	dev, err := model.ParseDevice(device)
	if err != nil {
		return nil, err
	}
	var m *model.Bert
	err = model.OnTorchThread(func() error {
		var cleanup func()
		var err error
		if m, _, cleanup, err = trainer.LoadModel(ctx, dir, model.LoadOptions{Device: dev}, trust); err == nil {
			cleanup()
		}
		return err
	})
	return m, err
}

// finishCompressed prunes the vocabulary when asked and publishes the model
// at out with the source's tokenizer (or the pruned one).
func finishCompressed(ctx context.Context, o CompressOptions, man *dataset.Manifest, dir, out string, stats *CompressStats) error {
	m, err := loadForCompress(ctx, dir, o.Device, o.trustFor(dir))
	if err != nil {
		return err
	}
	defer m.Free()
	extra := map[string][]byte{}
	if o.PruneVocab {
		if err := pruneVocab(ctx, o, man, dir, m, extra); err != nil {
			return fmt.Errorf("vocabulary: %w", err)
		}
	}
	stats.Params, stats.VocabSize, stats.FFNWidth = m.NumParams(), m.Config.VocabSize, m.Config.IntermediateSize
	stats.Heads = make([]int, m.Config.NumHiddenLayers)
	for l := range stats.Heads {
		stats.Heads[l] = m.Config.LayerHeads(l)
	}
	tmp, err := os.MkdirTemp("", "beamtune-compress-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "model")
	if err := trainer.ExportModel(ctx, m, staged, dir, extra); err != nil {
		return err
	}
	// A multi-label model's decision thresholds come along: the recovered
	// model's own (tuned by its distillation), else the source's.
	keep := map[string]string{}
	th := storage.Join(dir, model.ThresholdsFile)
	ok, err := storage.Exists(ctx, th)
	if err != nil {
		return err
	}
	if ok {
		keep[model.ThresholdsFile] = th
	}
	card, prov, err := compressRecord(ctx, o, man, m, stats, out)
	if err != nil {
		return err
	}
	return publishModel(ctx, staged, out, keep, card, o.SigningKey, prov)
}

// compressRecord is the compressed folder's model card and provenance.
func compressRecord(ctx context.Context, o CompressOptions, man *dataset.Manifest, m *model.Bert, stats *CompressStats, out string) ([]byte, *signing.Provenance, error) {
	card, prov, err := compressCard(ctx, o, man.TaskKind(), m.Config.Labels(), *stats, out)
	if err != nil {
		return nil, nil, err
	}
	return report.RenderCard(card), prov, nil
}

// compressCard is compressRecord's card before rendering: the source, the
// data, and what the compression kept (stats, whose Params are the result's).
func compressCard(ctx context.Context, o CompressOptions, kind string, labels []string, stats CompressStats, out string) (report.Card, *signing.Provenance, error) {
	prov := provenance("compress", o.Runner)
	src, err := modelRef(ctx, "source", o.Model)
	if err != nil {
		return report.Card{}, nil, err
	}
	data, _, err := datasetRef(ctx, "", o.Data)
	if err != nil {
		return report.Card{}, nil, err
	}
	prov.Models, prov.Datasets = []signing.ModelRef{src}, []signing.DatasetRef{data}
	if prov.Config, err = json.Marshal(o.Recovery); err != nil {
		return report.Card{}, nil, err
	}
	line := fmt.Sprintf("Compressed by beamtune from `%s`: %d → %d parameters; heads per layer %v, FFN width %d", o.Model, stats.SourceParams, stats.Params, stats.Heads, stats.FFNWidth)
	if o.PruneVocab {
		line += fmt.Sprintf(", vocabulary %d → %d tokens (those the training data uses)", stats.SourceVocab, stats.VocabSize)
	}
	recipe := []string{line + "."}
	if stats.Recovered {
		recipe = append(recipe, "Recovered by a short distillation from the unpruned model.")
	}
	card := report.Card{
		Name: path.Base(strings.TrimSuffix(out, "/")), BaseModel: baseModelName(ctx, o.Model), Datasets: []string{o.Data},
		Kind: kind, Labels: labels, Recipe: recipe,
		Limits: []string{"Scores of the compressed model are not measured at compression: run beamtune evaluate against its source."},
	}
	return card, prov, nil
}

// pruneVocab keeps the ids the training shards use (the dataset was
// tokenized with the source tokenizer), the special tokens and KeepTokens;
// it prunes m's embeddings and puts the new tokenizer files and the vocab
// map in extra.
func pruneVocab(ctx context.Context, o CompressOptions, man *dataset.Manifest, dir string, m *model.Bert, extra map[string][]byte) error {
	tokJSON, err := storage.ReadFile(ctx, storage.Join(dir, model.TokenizerFile))
	if err != nil {
		return err
	}
	tok, err := tokenizer.FromJSON(tokJSON)
	if err != nil {
		return err
	}
	count := map[int]int{}
	for _, s := range man.ShardsOf(dataset.SplitTrain) {
		rows, err := dataset.ReadShard(ctx, o.Data, s)
		if err != nil {
			return err
		}
		for _, r := range rows {
			for _, id := range r.InputIDs {
				count[int(id)]++
			}
		}
	}
	used := map[int]bool{}
	for id, n := range count {
		if n >= max(1, o.VocabMinCount) {
			used[id] = true
		}
	}
	if o.KeepTokens != "" {
		data, err := storage.ReadFile(ctx, o.KeepTokens)
		if err != nil {
			return fmt.Errorf("--keep_tokens: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for line := 1; sc.Scan(); line++ {
			t := strings.TrimSpace(sc.Text())
			if t == "" {
				continue
			}
			id, ok := tok.TokenID(t)
			if !ok {
				return badInputf("--keep_tokens %s line %d: %q is not in the model's vocabulary", o.KeepTokens, line, t)
			}
			used[int(id)] = true
		}
	}
	keep := make([]int, 0, len(used))
	for id := range used {
		keep = append(keep, id)
	}
	pv, err := tokenizer.PruneVocab(tokJSON, keep)
	if err != nil {
		return err
	}
	sourceVocab := m.Config.VocabSize
	if err := m.PruneVocab(pv.OldIDs); err != nil {
		return err
	}
	unk := -1
	if old, ok := tok.TokenID("[UNK]"); ok {
		for newID, id := range pv.OldIDs {
			if id == int(old) {
				unk = newID
			}
		}
	}
	if unk < 0 {
		return fmt.Errorf("the tokenizer has no [UNK] token to map dropped ids to")
	}
	sum := sha256.Sum256(tokJSON)
	vm, err := json.Marshal(model.VocabMap{SourceTokenizerSHA256: hex.EncodeToString(sum[:]), SourceVocabSize: max(tok.VocabSize(), sourceVocab), UnkID: unk, OldIDs: pv.OldIDs})
	if err != nil {
		return err
	}
	extra[model.TokenizerFile], extra["vocab.txt"], extra[model.VocabMapFile] = pv.TokenizerJSON, pv.VocabTxt, vm
	slog.Info("compress: vocabulary pruned", "kept", len(pv.OldIDs), "of", tok.VocabSize(), "used_by_training_split", len(count), "min_count", max(1, o.VocabMinCount))
	return nil
}
