// Package pipelines builds beamtune's Beam pipelines, one file each: prepare,
// train, distill, evaluate, predict, retrain. Each takes a plain options
// struct, so tests can build and run it on prism, and returns what it wrote.
//
// Stages hand each other artifacts on storage (local or gs://), as TFX
// components do: prepare writes shards and a manifest; train reads the
// manifest and writes a model folder; evaluate reads model folders and writes
// a report.
package pipelines
