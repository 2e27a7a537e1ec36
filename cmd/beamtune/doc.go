// Command beamtune fine-tunes, distils and evaluates BERT-family text
// classifiers as Apache Beam pipelines.
//
//	beamtune help                   the commands, global notes and exit codes
//	beamtune doctor                 check libtorch, devices, storage and the model
//	beamtune <command> -h           flags of one command (same as beamtune help <command>)
//
// Beam's own flags (--runner, --endpoint, --job_name, ...) are accepted by
// every command; without --runner the pipeline runs on prism, in-process.
//
// # What this package owns
//
// Subcommands: the commands table in main.go names each one (doctor,
// prepare, train, distill, evaluate, predict, retrain, demo) with its
// one-line summary; each lives in its own file as a type with register (its
// flags) and run. A command does no pipeline work of its own: run turns the
// flags into the options of one pipelines.Run* call (demo chains four) and
// prints the result.
//
// Flag binding, one way for every command (flags.go): each flag is bound to
// a field of the options value the command owns, the pipelines options
// struct it runs (pipelines.TrainOptions, pipelines.EvaluateOptions, ...) or
// a small struct of its own (demoOptions, doctorOptions), through a flagSet.
// Flags whose text needs parsing (--sweep, --student_layers, --model of
// evaluate) are kept as given and parsed into the options when the command
// runs. The flagSet registers on flag.CommandLine, where the Beam SDK
// registered its runner flags when its packages were imported, so one parse
// reads both; flags are parsed, then beam.Init runs before anything else
// (in a Beam worker, which re-executes this binary with Beam's flags only,
// it runs the worker and never returns).
//
// Help (help.go): "beamtune help" and a bare "beamtune" list the commands
// and the global notes; "beamtune help <command>" and "beamtune <command>
// --help" print the same text: the command's own flags under the section
// headings it declared (Data, Model, Recipe, Output, Compute, ...), then
// every other flag on flag.CommandLine (Beam's) in one last section. Help
// goes to stdout and exits 0.
//
// Failures (failure.go): the pipelines check their inputs in the driver
// before building a pipeline (pipelines.CheckModelDir and friends), so a bad
// input ends the command at once. Whatever the failure, the last line of
// stderr is "beamtune <command>: " and its root cause, one line: for a
// pipeline that failed on a worker, the DoFn's own error without Beam's
// execution plan or libtorch's stack (rootCause). Beam's own log lines (job
// service chatter, plan dumps) are filtered out of the log (quietHandler);
// --verbose keeps them and prints the whole error above the last line.
//
// Exit codes: 0 success (also a Dataflow --dry_run or --template_location
// run, which runs nothing: pipelines.ErrNotExecuted); 1 a failure while
// running; 2 bad input (pipelines.ErrBadInput: a model folder, dataset,
// input or output that cannot be used, conflicting flags) or bad usage
// (unknown command or flag, a flag value that does not parse, no command)
// and, for retrain, a bad config; retrain also exits 3 when another run
// promoted first and 4 when another run holds the model's lease
// (pipelines.RetrainExitCode).
//
// # What it imports
//
// pipelines (the Run* entry points, their options and results, sweep and
// model-name parsing, retrain's config and exit codes); trainer (the
// training Config and its defaults); dataset, report and transforms (the
// types and defaults the options hold: manifest, gate, fields); model (the
// default pretrained-model folder, and libtorch for doctor); storage (paths
// and gs:// auth mode, for doctor and printing); the Beam Go SDK (beam.Init,
// the runners behind --runner via beamx, the SDK version for doctor); gotch
// (doctor's autograd check).
package main
