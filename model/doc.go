// Package model is BERT for sequence classification on libtorch, through gotch.
//
// It holds the HF-compatible pieces (Config read from config.json, parameters
// named exactly as in HF checkpoints, safetensors in and out, pytorch_model.bin
// in through package model/pickle, which checks it without running it), the
// encoder itself, heads and losses, the optimizer and learning-rate schedule,
// and the thin layer (torch.go) that keeps gotch's sharp edges away from the
// rest of beamtune: no Must* helpers (they exit the process), explicit freeing
// of intermediates, torch work on locked OS threads.
//
// The layout follows HF transformers' modeling_bert.py so a reader can put the
// two side by side: Embeddings, SelfAttention, Layer, Encoder, Pooler,
// BertForSequenceClassification.
package model
