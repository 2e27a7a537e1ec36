package tokenizer

import (
	"os"
	"path/filepath"
	"testing"

	sugarme "github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// TestAgainstSugarmeTokenizer reads the model's tokenizer.json with
// github.com/sugarme/tokenizer (the design card's tokenizer library) and
// checks that both see the same vocabulary and agree on plain ASCII text, then
// records where sugarme's encoder departs from HF, which is why beamtune
// encodes with its own code (see doc.go).
func TestAgainstSugarmeTokenizer(t *testing.T) {
	data, err := readGzip(filepath.Join(fixtureDir, committedTokenizer))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json") // sugarme reads files only
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ref, err := pretrained.FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	vocab := ref.GetVocab(true)
	if len(vocab) != ours.VocabSize() {
		t.Errorf("vocab sizes: sugarme %d, beamtune %d", len(vocab), ours.VocabSize())
	}
	for tok, id := range vocab {
		if got, ok := ours.TokenID(tok); !ok || int(got) != id {
			t.Fatalf("token %q: sugarme id %d, beamtune %d (%v)", tok, id, got, ok)
		}
	}
	ascii := []string{"hide new secretions from the parental units", "it 's a charming and often affecting journey .", "unflinchingly bleak and desperate"}
	for _, s := range ascii {
		enc, err := ref.EncodeSingle(s, true)
		if err != nil {
			t.Fatal(err)
		}
		got := ours.Encode(s).IDs
		want := enc.Ids
		if len(got) != len(want) {
			t.Fatalf("%q: beamtune %v, sugarme %v", s, got, want)
		}
		for i := range got {
			if int(got[i]) != want[i] {
				t.Fatalf("%q: beamtune %v, sugarme %v", s, got, want)
			}
		}
	}
	// Where they part: sugarme does not decompose accents before stripping
	// them, so "café" is [UNK] for it and "cafe" for HF and beamtune.
	enc, err := ref.EncodeSingle("café", true)
	if err != nil {
		t.Fatal(err)
	}
	cafe, _ := ours.TokenID("cafe")
	if got := ours.Encode("café"); got.Length != 3 || got.IDs[1] != cafe {
		t.Errorf("beamtune encodes café as %v, want [CLS] cafe [SEP]", got.IDs[:got.Length])
	}
	t.Logf("café: sugarme %v, beamtune and HF [CLS] cafe [SEP]", enc.Tokens[:3])
	var _ sugarme.Encoding
}
