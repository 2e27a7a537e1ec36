package model

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Parameter-efficient fine-tuning methods (Tuning.Method).
const (
	TuneFull   = ""       // every weight trains (less the frozen layers)
	TuneLoRA   = "lora"   // low-rank updates on chosen linear layers; the base is frozen
	TuneBitFit = "bitfit" // biases only (Ben Zaken et al. 2022)
)

// Defaults of a LoRA configuration, as PEFT's LoraConfig.
const (
	DefaultLoRAR     = 8
	DefaultLoRAAlpha = 8
)

// DefaultLoRATargets are the attention projections LoRA adapts when none are
// named (Hu et al. 2021; PEFT's default for BERT).
var DefaultLoRATargets = []string{"query", "value"}

// LoRAConfig is one LoRA adapter's shape: y = Wx + b + (α/r)·B·A·dropout(x).
type LoRAConfig struct {
	R       int
	Alpha   float64
	Dropout float64
	// Targets name linear layers as PEFT's target_modules list does: a layer
	// is adapted when its HF name equals a target or ends with "."+target
	// ("query", "attention.output.dense", "dense").
	Targets []string
	// RSLoRA scales by α/√r instead of α/r (PEFT's use_rslora).
	RSLoRA bool
}

// Scale is the factor the low-rank update is multiplied by.
func (c LoRAConfig) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// Tuning says which weights a fine-tuning run trains. The classifier head
// always trains.
type Tuning struct {
	Method string     // TuneFull, TuneLoRA or TuneBitFit
	LoRA   LoRAConfig // TuneLoRA only
	// FreezeEmbeddings and FreezeLayers hold the embeddings and these encoder
	// layers fixed (full fine-tuning and BitFit).
	FreezeEmbeddings bool
	FreezeLayers     []int
}

// ParseFreeze reads a --freeze_layers value: "embeddings" and layer numbers
// or ranges, comma-separated ("embeddings,0-2"), for a model of `layers` layers.
func ParseFreeze(spec string, layers int) (embeddings bool, frozen []int, err error) {
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
			continue
		case part == "embeddings":
			embeddings = true
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a > b {
			return false, nil, fmt.Errorf("freeze_layers %q: %q is not embeddings, a layer number or a range like 0-2", spec, part)
		}
		if a < 0 || b >= layers {
			return false, nil, fmt.Errorf("freeze_layers %q: the model has layers 0..%d", spec, layers-1)
		}
		for l := a; l <= b; l++ {
			if !slices.Contains(frozen, l) {
				frozen = append(frozen, l)
			}
		}
	}
	slices.Sort(frozen)
	return embeddings, frozen, nil
}

// loraLinear is the low-rank update of one linear layer.
type loraLinear struct {
	a, b           *Param // lora_A [r, in], lora_B [out, r]
	scale, dropout float64
}

// LinearLayers lists the HF names of the model's linear layers LoRA may
// adapt: every projection of every encoder layer and the pooler (the
// classifier trains whole instead, as PEFT's modules_to_save).
func LinearLayers(cfg *Config) []string {
	var out []string
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		for _, s := range []string{"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"} {
			out = append(out, fmt.Sprintf("bert.encoder.layer.%d.%s", i, s))
		}
	}
	return append(out, "bert.pooler.dense")
}

// LoRATargets is the linear layers the targets name, each target checked
// to name at least one.
func LoRATargets(cfg *Config, targets []string) ([]string, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("lora: no target layers")
	}
	var out []string
	for _, tgt := range targets {
		n := 0
		for _, name := range LinearLayers(cfg) {
			if name == tgt || strings.HasSuffix(name, "."+tgt) {
				n++
				if !slices.Contains(out, name) {
					out = append(out, name)
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("lora target %q names no linear layer (try query, key, value, attention.output.dense, intermediate.dense, output.dense or dense)", tgt)
		}
	}
	// Model order, so parameter order and checkpoints do not depend on the
	// order targets were given in.
	order := LinearLayers(cfg)
	slices.SortFunc(out, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	return out, nil
}

// AddLoRA adds a LoRA update to each target layer: lora_A drawn as PEFT
// does (Kaiming-uniform with a=√5, i.e. U(±1/√in)), lora_B zero, so the
// model's outputs are unchanged until it trains. Call Seed (or WithSeed)
// first for a repeatable draw.
func (m *Bert) AddLoRA(c LoRAConfig) error {
	if c.R <= 0 {
		return fmt.Errorf("lora: r must be positive, got %d", c.R)
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		return fmt.Errorf("lora: dropout must be in [0, 1), got %v", c.Dropout)
	}
	if m.lora != nil {
		return fmt.Errorf("lora: the model already has an adapter")
	}
	if m.Quantized() {
		return fmt.Errorf("lora: the model is quantized")
	}
	names, err := LoRATargets(m.Config, c.Targets)
	if err != nil {
		return err
	}
	m.lora = map[string]*loraLinear{}
	cfg := c
	m.loraCfg = &cfg
	for _, prefix := range names {
		shape := Shape(m.w(prefix + ".weight"))
		out, in := shape[0], shape[1]
		bound := 1 / math.Sqrt(float64(in))
		a, err := ts.Zeros([]int64{int64(c.R), in}, gotch.Float, m.Device)
		if err == nil {
			err = a.Uniform_(-bound, bound)
		}
		if err != nil {
			drop(a)
			m.dropLoRA()
			return fmt.Errorf("lora %s: %w", prefix, err)
		}
		b, err := ts.Zeros([]int64{out, int64(c.R)}, gotch.Float, m.Device)
		if err != nil {
			drop(a)
			m.dropLoRA()
			return fmt.Errorf("lora %s: %w", prefix, err)
		}
		if err := m.addLoRA(prefix, a, b, c.Scale(), c.Dropout); err != nil {
			m.dropLoRA()
			return err
		}
	}
	return nil
}

// addLoRA takes ownership of a and b as prefix's update.
func (m *Bert) addLoRA(prefix string, a, b *ts.Tensor, scale, dropout float64) error {
	l := &loraLinear{scale: scale, dropout: dropout}
	for _, x := range []struct {
		dst **Param
		t   *ts.Tensor
		n   string
	}{{&l.a, a, ".lora_A.weight"}, {&l.b, b, ".lora_B.weight"}} {
		if err := x.t.RequiresGrad_(true); err != nil {
			drop(a, b)
			return fmt.Errorf("%s: requires_grad: %w", prefix+x.n, err)
		}
		*x.dst = &Param{Name: prefix + x.n, T: x.t, Decay: true}
	}
	m.lora[prefix] = l
	m.adapters = append(m.adapters, l.a, l.b)
	return nil
}

// shareBase is a model over m's weights, without copying them: the result's
// parameters are m's tensors, marked shared, so that replacing one (the
// head) or freeing the result leaves m intact.
func (m *Bert) shareBase() *Bert {
	cfg := *m.Config
	cfg.ID2Label = map[int]string{}
	for k, v := range m.Config.ID2Label {
		cfg.ID2Label[k] = v
	}
	v := &Bert{Config: &cfg, Device: m.Device, byName: map[string]*Param{}, shared: map[string]bool{}, inputMap: nil}
	for _, p := range m.params {
		q := &Param{Name: p.Name, T: p.T, Decay: p.Decay}
		v.params = append(v.params, q)
		v.byName[q.Name] = q
		v.shared[q.Name] = true
	}
	return v
}

// LoRA is the model's adapter configuration, nil without one.
func (m *Bert) LoRA() *LoRAConfig { return m.loraCfg }

// AdapterParams are the LoRA parameters (lora_A, lora_B per layer, in model
// order) under their HF-style names, e.g.
// bert.encoder.layer.0.attention.self.query.lora_A.weight.
func (m *Bert) AdapterParams() []*Param { return m.adapters }

// MergeLoRA folds every update into its layer's weight (W += (α/r)·B·A) and
// removes the adapter: the model is then a plain BERT with the same outputs.
func (m *Bert) MergeLoRA() error {
	if m.lora == nil {
		return nil
	}
	if len(m.shared) > 0 {
		return fmt.Errorf("merge lora: the base weights are shared with another model (LoadOptions.Base)")
	}
	err := NoGrad(func() error {
		for _, prefix := range LinearLayers(m.Config) {
			l := m.lora[prefix]
			if l == nil {
				continue
			}
			var s scope
			delta := s.mulScalar(s.matmul(l.b.T, l.a.T), l.scale)
			if s.ok() {
				s.err = m.w(prefix + ".weight").Add_(delta)
			}
			err := s.err
			s.release()
			if err != nil {
				return fmt.Errorf("merge lora %s: %w", prefix, err)
			}
		}
		weightsChanged()
		return nil
	})
	if err != nil {
		return err
	}
	m.dropLoRA()
	return nil
}

func (m *Bert) dropLoRA() {
	for _, p := range m.adapters {
		drop(p.T)
		p.T = nil
	}
	m.adapters, m.lora, m.loraCfg = nil, nil, nil
}

// loraDelta is (α/r)·B·A·dropout(x) for the layer's update.
func (l *loraLinear) delta(s *scope, x *ts.Tensor, train bool) *ts.Tensor {
	// The scale multiplies the rank-r intermediate, not the layer-wide
	// output: the same product, out/r times fewer multiplications.
	// Under bf16 (SetPrecision) x is bf16: A and B are cast to it in the
	// autograd graph, so their gradients stay float32.
	a, b := l.a.T, l.b.T
	if s.ok() && x.DType() != a.DType() {
		a, b = s.cast(a, x.DType()), s.cast(b, x.DType())
	}
	h := s.mulScalar(s.matmul(s.dropout(x, l.dropout, train), s.transpose(a, 0, 1)), l.scale)
	return s.matmul(h, s.transpose(b, 0, 1))
}

// Tune sets which weights train: it adds the LoRA adapter (TuneLoRA) and
// switches autograd off for every weight outside the trainable set, so
// backward computes no gradient for them and the optimizer holds no state
// for them. Trainable returns the set.
func (m *Bert) Tune(t Tuning) error {
	switch t.Method {
	case TuneFull, TuneBitFit:
	case TuneLoRA:
		if t.FreezeEmbeddings || len(t.FreezeLayers) > 0 {
			return fmt.Errorf("freeze_layers is for full fine-tuning and BitFit: LoRA freezes every base weight already")
		}
		if err := m.AddLoRA(t.LoRA); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown fine-tuning method %q (want lora or bitfit, or none for full fine-tuning)", t.Method)
	}
	for _, l := range t.FreezeLayers {
		if l < 0 || l >= m.Config.NumHiddenLayers {
			return fmt.Errorf("freeze_layers: the model has layers 0..%d, not %d", m.Config.NumHiddenLayers-1, l)
		}
	}
	m.frozen = map[string]bool{}
	for _, p := range m.params {
		if trains(p.Name, t) {
			continue
		}
		if err := p.T.RequiresGrad_(false); err != nil {
			return fmt.Errorf("freeze %s: %w", p.Name, err)
		}
		m.frozen[p.Name] = true
	}
	return nil
}

// trains says whether the named base weight is in t's trainable set.
func trains(name string, t Tuning) bool {
	if isHead(name) {
		return true
	}
	if t.Method == TuneLoRA {
		return false
	}
	if t.FreezeEmbeddings && strings.HasPrefix(name, "bert.embeddings.") {
		return false
	}
	if l, ok := layerOf(name); ok && slices.Contains(t.FreezeLayers, l) {
		return false
	}
	return t.Method != TuneBitFit || strings.HasSuffix(name, ".bias")
}

// Trainable is what the optimizer updates: the base weights Tune left
// trainable (all of them without Tune), then the adapter's.
func (m *Bert) Trainable() []*Param {
	out := make([]*Param, 0, len(m.params)+len(m.adapters))
	for _, p := range m.params {
		if !m.frozen[p.Name] {
			out = append(out, p)
		}
	}
	return append(out, m.adapters...)
}

// CountParams is the number of scalars in params.
func CountParams(params []*Param) int64 {
	var n int64
	for _, p := range params {
		n += numel(Shape(p.T))
	}
	return n
}
