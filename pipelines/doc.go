// Package pipelines builds beamtune's Beam pipelines, one file each: prepare,
// train, distill, compress, evaluate, predict, retrain. Each takes a plain options
// struct, so tests can build and run it on prism, and returns what it wrote.
//
// Stages hand each other artifacts on storage (local or gs://), as TFX
// components do: prepare writes shards and a manifest; train reads the
// manifest and writes a model folder; evaluate reads model folders and writes
// a report.
//
// Before building a pipeline each Run* function checks its inputs in the
// driver (check.go: CheckModelDir, the one rule for model folders;
// CheckDataset; CheckOutput), so that a bad input fails in milliseconds with
// an error wrapping ErrBadInput instead of on a worker. The model registry
// (registry.go: CHAMPION, LEASE, runs) and retrain's stage markers live here
// too. names.go holds the model names and registry file names.
//
// Imports: transforms (the DoFns), trainer, dataset and report (options,
// results, the formats it reads in the driver), model (configs and the
// files of a model folder, never libtorch work), storage, and the Beam SDK.
package pipelines
