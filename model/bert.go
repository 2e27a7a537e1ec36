package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Param is one trainable tensor under its HF checkpoint name.
type Param struct {
	Name string
	T    *ts.Tensor
	// Decay is false for biases and LayerNorm weights: AdamW's weight decay
	// skips them, as in HF's Trainer and the BERT paper's recipe.
	Decay bool
	// rows, when set, holds this step's row-sparse gradient instead of the
	// tensor's own (UseRowSparseEmbeddings).
	rows *rowGrads
}

// Bert is BertForSequenceClassification: encoder, pooler and a linear head.
type Bert struct {
	Config *Config
	Device Device
	params []*Param
	byName map[string]*Param
	// int8 holds the int8-packed linear layers by HF prefix once QuantizeInt8
	// ran; eval-mode forward passes use them instead of the float32 weights.
	int8 map[string]*int8Linear
	// masks, when set (ImportanceMasks), scale each head and FFN neuron so
	// their gradients measure importance for pruning.
	masks *ImportanceMasks
	// inputMap, when set (SetSourceVocab), maps input ids of the source
	// vocabulary of a vocabulary-pruned model to its own ids.
	inputMap *ts.Tensor
	// lora holds the LoRA updates by layer prefix (AddLoRA), loraCfg their
	// configuration and adapters their parameters in model order.
	lora     map[string]*loraLinear
	loraCfg  *LoRAConfig
	adapters []*Param
	// frozen names the base weights Tune left out of the trainable set.
	frozen map[string]bool
	// shared names the weights that belong to another model (an adapter
	// loaded over LoadOptions.Base, or a TaskModel's): Free leaves them,
	// and nothing writes them.
	shared map[string]bool
	// heads, for a multi-task model (SetHeads), are its task heads, which
	// replace the classifier; nil for a single-task model.
	heads []TaskHead
	// precision is the arithmetic of the encoder's matrix products
	// (SetPrecision; "" is fp32), and casts the reduced-precision weight
	// copies eval-mode passes reuse.
	precision Precision
	casts     *casts
	// saveDType is the weights' type in exported folders (SetSaveDType).
	saveDType string
}

// Batch is one padded batch: [batch, seq] int64 tensors on the model's device.
type Batch struct {
	InputIDs      *ts.Tensor
	TokenTypeIDs  *ts.Tensor // may be nil: all zeros
	AttentionMask *ts.Tensor // 1 for real tokens, 0 for padding
}

// Output is what Forward returns. The caller frees it with Free.
type Output struct {
	Logits *ts.Tensor // [batch, num_labels]
	// TaskLogits, from ForwardTasks, are the logits of each task asked, in
	// order; TaskLogits[0] is Logits.
	TaskLogits []*ts.Tensor
	// Hidden holds the embeddings output and each layer's output
	// ([batch, seq, hidden] each) when asked for, as HF's hidden_states.
	Hidden []*ts.Tensor
}

// Free releases the output tensors.
func (o *Output) Free() {
	if o == nil {
		return
	}
	drop(o.Logits)
	if len(o.TaskLogits) > 1 {
		drop(o.TaskLogits[1:]...)
	}
	drop(o.Hidden...)
	o.Logits, o.TaskLogits, o.Hidden = nil, nil, nil
}

// ParamNames lists the HF names of every parameter for cfg, in the order
// beamtune keeps them (embeddings, layers, pooler, classifier).
func ParamNames(cfg *Config) []string {
	names := []string{
		"bert.embeddings.word_embeddings.weight",
		"bert.embeddings.position_embeddings.weight",
		"bert.embeddings.token_type_embeddings.weight",
		"bert.embeddings.LayerNorm.weight",
		"bert.embeddings.LayerNorm.bias",
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		for _, s := range layerParamSuffixes {
			names = append(names, fmt.Sprintf("bert.encoder.layer.%d.%s", i, s))
		}
	}
	return append(names, "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")
}

var layerParamSuffixes = []string{
	"attention.self.query.weight", "attention.self.query.bias",
	"attention.self.key.weight", "attention.self.key.bias",
	"attention.self.value.weight", "attention.self.value.bias",
	"attention.output.dense.weight", "attention.output.dense.bias",
	"attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
	"intermediate.dense.weight", "intermediate.dense.bias",
	"output.dense.weight", "output.dense.bias",
	"output.LayerNorm.weight", "output.LayerNorm.bias",
}

// ParamShape is the shape HF gives the named parameter under cfg.
func ParamShape(cfg *Config, name string) ([]int64, error) {
	h, in := int64(cfg.HiddenSize), int64(cfg.IntermediateSize)
	switch name {
	case "bert.embeddings.word_embeddings.weight":
		return []int64{int64(cfg.VocabSize), h}, nil
	case "bert.embeddings.position_embeddings.weight":
		return []int64{int64(cfg.MaxPositionEmbeddings), h}, nil
	case "bert.embeddings.token_type_embeddings.weight":
		return []int64{int64(cfg.TypeVocabSize), h}, nil
	case "bert.pooler.dense.weight":
		return []int64{h, h}, nil
	case "classifier.weight":
		return []int64{int64(cfg.NumLabels()), h}, nil
	case "classifier.bias":
		return []int64{int64(cfg.NumLabels())}, nil
	}
	// Pruned heads shrink their layer's query, key and value outputs and the
	// attention output's input.
	if layer, ok := layerOf(name); ok && cfg.PrunedHeads[layer] != nil {
		a := int64(cfg.LayerHeads(layer) * cfg.HeadDim())
		switch {
		case strings.HasSuffix(name, ".weight") && strings.Contains(name, "attention.self."):
			return []int64{a, h}, nil
		case strings.HasSuffix(name, ".bias") && strings.Contains(name, "attention.self."):
			return []int64{a}, nil
		case strings.HasSuffix(name, "attention.output.dense.weight"):
			return []int64{h, a}, nil
		}
	}
	switch {
	case strings.HasSuffix(name, "intermediate.dense.weight"):
		return []int64{in, h}, nil
	case strings.HasSuffix(name, "intermediate.dense.bias"):
		return []int64{in}, nil
	case strings.HasSuffix(name, ".output.dense.weight") && !strings.Contains(name, "attention"):
		return []int64{h, in}, nil
	case strings.HasSuffix(name, ".weight") && !strings.Contains(name, "LayerNorm"):
		return []int64{h, h}, nil
	case strings.HasSuffix(name, ".bias"), strings.HasSuffix(name, "LayerNorm.weight"):
		return []int64{h}, nil
	}
	return nil, fmt.Errorf("unknown parameter %q", name)
}

// layerOf is the encoder layer index in a parameter name.
func layerOf(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "bert.encoder.layer.")
	if !ok {
		return 0, false
	}
	idx, _, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(idx)
	return n, err == nil
}

// decays reports whether AdamW weight decay applies to the named parameter.
func decays(name string) bool {
	return !strings.HasSuffix(name, ".bias") && !strings.Contains(name, "LayerNorm")
}

// NewBert builds a randomly initialised model as HF's _init_weights does:
// Linear and Embedding weights ~ N(0, initializer_range), biases 0, LayerNorm
// weight 1 and bias 0. Call Seed first for a repeatable draw.
func NewBert(cfg *Config, dev Device) (*Bert, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dev.Name == "" {
		// gotch ends the process on a zero-value Device; the zero value means CPU here.
		dev = gotch.CPU
	}
	m := &Bert{Config: cfg, Device: dev, byName: map[string]*Param{}}
	for _, name := range ParamNames(cfg) {
		shape, err := ParamShape(cfg, name)
		if err != nil {
			return nil, err
		}
		t, err := initTensor(name, shape, cfg.InitializerRange, dev)
		if err != nil {
			m.Free()
			return nil, fmt.Errorf("init %s: %w", name, err)
		}
		if err := m.addParam(name, t); err != nil {
			m.Free()
			return nil, err
		}
	}
	return m, nil
}

// initTensor draws one parameter's initial value.
func initTensor(name string, shape []int64, std float64, dev Device) (*ts.Tensor, error) {
	switch {
	case strings.HasSuffix(name, "LayerNorm.weight"):
		return ts.Ones(shape, gotch.Float, dev)
	case strings.HasSuffix(name, ".bias"):
		return ts.Zeros(shape, gotch.Float, dev)
	default:
		t, err := ts.Zeros(shape, gotch.Float, dev)
		if err != nil {
			return nil, err
		}
		if err := t.Normal_(0, std); err != nil {
			drop(t)
			return nil, err
		}
		return t, nil
	}
}

// addParam takes ownership of t (a leaf, float32, on m.Device) as a trainable parameter.
func (m *Bert) addParam(name string, t *ts.Tensor) error {
	if err := t.RequiresGrad_(true); err != nil {
		return fmt.Errorf("%s: requires_grad: %w", name, err)
	}
	p := &Param{Name: name, T: t, Decay: decays(name)}
	m.params = append(m.params, p)
	m.byName[name] = p
	return nil
}

// Params returns the parameters in a fixed order.
func (m *Bert) Params() []*Param { return m.params }

// Param returns the named parameter or nil.
func (m *Bert) Param(name string) *Param { return m.byName[name] }

// NumParams counts scalar parameters.
func (m *Bert) NumParams() int64 {
	var n int64
	for _, p := range m.params {
		k := int64(1)
		for _, d := range Shape(p.T) {
			k *= d
		}
		n += k
	}
	return n
}

// Free releases every parameter tensor.
func (m *Bert) Free() {
	if m == nil {
		return
	}
	m.freeInt8()
	m.freeCasts()
	m.dropLoRA()
	drop(m.inputMap)
	m.inputMap = nil
	for _, p := range m.params {
		if p.rows != nil {
			p.rows.clear()
		}
		if !m.shared[p.Name] {
			drop(p.T)
		}
		p.T = nil
	}
	m.params, m.shared, m.heads = nil, nil, nil
	m.byName = map[string]*Param{}
}

func (m *Bert) w(name string) *ts.Tensor { return m.byName[name].T }

// linear applies the named linear layer (HF prefix, without .weight): its
// int8-packed form in eval mode when the model is quantized, else float32.
func (m *Bert) linear(s *scope, prefix string, x *ts.Tensor, train bool) *ts.Tensor {
	if l := m.int8[prefix]; l != nil && !train {
		if !s.ok() {
			return nil
		}
		t, err := l.forward(x)
		return s.add(t, err, "int8 linear "+prefix)
	}
	if m.Precision().reduced() && lowPrecisionLinear(prefix) {
		// Autocast: the product in bf16 (or fp16) from a cast input and
		// cast weights; the output stays in that type.
		x = s.cast(x, m.Precision().lowDType())
		w, b := m.lowWeights(s, prefix, train)
		y := s.linear(x, w, b)
		if l := m.lora[prefix]; l != nil {
			y = s.addT(y, l.delta(s, x, train))
		}
		return y
	}
	y := s.linear(x, m.w(prefix+".weight"), m.w(prefix+".bias"))
	if l := m.lora[prefix]; l != nil {
		y = s.addT(y, l.delta(s, x, train))
	}
	return y
}

// Forward runs the encoder and head. train enables dropout. hidden asks for
// every layer's output (for hidden-state distillation and parity checks).
// The caller frees the result. A multi-task model runs through
// ForwardTasks, which names the heads.
func (m *Bert) Forward(b Batch, train, hidden bool) (*Output, error) {
	return m.ForwardTasks(b, nil, train, hidden)
}

// forward runs the encoder, then the pooler and the heads of tasks (none:
// the classifier).
func (m *Bert) forward(b Batch, tasks []string, train, hidden bool) (*Output, error) {
	cfg := m.Config
	shape := Shape(b.InputIDs)
	if len(shape) != 2 {
		return nil, fmt.Errorf("input_ids must be [batch, seq], got %v", shape)
	}
	bs, seq := shape[0], shape[1]
	if seq > int64(cfg.MaxPositionEmbeddings) {
		return nil, fmt.Errorf("sequence length %d exceeds max_position_embeddings %d", seq, cfg.MaxPositionEmbeddings)
	}
	out := &Output{}

	var s scope
	defer s.release()
	var mask attentionMask
	padded := b.AttentionMask != nil
	if !train && !hidden && m.masks == nil && ownKernels && !m.Device.IsCuda() && !m.Precision().reduced() && !gradEnabled() {
		// Inference in float32 on the CPU runs beamtune's kernels (see ownKernels):
		// attention over each row's tokens, the residual add and LayerNorm
		// in one pass; hidden states keep HF's values at
		// padded positions through the additive mask below, and a forward
		// that will be differentiated (the kernel has no backward) keeps
		// libtorch's attention.
		lengths, err := rowLengths(b.AttentionMask, bs, seq)
		if err != nil {
			return nil, fmt.Errorf("attention mask: %w", err)
		}
		if lengths != nil {
			mask.lengths, padded = lengths, false
		}
	}
	if padded && !train {
		// A batch without padding needs no mask: attention then runs
		// libtorch's fused kernel, which takes no mask (as HF's SDPA
		// attention drops an all-ones mask). Training keeps the mask: its
		// attention is written out op by op, where the mask is one add.
		var err error
		if padded, err = hasPadding(b.AttentionMask); err != nil {
			return nil, fmt.Errorf("attention mask: %w", err)
		}
	}
	if padded {
		// Additive mask: 0 for tokens, the most negative float32 for padding, as
		// HF's get_extended_attention_mask; shaped [batch, 1, 1, seq] to broadcast
		// over heads and query positions.
		var maskAdd *ts.Tensor
		mf := s.toFloat(b.AttentionMask)
		if p := m.Precision(); p.reduced() {
			// The attention scores are bf16 (fp16): the mask is of their
			// type, with that type's most negative finite value
			// (-MaxFloat32 would round to -inf).
			maskAdd = s.view(s.cast(s.mulScalar(s.oneMinus(mf), p.lowMin()), p.lowDType()), bs, 1, 1, seq)
		} else {
			maskAdd = s.view(s.mulScalar(s.oneMinus(mf), -math.MaxFloat32), bs, 1, 1, seq)
		}
		if !s.ok() {
			return nil, s.err
		}
		s.keep(maskAdd)
		defer drop(maskAdd)
		mask.add = maskAdd
	}

	h, err := m.embeddings(b, bs, seq, train)
	if err != nil {
		return nil, err
	}
	if hidden {
		out.Hidden = append(out.Hidden, h)
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		next, err := m.layer(i, h, mask, bs, seq, train)
		if !hidden {
			drop(h)
		}
		if err != nil {
			out.Free()
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		h = next
		if hidden {
			out.Hidden = append(out.Hidden, h)
		}
	}
	logits, err := m.forwardHeads(h, tasks, train)
	if !hidden {
		drop(h)
	}
	if err != nil {
		out.Free()
		return nil, err
	}
	out.Logits = logits[0]
	if len(tasks) > 0 {
		out.TaskLogits = logits
	}
	return out, nil
}

// embeddings: word + position + token type, LayerNorm, dropout.
func (m *Bert) embeddings(b Batch, bs, seq int64, train bool) (*ts.Tensor, error) {
	cfg := m.Config
	var s scope
	defer s.release()
	pos := s.arange(seq, m.Device)
	ids := b.InputIDs
	if m.inputMap != nil {
		ids = s.take(m.inputMap, ids) // the pruned id of every source id
	}
	var x *ts.Tensor
	rows := m.byName[wordEmbeddings].rows
	switch {
	case rows != nil && train && gradEnabled():
		x = rows.gatherRows(&s, m.w(wordEmbeddings), ids)
	case rows != nil:
		// Any other forward reads the whole table: every row catches up.
		if err := rows.current(m.w(wordEmbeddings), nil); err != nil {
			return nil, fmt.Errorf("embeddings: %w", err)
		}
		fallthrough
	default:
		x = s.embedding(m.w(wordEmbeddings), ids)
	}
	x = s.addT(x, s.embedding(m.w("bert.embeddings.position_embeddings.weight"), pos))
	if b.TokenTypeIDs != nil {
		x = s.addT(x, s.embedding(m.w("bert.embeddings.token_type_embeddings.weight"), b.TokenTypeIDs))
	} else {
		row := s.selectIdx(m.w("bert.embeddings.token_type_embeddings.weight"), 0, 0)
		x = s.addT(x, row)
	}
	x = s.layerNorm(x, m.w("bert.embeddings.LayerNorm.weight"), m.w("bert.embeddings.LayerNorm.bias"), cfg.LayerNormEps)
	x = s.dropout(x, cfg.HiddenDropoutProb, train)
	if !s.ok() {
		return nil, fmt.Errorf("embeddings: %w", s.err)
	}
	return s.keep(x), nil
}

// layer is one transformer block: self-attention, then the feed-forward
// network, each followed by dropout, a residual connection and LayerNorm.
func (m *Bert) layer(i int, h *ts.Tensor, mask attentionMask, bs, seq int64, train bool) (*ts.Tensor, error) {
	cfg := m.Config
	p := fmt.Sprintf("bert.encoder.layer.%d.", i)
	w := func(s string) *ts.Tensor { return m.w(p + s) }
	lin := func(s *scope, name string, x *ts.Tensor) *ts.Tensor { return m.linear(s, p+name, x, train) }
	heads := int64(cfg.LayerHeads(i))
	dh := int64(cfg.HeadDim())
	var s scope
	defer s.release()
	// Where beamtune's kernels run (mask.lengths: a float32 CPU forward that
	// only scores), a float32 layer's product comes without its bias (mm,
	// where libtorch's linear, addmm, first copies the bias into every row
	// of its output) and the kernel that reads the product adds the bias.
	kernels := mask.lengths != nil
	// bare is the named layer's product without its bias, and the bias,
	// where a kernel will add it; else the whole layer and no bias.
	bare := func(name string, x *ts.Tensor) (y, bias *ts.Tensor) {
		if kernels && m.int8[p+name] == nil && m.lora[p+name] == nil {
			return s.matmul(x, s.transpose(w(name+".weight"), 0, 1)), w(name + ".bias")
		}
		return lin(&s, name, x), nil
	}

	// The projections, [batch, seq, heads·head_dim] each.
	var q, k, v, bq, bk, bv *ts.Tensor
	if qkv := p + "attention.self." + qkvName; m.int8[qkv] != nil && !train {
		// int8: one product for the three projections (QuantizeInt8 packs
		// them together); each is a view of its columns.
		y := m.linear(&s, qkv, h, train)
		width := heads * dh
		q, k, v = s.narrow(y, 2, 0, width), s.narrow(y, 2, width, width), s.narrow(y, 2, 2*width, width)
	} else {
		q, bq = bare("attention.self.query", h)
		k, bk = bare("attention.self.key", h)
		v, bv = bare("attention.self.value", h)
	}
	scale := 1 / math.Sqrt(float64(dh))
	var ctx *ts.Tensor // [batch, seq, heads·head_dim]
	if kernels {
		ctx = s.attentionFused(q, k, v, bq, bk, bv, mask.lengths, heads, scale)
	} else {
		// [batch, seq, hidden] -> [batch, heads, seq, head_dim]
		split := func(x *ts.Tensor) *ts.Tensor { return s.permute(s.view(x, bs, seq, heads, dh), 0, 2, 1, 3) }
		q, k, v = split(q), split(k), split(v)
		var heads4 *ts.Tensor
		if train {
			scores := s.mulScalar(s.matmul(q, s.transpose(k, -1, -2)), scale)
			if mask.add != nil {
				scores = s.addT(scores, mask.add)
			}
			// In bf16 the scores stay bf16: libtorch's softmax accumulates in
			// float32 and rounds its output once.
			probs := s.dropout(s.softmaxAs(scores, -1, scores), cfg.AttentionProbsDropoutProb, train)
			heads4 = s.matmul(probs, v)
		} else {
			heads4 = s.attention(q, k, v, mask.add, scale)
		}
		if m.masks != nil { // head importance: d loss / d mask[h] is head h's score
			heads4 = s.mulT(heads4, s.view(m.masks.Heads[i], 1, heads, 1, 1))
		}
		ctx = s.view(s.contiguous(s.permute(heads4, 0, 2, 1, 3)), bs, seq, heads*dh)
	}
	// The output projection's bias (from bare), the residual connection and
	// LayerNorm: one pass per row with beamtune's kernel where attention ran
	// it, else libtorch's ops.
	addNorm := func(x, xBias, residual *ts.Tensor, norm string) *ts.Tensor {
		if kernels {
			return s.addLayerNorm(s.contiguous(x), xBias, s.contiguous(residual), w(norm+".weight"), w(norm+".bias"), cfg.LayerNormEps)
		}
		return s.layerNorm(s.addT(s.dropout(x, cfg.HiddenDropoutProb, train), residual), w(norm+".weight"), w(norm+".bias"), cfg.LayerNormEps)
	}
	y, by := bare("attention.output.dense", ctx)
	attn := addNorm(y, by, h, "attention.output.LayerNorm")

	// The intermediate layer keeps libtorch's linear: a bias + GELU kernel
	// measured the same as addmm and libtorch's GELU (BENCHMARKS.md).
	inter := s.activation(lin(&s, "intermediate.dense", attn), cfg.HiddenAct)
	if m.masks != nil { // neuron importance: Σ activation × gradient
		inter = s.mulT(inter, m.masks.FFN[i])
	}
	y, by = bare("output.dense", inter)
	o := addNorm(y, by, attn, "output.LayerNorm")
	if !s.ok() {
		return nil, s.err
	}
	return s.keep(o), nil
}
