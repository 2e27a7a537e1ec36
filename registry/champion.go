// Package registry holds the model registry's records that more than one
// part of beamtune reads: the CHAMPION pointer, its schema and the rule
// that resolves the model folder it names. Writing it (compare-and-swap
// promotion, leases) belongs to the retrain pipeline; reading it is also
// what an inference pipeline does to score with the current champion.
package registry

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/beamtune/beamtune/storage"
)

// ChampionFile is the pointer's name in a model's registry folder.
const ChampionFile = "CHAMPION"

// ChampionSchema versions the CHAMPION pointer. v2 names the model relative
// to the model's registry folder and records its digest; a v1 pointer (the
// model's path as the promoting run saw it) is still read.
const (
	ChampionSchema   = "beamtune.champion/v2"
	ChampionSchemaV1 = "beamtune.champion/v1"
)

// Champion is the content of CHAMPION.
type Champion struct {
	Schema string `json:"schema"`
	RunID  string `json:"run_id"`
	// Model is the published model folder. In CHAMPION it is relative to
	// the model's registry folder (runs/<run-id>/student), so the registry
	// can move or be mounted elsewhere; Parse resolves it.
	Model string `json:"model"`
	// Digest is the sha256 root digest of the model folder's files (as a
	// model_signing statement's subject, the signature left out), checked
	// whenever the champion is loaded.
	Digest     string  `json:"digest,omitempty"`
	Accuracy   float64 `json:"accuracy"`
	MacroF1    float64 `json:"macro_f1"`
	Metric     string  `json:"metric,omitempty"` // the metric the gate compared, and the model's value of it
	Value      float64 `json:"value,omitempty"`
	PromotedAt string  `json:"promoted_at"`
	Previous   string  `json:"previous_run_id,omitempty"`
	// Tasks, for a multi-task bundle, are each task's gate metric and value
	// (Metric is then report.MetricMean, Value their mean).
	Tasks []ChampionTask `json:"tasks,omitempty"`
}

// ChampionTask is one task's score in a multi-task champion's record.
type ChampionTask struct {
	Task   string  `json:"task"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
}

// ParseChampion decodes the CHAMPION file read from championPath and
// resolves its model folder (a v2 pointer's is relative to the file's
// folder).
func ParseChampion(data []byte, championPath string) (*Champion, error) {
	var c Champion
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", championPath, err)
	}
	if (c.Schema != ChampionSchema && c.Schema != ChampionSchemaV1) || c.Model == "" {
		return nil, fmt.Errorf("%s: not a %s pointer", championPath, ChampionSchema)
	}
	if c.Schema == ChampionSchema {
		if !storage.InsideFolder(c.Model) {
			return nil, fmt.Errorf("%s: model %q is not a path inside the registry folder", championPath, c.Model)
		}
		dir := strings.TrimSuffix(championPath, ChampionFile)
		c.Model = storage.Join(strings.TrimSuffix(dir, "/"), c.Model)
	}
	return &c, nil
}

// Relative is c with its model named relative to the registry folder dir,
// as CHAMPION stores it.
func (c Champion) Relative(dir string) (Champion, error) {
	rel, ok := strings.CutPrefix(c.Model, strings.TrimSuffix(dir, "/")+"/")
	if !ok || !storage.InsideFolder(rel) {
		return c, fmt.Errorf("%s is not inside the registry folder %s", c.Model, dir)
	}
	c.Model, c.Schema = rel, ChampionSchema
	return c, nil
}
