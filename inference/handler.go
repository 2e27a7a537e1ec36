package inference

import (
	"encoding/json"
	"fmt"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/signing"
)

// ModelHandler says which model to run and how. It is a plain value: it is
// serialized with the pipeline, and the model it names is loaded on the
// workers, once per process (see Acquire).
type ModelHandler struct {
	// ModelDir is a HF model folder (a beamtune-published model, a LoRA
	// adapter folder, a multi-task bundle, or save_pretrained's output),
	// local or gs://.
	ModelDir string
	Device   string // auto, cpu, cuda or cuda:N ("": auto)
	Threads  int    // libtorch threads per worker process (0: libtorch's default)
	// Quantize runs the linear layers in int8 ("int8", "int8_per_channel")
	// or float32 ("" or "none"); the folder stays float32.
	Quantize string
	// Precision is the arithmetic of the encoder's matrix products: fp32
	// ("", the default), bf16 (bfloat16 with float32 logits; the weights'
	// bf16 copies are made once at the first batch), fp16 (CUDA only) or
	// auto (bf16 where the CPU or GPU has fast bfloat16, else fp32). With
	// an int8 Quantize, auto is fp32 and bf16 or fp16 is refused.
	Precision string
	// MaxBatchSize caps the examples of one forward pass (0: 32), and
	// MaxBatchTokens the padded tokens (examples × longest; 0: 8192).
	MaxBatchSize   int
	MaxBatchTokens int
	// MaxLength caps the tokens of an example, special tokens included (0:
	// 512, or the model's max_position_embeddings when smaller). Longer
	// texts are truncated, or sent to the dead letter with NoTruncation.
	MaxLength    int
	NoTruncation bool
	// Threshold picks a multi-label model's decision thresholds: "" or
	// "per_label" (tuned on validation and saved with the model), "global",
	// or a probability.
	Threshold string
	// Tasks, for a multi-task bundle, are the heads to run, all on one
	// encoder pass ("": every task of the bundle).
	Tasks []string
	// DataTokenizerSHA256, for beamtune's shard scoring: the sha256 of the
	// tokenizer.json the shards were prepared with (a vocabulary-pruned
	// model maps those ids to its own).
	DataTokenizerSHA256 string
	// Trust, when set, is the policy the model folder must be signed under,
	// checked on the worker before its weights are read.
	Trust signing.Trust
}

// Defaults of a ModelHandler's zero fields.
const (
	DefaultMaxBatchSize   = 32
	DefaultMaxBatchTokens = 8192
	DefaultMaxLength      = 512
)

func (h ModelHandler) batchSize() int {
	if h.MaxBatchSize > 0 {
		return h.MaxBatchSize
	}
	return DefaultMaxBatchSize
}

func (h ModelHandler) batchTokens() int {
	if h.MaxBatchTokens > 0 {
		return h.MaxBatchTokens
	}
	return DefaultMaxBatchTokens
}

// check refuses settings no model could run with.
func (h ModelHandler) check() error {
	if h.ModelDir == "" {
		return fmt.Errorf("inference: ModelHandler.ModelDir is empty")
	}
	if h.MaxBatchSize < 0 || h.MaxBatchTokens < 0 || h.MaxLength < 0 {
		return fmt.Errorf("inference: negative batch or length limit (%d examples, %d tokens, %d max length)", h.MaxBatchSize, h.MaxBatchTokens, h.MaxLength)
	}
	if _, err := model.ParseDevice(h.Device); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	if _, err := model.ParsePrecision(h.Precision); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	return nil
}

// key identifies the loaded model a handler needs: handlers with the same
// key share one model in a worker process. The batch limits are not part
// of it (they only decide how the model is called); the length rule is (the
// model's tokenizer truncates at it).
func (h ModelHandler) key() string {
	k := h
	k.MaxBatchSize, k.MaxBatchTokens = 0, 0
	data, _ := json.Marshal(k) // plain fields only: cannot fail
	return string(data)
}
