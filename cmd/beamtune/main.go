// Command beamtune fine-tunes, distils and evaluates BERT-family text
// classifiers as Apache Beam pipelines.
//
//	beamtune doctor                 check libtorch, devices, storage and the model
//	beamtune <command> -h           flags of one command
//
// Beam's own flags (--runner, --endpoint, --job_name, ...) are accepted by
// every command; without --runner the pipeline runs on prism, in-process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx" // registers the runners behind --runner
	"github.com/beamtune/beamtune/pipelines"
)

// command is one subcommand: it registers its flags, then runs.
type command interface {
	register(fs *flag.FlagSet)
	run(ctx context.Context) error
}

// commands maps names to constructors; each call makes fresh flag holders.
var commands = map[string]struct {
	summary string
	make    func() command
}{
	"doctor":   {"check libtorch, devices, Beam, storage and the pretrained model", func() command { return &doctorRunner{} }},
	"prepare":  {"validate, dedupe, split, tokenize and shard a corpus", func() command { return &prepareCmd{} }},
	"train":    {"fine-tune the teacher (with optional sweeps) on a prepared dataset", func() command { return &trainCmd{} }},
	"distill":  {"compute teacher logits and distil a smaller student", func() command { return &distillCmd{} }},
	"evaluate": {"score models on a split, compare, gate, and write report.json/.md/.html", func() command { return &evaluateCmd{} }},
	"predict":  {"score a corpus with a published model into JSONL or Parquet", func() command { return &predictCmd{} }},
	"retrain":  {"the scheduled job: prepare, train, distill, evaluate, gate and promote", func() command { return &retrainCmd{} }},
	"demo":     {"the whole job on the bundled sample corpus (prism, all-MiniLM-L6-v2)", func() command { return &demoCmd{} }},
}

type doctorRunner struct{ doctorCmd }

func (d *doctorRunner) run(ctx context.Context) error { return d.doctorCmd.run(os.Stdout) }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: beamtune <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", n, commands[n].summary)
	}
}

func main() {
	// The subcommand is the first argument; Beam workers re-execute this
	// binary with Beam's flags only, and beam.Init must see them first.
	name := ""
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		name = os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	var cmd command
	if name != "" {
		c, ok := commands[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "beamtune: unknown command %q\n", name)
			usage()
			os.Exit(2)
		}
		cmd = c.make()
		cmd.register(flag.CommandLine)
	}
	flag.Parse()
	beam.Init() // in a worker process this runs the worker and does not return
	if cmd == nil {
		usage()
		os.Exit(2)
	}
	err := cmd.run(context.Background())
	if errors.Is(err, pipelines.ErrNotExecuted) {
		// Dataflow --dry_run or a template staging: the job was written
		// down as asked; nothing ran, nothing failed.
		fmt.Fprintf(os.Stderr, "beamtune %s: %v\n", name, err)
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "beamtune %s: %v\n", name, err)
		code := 1
		if ec, ok := cmd.(interface{ exitCode(error) int }); ok {
			code = ec.exitCode(err)
		}
		os.Exit(code)
	}
}
