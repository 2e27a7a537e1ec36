package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/beamtune/beamtune/pipelines"
)

// retrainCmd is the scheduled job: prepare, train, distill, evaluate, gate
// and promote as one resumable run (docs/retrain.md). Its exit status tells
// a scheduler what happened (pipelines.RetrainExitCode).
type retrainCmd struct {
	o            pipelines.RetrainOptions // o.Config is loaded from --config when the command runs
	config       string                   // --config: the retrain.yaml to load
	resultPath   string                   // --result
	validateOnly bool                     // --validate
}

func (c *retrainCmd) register(f *flagSet) {
	f.section("Config")
	f.stringVar(&c.config, "config", "", "retrain.yaml (local or gs://)")
	f.boolVar(&c.validateOnly, "validate", false, "check the config and print the run id, then exit")
	f.section("Run")
	f.boolVar(&c.o.NoLease, "no_lease", false, "run without the model's lease (manual runs only; promotion stays a compare-and-swap)")
	f.section("Output")
	f.stringVar(&c.resultPath, "result", "", "also write the run's outcome as JSON here")
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
	o := c.o
	o.Config = cfg
	res, err := pipelines.RunRetrain(ctx, o)
	if res != nil {
		for _, s := range res.Stages {
			state := fmt.Sprintf("%.0fs", s.Seconds)
			if s.Skipped {
				state = "done earlier"
			}
			fmt.Printf("  %-9s %s\n", s.Stage, state)
		}
		for _, tv := range res.Tasks {
			opt := ""
			if tv.Optional {
				opt = " (optional)"
			}
			fmt.Printf("  task %-12s %s %.4f: %s%s %v\n", tv.Task, tv.Metric, tv.Value, tv.Verdict, opt, tv.Reasons)
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
			// Joined, the run's own error still decides the exit status.
			err = errors.Join(err, writeResult(c.resultPath, res))
		}
	}
	return err
}

// writeResult writes a retrain's outcome as indented JSON.
func writeResult(path string, res *pipelines.RetrainResult) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("--result: %w", err)
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// exitCode lets a command choose its exit status for an error.
func (c *retrainCmd) exitCode(err error) int { return pipelines.RetrainExitCode(err) }
