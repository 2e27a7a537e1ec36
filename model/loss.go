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
		if !s.ok() {
			return nil, s.err
		}
		t, err := ts.Linear(student, proj, ts.None)
		x = s.add(t, err, "projection")
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
