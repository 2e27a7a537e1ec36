package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx" // registers the runners behind --runner
	"github.com/beamtune/beamtune/pipelines"
)

// command is one subcommand: it declares its flags, then runs.
type command interface {
	register(f *flagSet)
	run(ctx context.Context) error
}

// commandInfo names a subcommand; make returns a fresh one, its options at
// their defaults once registered.
type commandInfo struct {
	name, summary string
	make          func() command
}

// commands, in the order of the work: help lists them so.
var commands = []commandInfo{
	{"doctor", "check libtorch, devices, Beam, storage and the pretrained model", func() command { return &doctorRunner{} }},
	{"prepare", "validate, dedupe, split, tokenize and shard a corpus", func() command { return &prepareCmd{} }},
	{"train", "fine-tune the teacher (with optional sweeps) on a prepared dataset", func() command { return &trainCmd{} }},
	{"distill", "compute teacher logits and distil a smaller student", func() command { return &distillCmd{} }},
	{"compress", "prune heads, FFN neurons and the vocabulary of a model, with recovery distillation", func() command { return &compressCmd{} }},
	{"merge", "fold a LoRA adapter into its base model: a plain HF folder", func() command { return &mergeCmd{} }},
	{"evaluate", "score models on a split, compare, gate, and write report.json/.md/.html", func() command { return &evaluateCmd{} }},
	{"sign", "sign a model folder in place (model.sig, OpenSSF model_signing's format)", func() command { return &signCmd{} }},
	{"verify", "check a model folder's signature and files, and print how it was made", func() command { return &verifyCmd{} }},
	{"predict", "score a corpus with a published model into JSONL or Parquet", func() command { return &predictCmd{} }},
	{"retrain", "the scheduled job: prepare, train, distill, evaluate, gate and promote", func() command { return &retrainCmd{} }},
	{"demo", "the whole job on the bundled sample corpus (prism, all-MiniLM-L6-v2)", func() command { return &demoCmd{} }},
}

// lookup finds a subcommand by name.
func lookup(name string) (commandInfo, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return commandInfo{}, false
}

// verbose is --verbose, which every command takes.
var verbose bool

// registerCommand declares a command's flags, then the ones every command
// has.
func registerCommand(cmd command, flags *flagSet) {
	cmd.register(flags)
	flags.section("Logging")
	flags.boolVar(&verbose, "verbose", false, "also print Beam's own log lines and, when a command fails, its whole error (a pipeline's execution plan, worker stacks); without it the last line is the root cause")
}

type doctorRunner struct{ doctorCmd }

func (d *doctorRunner) run(ctx context.Context) error { return d.doctorCmd.run(os.Stdout) }

func main() {
	// The subcommand is the first argument; Beam workers re-execute this
	// binary with Beam's flags only. Flags are parsed first, then beam.Init
	// runs (it must see the parsed flags) before anything else happens: in a
	// worker it runs the worker and does not return.
	name := ""
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		name = os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	if name == "help" {
		os.Exit(help(os.Stdout, os.Stderr, os.Args[1:]))
	}
	var (
		info  commandInfo
		cmd   command
		flags *flagSet
	)
	if name != "" {
		var ok bool
		if info, ok = lookup(name); !ok {
			fmt.Fprintf(os.Stderr, "beamtune: unknown command %q; \"beamtune help\" lists the commands\n", name)
			os.Exit(2)
		}
		cmd, flags = info.make(), newFlagSet(flag.CommandLine)
		registerCommand(cmd, flags)
	}
	// Parse errors and -h/--help are handled here rather than by the flag
	// package, so that help goes to stdout and exits 0.
	flag.CommandLine.Init(os.Args[0], flag.ContinueOnError)
	flag.CommandLine.SetOutput(io.Discard)
	flag.CommandLine.Usage = func() {}
	if err := flag.CommandLine.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if cmd == nil {
				writeOverview(os.Stdout)
			} else {
				writeCommandHelp(os.Stdout, info, flags)
			}
			return
		}
		if cmd == nil {
			fmt.Fprintf(os.Stderr, "beamtune: %v\n\"beamtune help\" lists the commands\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "beamtune %s: %v (\"beamtune help %s\" lists its flags)\n", name, err, name)
		}
		os.Exit(2)
	}
	beam.Init() // in a worker process this runs the worker and does not return
	if cmd == nil {
		writeOverview(os.Stderr)
		os.Exit(2)
	}
	// beam.Init set up Beam's log handler; without --verbose its own
	// chatter and plan dumps are kept out of the command's output.
	if !verbose {
		quietLogging()
	}
	err := cmd.run(context.Background())
	if errors.Is(err, pipelines.ErrNotExecuted) {
		// Dataflow --dry_run or a template staging: the job was written
		// down as asked; nothing ran, nothing failed.
		fmt.Fprintf(os.Stderr, "beamtune %s: %v\n", name, err)
		return
	}
	if err != nil {
		// The last line is the root cause; the whole error (a failed
		// pipeline's plan and worker stacks) only with --verbose.
		if verbose {
			fmt.Fprintf(os.Stderr, "beamtune %s: the whole error:\n%v\n", name, err)
		}
		fmt.Fprintf(os.Stderr, "beamtune %s: %s\n", name, rootCause(err))
		os.Exit(exitStatus(cmd, err))
	}
}
