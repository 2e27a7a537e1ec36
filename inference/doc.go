// Package inference is text classification for Apache Beam Go pipelines:
// RunInference over PCollections of texts, text pairs, or keyed texts,
// with any HF BERT-family model folder (a beamtune-published model, a LoRA
// adapter, a multi-task bundle, or save_pretrained's output), local or on
// gs://, and no Python anywhere.
//
// A ModelHandler names the model and how to run it; the model is loaded
// once per worker process (Acquire) and shared by every DoFn instance and
// bundle with the same handler. Inside a bundle, texts are tokenized with
// the model's tokenizer.json, sorted by length and cut into batches of at
// most MaxBatchSize examples and MaxBatchTokens padded tokens. Results
// carry the example, the model's decision for its task kind, and the
// model's id (folder and digest). Elements that cannot be scored (empty,
// invalid UTF-8, too long with NoTruncation) go to a dead-letter output with
// the reason; the metrics have the names of Python RunInference's.
//
// beamtune's own pipelines (teacher logits, evaluate, predict, importance
// scoring) load and run models through the same Model (their DoFns score
// prepared shards instead of texts).
package inference
