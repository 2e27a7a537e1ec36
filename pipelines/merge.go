package pipelines

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// MergeOptions folds a LoRA adapter into its base model.
type MergeOptions struct {
	Adapter string // the adapter folder (local or gs://)
	Base    string // the base model folder; "" = the one the adapter names
	Output  string // where the plain HF folder is published
	Security
}

// RunMerge writes the adapter folded into its base as a plain HF folder,
// published like any model beamtune makes: atomically, with a model card,
// and signed when a key is set. Under a trust policy the adapter and its
// base are verified first.
func RunMerge(ctx context.Context, o MergeOptions) error {
	if o.Adapter == "" || o.Output == "" {
		return badInputf("merge needs --adapter and --output")
	}
	tmp, err := os.MkdirTemp("", "beamtune-merge-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "model")
	if err := trainer.MergeAdapter(ctx, o.Adapter, o.Base, staged, o.Trust); err != nil {
		return err
	}
	base := o.Base
	if base == "" {
		local, cleanup, err := storage.LocalDir(ctx, o.Adapter)
		if err != nil {
			return err
		}
		ref, err := model.ReadAdapterBase(local)
		cleanup()
		if err != nil {
			return err
		}
		base = ref.Path
	}
	prov := provenance("merge", "")
	for _, m := range []struct{ role, dir string }{{"adapter", o.Adapter}, {"base", base}} {
		ref, err := modelRef(ctx, m.role, m.dir)
		if err != nil {
			return err
		}
		prov.Models = append(prov.Models, ref)
	}
	card := report.Card{
		Name:      path.Base(strings.TrimSuffix(o.Output, "/")),
		BaseModel: baseModelName(ctx, base),
		Recipe:    []string{fmt.Sprintf("The LoRA adapter `%s` folded into its base `%s` (W + alpha/r·B·A): a plain HF folder that runs without PEFT.", o.Adapter, base)},
		Limits:    []string{"Scores are those of the adapter over its base; see the adapter's own card."},
	}
	if cfg, err := model.LoadConfig(staged); err == nil {
		card.Kind, card.Labels = cfg.Task(), cfg.Labels()
	}
	return publishModel(ctx, staged, o.Output, nil, report.RenderCard(card), o.SigningKey, prov)
}
