package transforms

import (
	"fmt"
	"strings"
	"testing"
	"unicode"

	"github.com/beamtune/beamtune/dataset"
)

func TestKeyByTextValidationFromTrain(t *testing.T) {
	fn := &KeyByTextFn{Salt: "s", ValidationFromTrain: 0.1}
	counts := map[string]int{}
	for i := range 5000 {
		for _, split := range []string{dataset.SplitTrain, dataset.SplitTest} {
			r := dataset.Record{Text: fmt.Sprintf("text number %d", i), Split: split}
			var got dataset.Record
			fn.ProcessElement(r, func(_ string, x dataset.Record) { got = x })
			if split == dataset.SplitTest && got.Split != dataset.SplitTest {
				t.Fatalf("a test record moved to %s", got.Split)
			}
			if split == dataset.SplitTrain {
				counts[got.Split]++
				// Deterministic: the same text always lands in the same split.
				var again dataset.Record
				fn.ProcessElement(r, func(_ string, x dataset.Record) { again = x })
				if again.Split != got.Split {
					t.Fatalf("split of %q changed between calls", r.Text)
				}
			}
		}
	}
	if v := counts[dataset.SplitValidation]; v < 400 || v > 600 {
		t.Errorf("validation got %d of 5000 training texts, want about 500", v)
	}
	if counts[dataset.SplitTrain]+counts[dataset.SplitValidation] != 5000 {
		t.Errorf("training texts lost: %v", counts)
	}
}

// Short, similar keys must still split in the asked proportions: plain FNV
// once put 14% of "text number N" keys into a 10% split.
func TestAssignSplitProportions(t *testing.T) {
	f := Fractions{Train: 0.8, Validation: 0.1, Test: 0.1}
	n := 20000
	counts := map[string]int{}
	for i := range n {
		counts[AssignSplit("beamtune", fmt.Sprintf("row %d", i), f)]++
	}
	for split, want := range map[string]float64{dataset.SplitTrain: 0.8, dataset.SplitValidation: 0.1, dataset.SplitTest: 0.1} {
		got := float64(counts[split]) / float64(n)
		if got < want-0.01 || got > want+0.01 {
			t.Errorf("%s: %.3f of keys, want %.2f±0.01", split, got, want)
		}
	}
}

// normalizeReference is NormalizeText as first written, rune by rune, to
// check the ASCII fast path against.
func normalizeReference(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func TestNormalizeText(t *testing.T) {
	for _, s := range []string{
		"", "  ", "It 's  GOOD ", "a\tb\nc\vd\fe\rf", "\x1c\x1d\x1e\x1f x", "Ünïcode\u00a0NBSP\u0085NEL\u2003EM space",
		"İstanbul ΣΊΣΥΦΟΣ Kelvin\u212a", "bad \xff byte", "ZAZ@[`{", "end\u3000",
	} {
		if got, want := NormalizeText(s), normalizeReference(s); got != want {
			t.Errorf("NormalizeText(%q) = %q, want %q", s, got, want)
		}
	}
}
