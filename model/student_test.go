package model

import (
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
)

func TestNewStudentCopiesChosenLayers(t *testing.T) {
	defer LockThread()()
	teacher, _, err := Load(filepath.Join("..", "testdata", "parity", "tiny-bert"), LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer teacher.Free()
	s, err := NewStudent(teacher, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Free()
	if s.Config.NumHiddenLayers != 1 || len(s.Params()) != len(teacher.Params())-16 {
		t.Fatalf("student has %d layers, %d params", s.Config.NumHiddenLayers, len(s.Params()))
	}
	for _, c := range [][2]string{
		{"bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.attention.self.query.weight"},
		{"bert.encoder.layer.0.output.LayerNorm.bias", "bert.encoder.layer.1.output.LayerNorm.bias"},
		{"bert.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"},
		{"classifier.weight", "classifier.weight"},
	} {
		if d := maxAbsDiff(values(t, s.Param(c[0]).T), values(t, teacher.Param(c[1]).T)); d != 0 {
			t.Errorf("student %s differs from teacher %s by %g", c[0], c[1], d)
		}
	}
	// Changing the student must not touch the teacher.
	before := values(t, teacher.Param("classifier.bias").T)
	if err := s.SetParam("classifier.bias", []float32{9, 9, 9}); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(values(t, teacher.Param("classifier.bias").T), before); d != 0 {
		t.Error("student shares storage with the teacher")
	}
	if _, err := NewStudent(teacher, []int{0, 0}); err == nil {
		t.Error("a layer chosen twice should be refused")
	}
	if _, err := NewStudent(teacher, []int{2}); err == nil {
		t.Error("a layer the teacher lacks should be refused")
	}
}

// TestStudentOfPrunedTeacher: a student cut from a head-pruned teacher keeps
// each chosen layer's pruned heads under the student's own layer index.
func TestStudentOfPrunedTeacher(t *testing.T) {
	defer LockThread()()
	teacher := loadTiny(t)
	defer teacher.Free()
	if err := teacher.PruneHeads(1, []int{0, 2}); err != nil {
		t.Fatal(err)
	}
	s, err := NewStudent(teacher, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Free()
	if got := s.Config.PrunedHeads; len(got) != 1 || len(got[0]) != 2 || s.Config.LayerHeads(0) != 2 {
		t.Fatalf("student pruned_heads %v (layer 0 keeps %d heads), want layer 0 without heads 0 and 2", got, s.Config.LayerHeads(0))
	}
	if s.NumParams() != s.Config.ParamCount() {
		t.Errorf("student has %d parameters, its config says %d", s.NumParams(), s.Config.ParamCount())
	}
	b := tinyBatch(t, s)
	defer drop(b.InputIDs, b.AttentionMask)
	if len(evalLogits(t, s, b)) != 2*s.Config.NumLabels() {
		t.Error("student logits have the wrong size")
	}
}
