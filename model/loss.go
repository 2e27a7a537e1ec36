package model

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// reductionMean is libtorch's at::Reduction::Mean.
const reductionMean = 1

// CrossEntropy is the mean cross-entropy of logits [batch, classes] against
// int64 labels [batch].
func CrossEntropy(logits, labels *ts.Tensor) (*ts.Tensor, error) {
	t, err := logits.CrossEntropyLoss(labels, ts.None, reductionMean, -100, 0, false)
	if err != nil {
		return nil, fmt.Errorf("cross_entropy: %w", err)
	}
	return t, nil
}

// DistillLoss is Hinton et al.'s soft-target loss combined with the hard-label loss:
//
//	alpha * T² * KL(softmax(teacher/T) || softmax(student/T)) + (1-alpha) * CE(student, labels)
//
// The T² factor keeps the soft-target gradients on the same scale as the
// hard-label ones when T changes. KL is averaged over the batch ("batchmean").
// With mseWeight > 0, mseWeight * MSE(student, teacher) on raw logits is added.
func DistillLoss(student, teacher, labels *ts.Tensor, temperature, alpha, mseWeight float64) (*ts.Tensor, error) {
	if temperature <= 0 {
		return nil, fmt.Errorf("distill: temperature must be positive, got %g", temperature)
	}
	var s scope
	defer s.release()
	sLog := s.logSoftmax(s.mulScalar(student, 1/temperature), -1)
	tLog := s.logSoftmax(s.mulScalar(teacher, 1/temperature), -1)
	var total *ts.Tensor
	if alpha > 0 {
		// kl_div(input=log q_student, target=log p_teacher, log_target) summed over
		// classes then averaged over rows.
		if !s.ok() {
			return nil, s.err
		}
		kl, err := sLog.KlDiv(tLog, 2 /* sum */, true, false)
		kl = s.add(kl, err, "kl_div")
		rows := float64(Shape(student)[0])
		total = s.mulScalar(kl, alpha*temperature*temperature/rows)
	}
	if alpha < 1 && labels != nil {
		if !s.ok() {
			return nil, s.err
		}
		ce, err := CrossEntropy(student, labels)
		ce = s.add(ce, err, "cross_entropy")
		ce = s.mulScalar(ce, 1-alpha)
		if total == nil {
			total = ce
		} else {
			total = s.addT(total, ce)
		}
	}
	if mseWeight > 0 {
		if !s.ok() {
			return nil, s.err
		}
		mse, err := student.MseLoss(teacher, reductionMean, false)
		mse = s.add(mse, err, "mse")
		mse = s.mulScalar(mse, mseWeight)
		if total == nil {
			total = mse
		} else {
			total = s.addT(total, mse)
		}
	}
	if !s.ok() {
		return nil, s.err
	}
	if total == nil {
		return nil, fmt.Errorf("distill: nothing to optimise (alpha=%g, no labels, no MSE)", alpha)
	}
	return s.keep(total), nil
}

// HiddenMSE is the mean squared error between a student hidden state and a
// teacher hidden state, through proj (a [teacher_width, student_width]
// weight, or nil when the widths match).
func HiddenMSE(student, teacher, proj *ts.Tensor) (*ts.Tensor, error) {
	var s scope
	defer s.release()
	x := student
	if proj != nil {
		x = s.linear(student, proj, ts.None)
	}
	if !s.ok() {
		return nil, s.err
	}
	t, err := x.MseLoss(teacher, reductionMean, false)
	if err != nil {
		return nil, fmt.Errorf("hidden mse: %w", err)
	}
	return t, nil
}

// HiddenCLSLoss is the hidden-state term of distillation: the mean over the
// mapped layer pairs of HiddenMSE(student[j][:, 0, :], teacher[j], proj[j]).
// student[j] is a student hidden state [batch, seq, Hs]; teacher[j] is the
// teacher's cached [CLS] vector of the mapped layer [batch, Ht]; proj[j] is a
// learned [Ht, Hs] weight, or nil when Hs == Ht.
//
// Only the [CLS] position is matched, not every token: the teacher's vectors
// are computed once and cached in the distillation shards, and caching all
// positions would cost seq times more storage for a term that, for sequence
// classification, mainly has to shape the vector the head reads.
func HiddenCLSLoss(student, teacher, proj []*ts.Tensor) (*ts.Tensor, error) {
	if len(student) == 0 || len(student) != len(teacher) || len(proj) != len(student) {
		return nil, fmt.Errorf("hidden loss: %d student states, %d teacher states, %d projections", len(student), len(teacher), len(proj))
	}
	var s scope
	defer s.release()
	var total *ts.Tensor
	for j := range student {
		if !s.ok() {
			return nil, s.err
		}
		cls, err := student[j].Select(1, 0, false)
		cls = s.add(cls, err, "select [CLS]")
		if !s.ok() {
			return nil, s.err
		}
		mse, err := HiddenMSE(cls, teacher[j], proj[j])
		mse = s.add(mse, err, fmt.Sprintf("hidden pair %d", j))
		if total == nil {
			total = mse
		} else {
			total = s.addT(total, mse)
		}
	}
	total = s.mulScalar(total, 1/float64(len(student)))
	if !s.ok() {
		return nil, s.err
	}
	return s.keep(total), nil
}

// AddScaled returns a + w*b, a new tensor (for adding a weighted loss term).
func AddScaled(a, b *ts.Tensor, w float64) (*ts.Tensor, error) {
	var s scope
	defer s.release()
	sum := s.addT(a, s.mulScalar(b, w))
	if !s.ok() {
		return nil, s.err
	}
	return s.keep(sum), nil
}

// CLSVectors copies the [CLS] (first) position of a hidden state
// [batch, seq, H] into Go memory, row after row: batch*H values.
func CLSVectors(h *ts.Tensor) ([]float32, error) {
	cls, err := h.Select(1, 0, false)
	if err != nil {
		return nil, fmt.Errorf("select [CLS]: %w", err)
	}
	defer drop(cls)
	return Float32s(cls)
}

// NewProjection is a trainable [teacherWidth, studentWidth] weight that maps
// student hidden states to the teacher's width for the hidden-state loss,
// drawn like BERT's linear weights (normal, std 0.02) from libtorch's
// generator, so seed it first for a reproducible run. It belongs to the
// distillation run (checkpoints keep it), not to the exported student.
func NewProjection(name string, teacherWidth, studentWidth int, dev Device) (*Param, error) {
	if teacherWidth <= 0 || studentWidth <= 0 {
		return nil, fmt.Errorf("projection %s: widths %d and %d must be positive", name, teacherWidth, studentWidth)
	}
	t, err := initTensor(name, []int64{int64(teacherWidth), int64(studentWidth)}, 0.02, dev)
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", name, err)
	}
	if err := t.RequiresGrad_(true); err != nil {
		drop(t)
		return nil, fmt.Errorf("projection %s: requires_grad: %w", name, err)
	}
	return &Param{Name: name, T: t, Decay: true}, nil
}

// FreeParams releases parameters that no model owns (projections).
func FreeParams(params []*Param) {
	for _, p := range params {
		drop(p.T)
		p.T = nil
	}
}

// BCEWithLogits is the mean binary cross-entropy of logits [batch, labels]
// against 0/1 float targets of the same shape: the multi-label loss (HF's
// BCEWithLogitsLoss for problem_type multi_label_classification). posWeight
// ([labels], or nil) weighs each label's positive term, for rare labels.
func BCEWithLogits(logits, targets, posWeight *ts.Tensor) (*ts.Tensor, error) {
	pw := ts.None
	if posWeight != nil {
		pw = posWeight
	}
	t, err := logits.BinaryCrossEntropyWithLogits(targets, ts.None, pw, reductionMean, false)
	if err != nil {
		return nil, fmt.Errorf("bce_with_logits: %w", err)
	}
	return t, nil
}

// MSE is the mean squared error of a one-output head's logits [batch, 1]
// against float targets [batch]: the regression loss (HF's MSELoss on the
// squeezed logits for problem_type regression).
func MSE(logits, targets *ts.Tensor) (*ts.Tensor, error) {
	flat, err := logits.View([]int64{-1}, false)
	if err != nil {
		return nil, fmt.Errorf("mse: %w", err)
	}
	defer flat.Drop()
	t, err := flat.MseLoss(targets, reductionMean, false)
	if err != nil {
		return nil, fmt.Errorf("mse: %w", err)
	}
	return t, nil
}

// DistillMultiLabelLoss is DistillLoss for multi-label heads, where each
// label is its own binary decision:
//
//	alpha * T² * BCE(student/T, sigmoid(teacher/T)) + (1-alpha) * BCE(student, targets)
//
// with BCE averaged over rows and labels. The teacher's probabilities at
// temperature T are the soft targets; T² keeps their gradients on the scale
// of the hard-label term, as in the softmax case. mseWeight adds
// mseWeight * MSE(student, teacher) on raw logits.
func DistillMultiLabelLoss(student, teacher, targets *ts.Tensor, temperature, alpha, mseWeight float64) (*ts.Tensor, error) {
	if temperature <= 0 {
		return nil, fmt.Errorf("distill: temperature must be positive, got %g", temperature)
	}
	var s scope
	defer s.release()
	var total *ts.Tensor
	if alpha > 0 {
		sT := s.mulScalar(student, 1/temperature)
		tT := s.mulScalar(teacher, 1/temperature)
		if !s.ok() {
			return nil, s.err
		}
		soft, err := tT.Sigmoid(false)
		soft = s.add(soft, err, "sigmoid")
		if !s.ok() {
			return nil, s.err
		}
		bce, err := BCEWithLogits(sT, soft, nil)
		bce = s.add(bce, err, "bce_with_logits")
		total = s.mulScalar(bce, alpha*temperature*temperature)
	}
	if alpha < 1 && targets != nil {
		if !s.ok() {
			return nil, s.err
		}
		hard, err := BCEWithLogits(student, targets, nil)
		hard = s.add(hard, err, "bce_with_logits")
		total = s.sumScaled(total, hard, 1-alpha)
	}
	if mseWeight > 0 {
		if !s.ok() {
			return nil, s.err
		}
		mse, err := student.MseLoss(teacher, reductionMean, false)
		mse = s.add(mse, err, "mse")
		total = s.sumScaled(total, mse, mseWeight)
	}
	if !s.ok() {
		return nil, s.err
	}
	if total == nil {
		return nil, fmt.Errorf("distill: nothing to optimise (alpha=%g, no labels, no MSE)", alpha)
	}
	return s.keep(total), nil
}

// DistillRegressionLoss is DistillLoss for a regression head: the teacher's
// score is the soft target, with no temperature (a score has no
// distribution to soften):
//
//	alpha * MSE(student, teacher) + (1-alpha) * MSE(student, targets)
func DistillRegressionLoss(student, teacher, targets *ts.Tensor, alpha float64) (*ts.Tensor, error) {
	var s scope
	defer s.release()
	var total *ts.Tensor
	if alpha > 0 {
		soft, err := student.MseLoss(teacher, reductionMean, false)
		soft = s.add(soft, err, "mse")
		total = s.mulScalar(soft, alpha)
	}
	if alpha < 1 && targets != nil {
		if !s.ok() {
			return nil, s.err
		}
		hard, err := MSE(student, targets)
		hard = s.add(hard, err, "mse")
		total = s.sumScaled(total, hard, 1-alpha)
	}
	if !s.ok() {
		return nil, s.err
	}
	if total == nil {
		return nil, fmt.Errorf("distill: nothing to optimise (alpha=%g, no labels)", alpha)
	}
	return s.keep(total), nil
}
