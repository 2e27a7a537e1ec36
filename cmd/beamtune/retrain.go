package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/beamtune/beamtune/pipelines"
)

// retrainCmd is the scheduled job: prepare, train, distill, evaluate, gate
// and promote as one resumable run (docs/retrain.md). Its exit status tells
// a scheduler what happened (pipelines.RetrainExitCode).
type retrainCmd struct {
	config, resultPath    string
	validateOnly, noLease bool
}

func (c *retrainCmd) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "retrain.yaml (local or gs://)")
	fs.StringVar(&c.resultPath, "result", "", "also write the run's outcome as JSON here")
	fs.BoolVar(&c.validateOnly, "validate", false, "check the config and print the run id, then exit")
	fs.BoolVar(&c.noLease, "no_lease", false, "run without the model's lease (manual runs only; promotion stays a compare-and-swap)")
}

func (c *retrainCmd) run(ctx context.Context) error {
	if c.config == "" {
		return fmt.Errorf("%w: --config is required", pipelines.ErrConfig)
	}
	cfg, err := pipelines.LoadRetrainConfig(ctx, c.config)
	if err != nil {
		return err
	}
	if c.validateOnly {
		id, err := pipelines.RetrainRunID(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Printf("config ok; run id %s\n", id)
		return nil
	}
	res, err := pipelines.RunRetrain(ctx, pipelines.RetrainOptions{Config: cfg, NoLease: c.noLease})
	if res != nil {
		for _, s := range res.Stages {
			state := fmt.Sprintf("%.0fs", s.Seconds)
			if s.Skipped {
				state = "done earlier"
			}
			fmt.Printf("  %-9s %s\n", s.Stage, state)
		}
		switch {
		case err != nil:
		case res.Promoted:
			fmt.Printf("retrain %s: promoted; CHAMPION -> %s\n", res.RunID, res.Champion.Model)
		default:
			fmt.Printf("retrain %s: not promoted (gate %s: %v)\n", res.RunID, res.Verdict, res.Reasons)
		}
		if res.Report != "" {
			fmt.Printf("report: %s\n", res.Report)
		}
		if c.resultPath != "" {
			data, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(c.resultPath, append(data, '\n'), 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}

// exitCode lets a command choose its exit status for an error.
func (c *retrainCmd) exitCode(err error) int { return pipelines.RetrainExitCode(err) }
