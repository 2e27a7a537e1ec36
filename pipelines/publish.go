package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// Security is a pipeline's model protection policy: the key that signs the
// folders it publishes, and the keys every model folder it loads must be
// signed by.
type Security struct {
	// SigningKey is an ECDSA private key in PEM (local or gs://, read where
	// the folder is published, on a worker). Empty: folders are published
	// unsigned.
	SigningKey string
	// Trust, when set, makes every loader verify a model folder's signature
	// and closed file set before reading any of it.
	Trust signing.Trust
}

// publishModel publishes the model folder src at dst (storage.PublishDir)
// with extra files, its model card, and, when keyPath is set, a signature
// over every file that records prov.
func publishModel(ctx context.Context, src, dst string, extra map[string]string, card []byte, keyPath string, prov *signing.Provenance) error {
	// A signature copied from src would be void: the card (and maybe the
	// files) are new. It is made again below when there is a key.
	p := storage.Publication{Extra: extra, Content: map[string][]byte{report.CardFile: card}, Drop: []string{signing.SignatureFile}}
	if keyPath != "" {
		key, err := signing.LoadPrivateKey(ctx, keyPath)
		if err != nil {
			return err
		}
		name := path.Base(strings.TrimSuffix(dst, "/"))
		p.Seal = func(_ context.Context, names []string, open func(string) (io.ReadCloser, error)) (map[string][]byte, error) {
			var res []signing.Resource
			for _, n := range names {
				if n == signing.SignatureFile {
					continue
				}
				r, err := open(n)
				if err != nil {
					return nil, err
				}
				h, err := signing.HashReader(n, r)
				r.Close()
				if err != nil {
					return nil, err
				}
				res = append(res, h)
			}
			sig, err := signing.Sign(signing.NewManifest(res), name, prov, key)
			if err != nil {
				return nil, err
			}
			return map[string][]byte{signing.SignatureFile: sig}, nil
		}
	}
	return storage.PublishDir(ctx, src, dst, p)
}

// provenance starts a provenance record for a folder made by stage.
func provenance(stage, runner string) *signing.Provenance {
	if runner == "" {
		runner = "prism"
	}
	return &signing.Provenance{
		Schema: signing.ProvenanceSchema, Beamtune: signing.Build(), Stage: stage, Runner: runner,
		Created: time.Now().UTC().Format(time.RFC3339),
	}
}

// datasetRef records a prepared dataset by the sha256 of its manifest
// (which holds every shard's checksum), and returns the manifest.
func datasetRef(ctx context.Context, task, dir string) (signing.DatasetRef, *dataset.Manifest, error) {
	path := storage.Join(dir, dataset.ManifestFile)
	data, err := storage.ReadFile(ctx, path)
	if err != nil {
		return signing.DatasetRef{}, nil, err
	}
	man, err := dataset.ParseManifest(data, path)
	if err != nil {
		return signing.DatasetRef{}, nil, err
	}
	h, err := signing.HashReader(dataset.ManifestFile, bytes.NewReader(data))
	if err != nil {
		return signing.DatasetRef{}, nil, err
	}
	return signing.DatasetRef{Task: task, Path: dir, ManifestSHA256: h.Digest}, man, nil
}

// modelRef records a model folder a new one was made from: by the root
// digest its signature states, else by the sha256 of its weights file.
func modelRef(ctx context.Context, role, dir string) (signing.ModelRef, error) {
	ref := signing.ModelRef{Role: role, Path: dir}
	data, err := storage.ReadFileLimit(ctx, storage.Join(dir, signing.SignatureFile), 8<<20)
	switch {
	case err == nil:
		// A bundle beamtune cannot read (a certificate one) is recorded
		// by the weights' digest below, as an unsigned folder is.
		if _, st, err := signing.ParseBundle(data); err == nil {
			ref.SHA256, ref.Signed = st.Subject[0].Digest["sha256"], true
			return ref, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return ref, err
	}
	for _, name := range []string{model.SafetensorsFile, model.AdapterWeightsFile} {
		r, err := storage.Open(ctx, storage.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return ref, err
		}
		h, err := signing.HashReader(name, r)
		r.Close()
		if err != nil {
			return ref, err
		}
		ref.SHA256 = h.Digest
		return ref, nil
	}
	return ref, nil
}

// trialRecord is what the published folder of a trial says of itself: its
// model card and provenance.
func trialRecord(ctx context.Context, best trainer.TrialResult, name, stage, runner string) ([]byte, *signing.Provenance, error) {
	card, prov, err := trialCard(ctx, best, name, stage, runner)
	if err != nil {
		return nil, nil, err
	}
	return report.RenderCard(card), prov, nil
}

// trialCard is trialRecord's card before rendering.
func trialCard(ctx context.Context, best trainer.TrialResult, name, stage, runner string) (report.Card, *signing.Provenance, error) {
	jobData, err := storage.ReadFile(ctx, storage.Join(best.Output, trainer.JobFile))
	if err != nil {
		return report.Card{}, nil, err
	}
	var job trainer.Job
	if err := json.Unmarshal(jobData, &job); err != nil {
		return report.Card{}, nil, fmt.Errorf("%s: %w", storage.Join(best.Output, trainer.JobFile), err)
	}
	prov := provenance(stage, runner)
	prov.Config = json.RawMessage(jobData)
	card := report.Card{Name: name, Source: fmt.Sprintf("the validation split, at the best evaluation of training (step %d)", best.BestStep)}
	data := []trainer.TaskSpec{{Data: job.Data}}
	if len(job.Tasks) > 0 {
		data = job.Tasks
		card.Kind = "multi_task"
	}
	for _, t := range data {
		ref, man, err := datasetRef(ctx, t.Name, t.Data)
		if err != nil {
			return report.Card{}, nil, err
		}
		prov.Datasets = append(prov.Datasets, ref)
		card.Datasets = append(card.Datasets, t.Data)
		if card.Kind == "" {
			card.Kind = man.TaskKind()
		}
	}
	// A student cut from its teacher starts from the teacher's folder.
	role := "init"
	if len(job.StudentLayers) > 0 {
		role = "teacher"
	}
	init, err := modelRef(ctx, role, job.Init)
	if err != nil {
		return report.Card{}, nil, err
	}
	prov.Models = append(prov.Models, init)
	card.BaseModel = baseModelName(ctx, job.Init)
	if cfgData, err := storage.ReadFileLimit(ctx, storage.Join(best.BestDir, model.ConfigFile), maxConfigBytes); err == nil {
		if cfg, err := model.ParseConfig(cfgData, model.ConfigFile); err == nil {
			card.Labels = cfg.Labels()
		}
	}
	results := []signing.Result{{Split: dataset.SplitValidation, Metric: best.Metric, Value: best.BestMetric}}
	card.Results = []report.CardResult{{Dataset: job.Data, Split: dataset.SplitValidation, Metric: best.Metric, Value: best.BestMetric}}
	if len(best.Tasks) > 0 {
		results, card.Results = nil, nil
		for _, t := range best.Tasks {
			results = append(results, signing.Result{Task: t.Task, Split: dataset.SplitValidation, Metric: t.Metric, Value: t.Value})
			card.Results = append(card.Results, report.CardResult{Task: t.Task, Dataset: taskData(job, t.Task), Split: dataset.SplitValidation, Metric: t.Metric, Value: t.Value})
		}
	}
	prov.Results = results
	card.Recipe = recipe(job, best, stage)
	return card, prov, nil
}

func taskData(job trainer.Job, task string) string {
	for _, t := range job.Tasks {
		if t.Name == task {
			return t.Data
		}
	}
	return ""
}

// baseModelName is how a card names the model a folder came from: the hub
// id its config records (HF's _name_or_path), else its folder.
func baseModelName(ctx context.Context, dir string) string {
	if filepath.Clean(dir) == filepath.Clean(model.DefaultModelDir()) {
		return model.DefaultModelHubID
	}
	data, err := storage.ReadFileLimit(ctx, storage.Join(dir, model.ConfigFile), maxConfigBytes)
	if err == nil {
		var c struct {
			NameOrPath string `json:"_name_or_path"`
		}
		if json.Unmarshal(data, &c) == nil && c.NameOrPath != "" && !strings.HasPrefix(c.NameOrPath, "/") {
			return c.NameOrPath
		}
	}
	return dir
}

// recipe describes, a line each, how a trial made its model.
func recipe(job trainer.Job, best trainer.TrialResult, stage string) []string {
	c := job.Config
	length := fmt.Sprintf("%d epochs", c.Epochs)
	if c.MaxSteps > 0 {
		length = fmt.Sprintf("at most %d steps", c.MaxSteps)
	}
	out := []string{fmt.Sprintf("beamtune %s from `%s`: AdamW, learning rate %g, batch %d, %s, seed %d; %d steps, stopped by %s.",
		stage, job.Init, c.LR, c.BatchSize, length, c.Seed, best.Steps, best.Stopped)}
	if len(job.StudentLayers) > 0 {
		out = append(out, fmt.Sprintf("A student keeping layers %v of its teacher, distilled with temperature %g and soft-target weight %g (hidden-state MSE weight %g).",
			job.StudentLayers, c.Temperature, c.Alpha, c.HiddenMSE))
	} else if stage == "distill" {
		out = append(out, fmt.Sprintf("Distilled with temperature %g and soft-target weight %g.", c.Temperature, c.Alpha))
	}
	if c.PEFT != "" {
		out = append(out, fmt.Sprintf("Parameter-efficient fine-tuning: %s (LoRA r %d, alpha %g); %d of %d parameters trained.", c.PEFT, c.LoRAR, c.LoRAAlpha, best.TrainableParams, best.TotalParams))
	}
	if len(job.Tasks) > 0 {
		var names []string
		for _, t := range job.Tasks {
			names = append(names, t.Name)
		}
		out = append(out, fmt.Sprintf("Multi-task: one encoder with a head per task (%s), batches sampled %s.", strings.Join(names, ", "), orDefault(c.TaskSampling, "proportional")))
	}
	out = append(out, fmt.Sprintf("The checkpoint kept is the one with the best %s on the validation split.", best.Metric))
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// recordEvaluation republishes the run's challenger folder (teacher or
// student) in place with a model card whose results are the evaluation's
// (report.json in reportDir, with their intervals) and, with a signing key,
// a new signature recording them.
func (r *retrainRun) recordEvaluation(ctx context.Context, challenger, reportDir string) error {
	dir := r.path(challenger)
	// The folder is re-signed below: first check it is still what this run
	// published (signed by the run's own key or a trusted one), so that a
	// file swapped after the evaluation does not get a fresh signature.
	if err := r.checkOwnFolder(ctx, dir); err != nil {
		return err
	}
	rep, err := report.Read(ctx, reportDir)
	if err != nil {
		return err
	}
	var evaluated *report.ModelReport
	for i := range rep.Models {
		if rep.Models[i].Name == challenger {
			evaluated = &rep.Models[i]
		}
	}
	if evaluated == nil {
		return fmt.Errorf("%s: no model %s in the report", reportDir, challenger)
	}
	card, prov, err := r.challengerCard(ctx, challenger, dir, rep.Dataset)
	if err != nil {
		return err
	}
	card.Results = report.CardResults(evaluated.Metrics, "", rep.Dataset, rep.Split)
	card.Source = fmt.Sprintf("beamtune evaluate on the %s split (%d examples; report.json of retrain run %s; 95%% intervals by bootstrap)", rep.Split, rep.Examples, r.res.RunID)
	prov.Stage = "retrain"
	prov.Results = nil
	for _, res := range card.Results {
		pr := signing.Result{Split: res.Split, Metric: res.Metric, Value: res.Value}
		if res.CI != nil {
			pr.Low, pr.High = res.CI.Low, res.CI.High
		}
		prov.Results = append(prov.Results, pr)
	}
	return publishModel(ctx, dir, dir, nil, report.RenderCard(card), r.sec.SigningKey, prov)
}

// challengerCard rebuilds the card and provenance the challenger folder was
// published with, from the run's records: the winning trial of a teacher
// or student, the summary of a compression.
func (r *retrainRun) challengerCard(ctx context.Context, challenger, dir, data string) (report.Card, *signing.Provenance, error) {
	if challenger == CompressedModel {
		var stats CompressStats
		raw, err := storage.ReadFile(ctx, r.path(CompressSummary))
		if err != nil {
			return report.Card{}, nil, err
		}
		if err := json.Unmarshal(raw, &stats); err != nil {
			return report.Card{}, nil, fmt.Errorf("%s: %w", r.path(CompressSummary), err)
		}
		cfgData, err := storage.ReadFileLimit(ctx, storage.Join(dir, model.ConfigFile), maxConfigBytes)
		if err != nil {
			return report.Card{}, nil, err
		}
		cfg, err := model.ParseConfig(cfgData, storage.Join(dir, model.ConfigFile))
		if err != nil {
			return report.Card{}, nil, err
		}
		o := CompressOptions{Model: stats.Source, Data: data, PruneVocab: r.c.Compress.PruneVocab, Recovery: r.c.Compress.Config, Runner: r.o.Runner}
		card, prov, err := compressCard(ctx, o, cfg.Task(), cfg.Labels(), stats, dir)
		card.Limits = nil // its scores are now measured
		return card, prov, err
	}
	var trials TrainResult
	raw, err := storage.ReadFile(ctx, r.path(challenger+"-trials.json"))
	if err != nil {
		return report.Card{}, nil, err
	}
	if err := json.Unmarshal(raw, &trials); err != nil {
		return report.Card{}, nil, fmt.Errorf("%s: %w", r.path(challenger+"-trials.json"), err)
	}
	stage := "train"
	if challenger == StudentModel {
		stage = "distill"
	}
	return trialCard(ctx, trials.Best, challenger, stage, r.o.Runner)
}

// checkOwnFolder verifies a folder this run published and is about to
// republish: against the trust policy and the public half of the run's
// signing key. Without a key the folder was published unsigned and there is
// nothing to check it against.
func (r *retrainRun) checkOwnFolder(ctx context.Context, dir string) error {
	if r.sec.SigningKey == "" {
		return nil
	}
	key, err := signing.LoadPrivateKey(ctx, r.sec.SigningKey)
	if err != nil {
		return err
	}
	pub, err := signing.PublicPEM(&key.PublicKey)
	if err != nil {
		return err
	}
	trust := signing.Trust{Keys: append(append([]string(nil), r.sec.Trust.Keys...), string(pub))}
	if _, err := VerifyModel(ctx, dir, trust); err != nil {
		return fmt.Errorf("before recording the evaluation in its card: %w", err)
	}
	return nil
}
