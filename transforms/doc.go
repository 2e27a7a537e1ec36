// Package transforms holds beamtune's Beam DoFns, CombineFns and composite
// PTransforms, and nothing else: reading corpora into records with a
// dead-letter output (read.go, with dataset's parsers), deduplication and
// deterministic splits (dedupe.go), tokenization on the workers (tokenize.go), spilling
// rows to their shard and writing Parquet shards and the manifest (shard.go,
// manifest.go), batched inference (infer.go, predict.go; int8 and the vocab
// map of a vocabulary-pruned model are applied at load), training trials
// (train.go), pruning importance summed over shards (importance.go) and
// metrics (metrics.go).
//
// The work each DoFn does lives in the Beam-free packages below it: the
// formats in dataset, the training loop in trainer, the report in report.
// DoFns are structs whose exported fields are their configuration (Beam
// serializes them as JSON to ship them to workers); native handles such as
// tokenizers and libtorch models are created in Setup, never serialized.
//
// Imports: Beam, trainer, dataset, report, model (and model/tokenizer),
// storage. Nothing imports it but pipelines.
package transforms
