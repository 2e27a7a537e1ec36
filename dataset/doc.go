// Package dataset owns the formats that every beamtune stage shares: the
// input corpora beamtune reads (CSV, TSV, JSONL and text records, and the
// reasons a record goes to the dead letter: records.go), the manifest of a
// prepared dataset (what it was made from, its splits, labels, shards and
// rejects; read, parsed, checked for completeness), the Parquet shard rows
// (written and read in chunks), split names, and the in-memory rows and
// length-bucketed batch plans that training and inference read shards into.
//
// It is plain Go with no Beam and no libtorch: prepare writes these formats
// from Beam DoFns, the trainer and the inference DoFns read them, and tests
// and tools can use them alone. The field-by-field schema is in
// docs/manifest.md.
//
// Imports: the standard library, parquet-go, and beamtune's storage.
package dataset
