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
//
// Files: bert.go (the encoder and the classification head), config.go
// (config.json, its limits, labels), checkpoint.go (loading safetensors or
// a checked pytorch_model.bin, exporting an HF folder), student.go (a
// student cut from a teacher's layers), prune.go (importance masks, head,
// FFN-neuron and vocabulary pruning, config pruned_heads as HF records it,
// the vocab map of a vocabulary-pruned folder), int8.go (dynamic int8
// linear layers: weights quantized in Go exactly as PyTorch's observers do,
// packed and multiplied by libtorch's oneDNN kernels on CPUs with VNNI or AMX,
// with the activations quantized by beamtune's kernel, its fbgemm kernels
// elsewhere, through a small shim that scripts/setup.sh adds to gotch's
// libtch, scripts/gotch/int8_linear.cpp),
// lora.go (parameter-efficient fine-tuning: LoRA updates on chosen linear
// layers, BitFit and frozen layers through Tune and Trainable, merging),
// adapter.go (LoRA adapter folders in PEFT's layout, written and read, over
// a base whose weights digest is checked, merged or sharing a loaded base),
// loss.go (cross-entropy, the distillation losses), optim.go and adamw.c
// (AdamW, fused on CPU, the linear schedule, clipping), rowsparse.go (the
// word-embedding table trained row-sparse: only the rows a batch uses get a
// gradient and an update, the other rows' zero-gradient steps replayed
// later, bit for bit the dense update), torch.go (tensors in
// and out, threads, seeds, grad mode), thread.go (the one OS thread a process
// runs its torch work on, OnTorchThread), speed.go (inference timing), paths.go
// (the default model), kernels.go (beamtune's own inference kernels in
// scripts/gotch/kernels.cpp: attention over each row's own tokens, residual
// add + LayerNorm in one pass; AVX-512 CPUs, float32, no gradients).
//
// It is the only package that imports gotch (and cgo for adamw.c, the
// int8 shim and the inference kernels); besides that it imports only the standard library,
// golang.org/x/sys/cpu (which instructions int8 and the kernels can use) and its own
// model/safetensors and model/pickle. Nothing in it knows Beam, storage or datasets: callers
// hand it local folders and in-memory batches.
package model
