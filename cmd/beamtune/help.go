package main

import (
	"flag"
	"fmt"
	"io"
)

// help runs "beamtune help [command]": the overview, or one command's help
// (the same text as "beamtune command --help"). It returns the exit status.
func help(stdout, stderr io.Writer, args []string) int {
	switch {
	case len(args) == 0 || len(args) == 1 && args[0] == "help":
		writeOverview(stdout)
		return 0
	case len(args) > 1:
		fmt.Fprintln(stderr, "usage: beamtune help [command]")
		return 2
	}
	info, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "beamtune help: unknown command %q; \"beamtune help\" lists the commands\n", args[0])
		return 2
	}
	flags := newFlagSet(flag.CommandLine) // with Beam's flags, as when the command runs
	registerCommand(info.make(), flags)
	writeCommandHelp(stdout, info, flags)
	return 0
}

const overviewHead = `beamtune fine-tunes, distils and evaluates BERT-family text classifiers as
Apache Beam pipelines.

Usage:
  beamtune <command> [flags]
  beamtune help [<command>]    a command's flags, as "beamtune <command> --help"

Commands:
`

const overviewNotes = `
Flags:
  "beamtune help <command>" lists a command's own flags by topic, then the
  Beam runner flags (--runner, --endpoint, --job_name, --project, --region,
  ...), which every command accepts. Without --runner a pipeline runs on
  prism, in this process. A flag takes one dash or two (-data, --data); a
  list flag takes comma-separated values, or repeats.

Failures:
  Every command checks what it was given before it starts a pipeline: model
  folders (config.json, the weights' header or pickle, tokenizer.json, the
  labels against the data), the dataset's manifest, the inputs, that the
  output can be written. A failure ends with one line, "beamtune <command>:
  <file or flag>: <reason>"; a failure on a worker ends with the error the
  worker gave, and --verbose shows Beam's whole report above it.

Model folders:
  A folder beamtune published (it holds training_log.jsonl or
  train_config.json) must hold _COMPLETE, written last, or it is refused as
  a publication that did not finish. Any other folder (save_pretrained, a hub
  download, the pretrained model setup installs) is taken as it is. A
  multi-task bundle (it holds tasks.json) is taken by train --init, prepare
  --model and predict; elsewhere give one of its task folders,
  BUNDLE/tasks/<task>, each a plain model folder.

Exit codes:
  0  success; also a Dataflow --dry_run or --template_location run, which
     writes the job down and runs nothing, as asked
  1  the command failed while running
  2  bad input or usage: a model folder, dataset, input or output that cannot
     be used, conflicting flags, an unknown command or flag, a flag value that
     does not parse, no command; retrain: a bad --config (retrain.yaml)
  3  retrain: promotion conflict: another run promoted after this one
     evaluated; nothing changed, the next run re-evaluates
  4  retrain: another run holds the model's lease; this run did nothing
`

// writeOverview writes the top-level help: the commands, one line each, then
// the notes that hold for all of them.
func writeOverview(w io.Writer) {
	fmt.Fprint(w, overviewHead)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, overviewNotes)
}

// writeCommandHelp writes one command's help: its usage and summary, its own
// flags by section, then Beam's.
func writeCommandHelp(w io.Writer, c commandInfo, flags *flagSet) {
	fmt.Fprintf(w, "usage: beamtune %s [flags]\n\n%s.\n\n", c.name, capitalize(c.summary))
	flags.writeFlags(w)
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
