package model

import (
	"fmt"
	"slices"
	"strings"
)

// NewStudent builds a smaller model from a teacher, DistilBERT style: the
// embeddings, pooler and head are copied, and student layer i is a copy of
// teacher layer layers[i] (e.g. 0, 2, 4 of 6). The student has its own
// tensors; training it leaves the teacher unchanged.
func NewStudent(teacher *Bert, layers []int) (*Bert, error) {
	if len(layers) == 0 {
		return nil, fmt.Errorf("student: no layers chosen")
	}
	seen := map[int]bool{}
	for _, l := range layers {
		if l < 0 || l >= teacher.Config.NumHiddenLayers {
			return nil, fmt.Errorf("student: teacher has layers 0..%d, not %d", teacher.Config.NumHiddenLayers-1, l)
		}
		if seen[l] {
			return nil, fmt.Errorf("student: layer %d chosen twice", l)
		}
		seen[l] = true
	}
	cfg := *teacher.Config
	cfg.NumHiddenLayers = len(layers)
	cfg.ID2Label = map[int]string{}
	for k, v := range teacher.Config.ID2Label {
		cfg.ID2Label[k] = v
	}
	cfg.PrunedHeads = nil // student layer i is teacher layer layers[i]
	for i, l := range layers {
		if heads := teacher.Config.PrunedHeads[l]; len(heads) > 0 {
			if cfg.PrunedHeads == nil {
				cfg.PrunedHeads = map[int][]int{}
			}
			cfg.PrunedHeads[i] = slices.Clone(heads)
		}
	}
	s, err := NewBert(&cfg, teacher.Device)
	if err != nil {
		return nil, err
	}
	for _, p := range s.params {
		src := p.Name
		if rest, ok := strings.CutPrefix(p.Name, "bert.encoder.layer."); ok {
			var i int
			var tail string
			if _, err := fmt.Sscanf(rest, "%d.", &i); err != nil {
				s.Free()
				return nil, fmt.Errorf("student: parameter %s: %w", p.Name, err)
			}
			tail = rest[strings.Index(rest, ".")+1:]
			src = fmt.Sprintf("bert.encoder.layer.%d.%s", layers[i], tail)
		}
		tp := teacher.byName[src]
		if tp == nil {
			s.Free()
			return nil, fmt.Errorf("student: teacher has no %s", src)
		}
		vals, err := Float32s(tp.T)
		if err != nil {
			s.Free()
			return nil, err
		}
		t, err := tensorOfFloat32(vals, Shape(tp.T), teacher.Device)
		if err != nil {
			s.Free()
			return nil, err
		}
		if err := s.replaceParam(p.Name, t); err != nil {
			s.Free()
			return nil, err
		}
	}
	return s, nil
}

// SetParam overwrites the named parameter with values (same shape), as when
// restoring a checkpoint.
func (m *Bert) SetParam(name string, values []float32) error {
	p := m.byName[name]
	if p == nil {
		return fmt.Errorf("no parameter %s", name)
	}
	return p.Set(values)
}

// Set replaces the parameter's value with values (same shape and device),
// keeping it trainable. Optimizers hold the *Param, so they see the new tensor.
func (p *Param) Set(values []float32) error {
	dev, err := p.T.Device()
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	t, err := tensorOfFloat32(values, Shape(p.T), dev)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	if err := t.RequiresGrad_(true); err != nil {
		drop(t)
		return fmt.Errorf("%s: requires_grad: %w", p.Name, err)
	}
	drop(p.T)
	p.T = t
	weightsChanged()
	return nil
}
