// Package transforms holds beamtune's reusable Beam PTransforms and DoFns:
// reading corpora into records with a dead-letter output, deduplication and
// deterministic splits, tokenization on the workers, Parquet shards with a
// manifest, batched inference, training, metrics and reports.
//
// DoFns are structs whose exported fields are their configuration (Beam
// serializes them as JSON to ship them to workers); native handles such as
// tokenizers and libtorch models are created in Setup, never serialized.
package transforms
