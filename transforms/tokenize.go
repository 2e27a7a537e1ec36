package transforms

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model/tokenizer"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn5x1[context.Context, dataset.Record, []string, func(Example), func(dataset.BadRecord), error](&TokenizeFn{})
	register.Emitter1[Example]()
	register.Combiner3[labelSet, string, []string](&LabelSetFn{})
	beam.RegisterType(reflect.TypeOf((*labelSet)(nil)).Elem())
	register.Function2x0(labelOf)
	beam.RegisterType(reflect.TypeOf((*Example)(nil)).Elem())
}

// Example is one tokenized training example, a row of a shard.
type Example struct {
	Split        string
	ID           string
	Label        int32   // index into the label vocabulary, -1 when unlabelled (or not single-label)
	Labels       []int32 // multi-label: the class indices
	Scored       bool    // regression: the example has a score (it has no class)
	InputIDs     []int32
	TokenTypeIDs []int32 // only for text pairs
	Length       int32   // tokens, special tokens included
	Truncated    bool
	Text         string // kept when the shards store text
}

// TokenizeFn tokenizes records with the model's tokenizer.json, loaded once
// per worker in Setup. Labels come from the side input (the label vocabulary).
type TokenizeFn struct {
	TokenizerPath string // tokenizer.json, local or gs://
	MaxLength     int
	KeepText      bool

	tok *tokenizer.Tokenizer
}

// Setup loads the tokenizer.
func (fn *TokenizeFn) Setup(ctx context.Context) error {
	var err error
	fn.tok, err = loadTokenizer(ctx, fn.TokenizerPath, fn.MaxLength)
	return err
}

// loadTokenizer reads tokenizer.json and sets it to truncate at maxLength
// without padding (shards store unpadded rows).
func loadTokenizer(ctx context.Context, path string, maxLength int) (*tokenizer.Tokenizer, error) {
	data, err := storage.ReadFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	tok, err := tokenizer.FromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if tok, err = tok.WithPadding(nil); err != nil {
		return nil, err
	}
	if tok, err = tok.WithTruncation(&tokenizer.Truncation{MaxLength: maxLength}); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return tok, nil
}

// ProcessElement tokenizes one record.
func (fn *TokenizeFn) ProcessElement(ctx context.Context, r dataset.Record, labels []string, emit func(Example), emitBad func(dataset.BadRecord)) error {
	label := int32(-1)
	if r.Label != "" {
		i := indexOf(labels, r.Label) // a handful of classes: a scan beats building a map per element
		if i < 0 {
			emitBad(dataset.BadRecord{Source: r.Source, Line: r.Line, Reason: fmt.Sprintf("unknown label %q", r.Label), Raw: r.Text, RawBytes: int64(len(r.Text))})
			return nil
		}
		label = int32(i)
	}
	var enc tokenizer.Encoding
	if r.Pair != "" {
		enc = fn.tok.EncodePair(r.Text, r.Pair)
	} else {
		enc = fn.tok.Encode(r.Text)
	}
	ex := Example{Split: r.Split, ID: r.ID, Label: label, InputIDs: enc.IDs, Length: int32(enc.Length), Truncated: enc.Truncated}
	if r.Pair != "" {
		ex.TokenTypeIDs = enc.TypeIDs
	}
	if fn.KeepText {
		ex.Text = r.Text
	}
	if enc.Truncated {
		tokTruncated.Inc(ctx, 1)
	}
	tokExamples.Inc(ctx, 1)
	emit(ex)
	return nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

var (
	tokExamples  = beam.NewCounter("beamtune.prepare", "examples_tokenized")
	tokTruncated = beam.NewCounter("beamtune.prepare", "examples_truncated")
)

func labelOf(r dataset.Record, emit func(string)) {
	if r.Label != "" {
		emit(r.Label)
	}
}

// LabelSetFn collects the distinct labels and orders them: numerically when
// every label is an integer (AG News's 1..4, SST-2's 0/1), else as strings.
type LabelSetFn struct{}

// labelSet is LabelSetFn's accumulator (Beam cannot encode a bare map).
type labelSet struct{ Seen map[string]bool }

func (LabelSetFn) CreateAccumulator() labelSet { return labelSet{Seen: map[string]bool{}} }
func (LabelSetFn) AddInput(a labelSet, l string) labelSet {
	if a.Seen == nil {
		a.Seen = map[string]bool{}
	}
	a.Seen[l] = true
	return a
}
func (LabelSetFn) MergeAccumulators(a, b labelSet) labelSet {
	if a.Seen == nil {
		a.Seen = map[string]bool{}
	}
	for k := range b.Seen {
		a.Seen[k] = true
	}
	return a
}
func (LabelSetFn) ExtractOutput(a labelSet) []string {
	out := make([]string, 0, len(a.Seen))
	for k := range a.Seen {
		out = append(out, k)
	}
	SortLabels(out)
	return out
}

// SortLabels orders a label vocabulary the way beamtune numbers classes.
func SortLabels(labels []string) {
	numeric := true
	for _, l := range labels {
		if _, err := strconv.ParseInt(l, 10, 64); err != nil {
			numeric = false
			break
		}
	}
	sort.Slice(labels, func(i, j int) bool {
		if numeric {
			a, _ := strconv.ParseInt(labels[i], 10, 64)
			b, _ := strconv.ParseInt(labels[j], 10, 64)
			return a < b
		}
		return labels[i] < labels[j]
	})
}

// LabelVocabulary returns the given labels as a singleton PCollection, or
// infers them from the records.
func LabelVocabulary(s beam.Scope, records beam.PCollection, given []string) beam.PCollection {
	if len(given) > 0 {
		return beam.Create(s.Scope("GivenLabels"), append([]string(nil), given...))
	}
	s = s.Scope("InferLabels")
	return beam.Combine(s, &LabelSetFn{}, beam.ParDo(s, labelOf, records))
}

// LabelVocabularyOf is LabelVocabulary for a PCollection of label strings
// (as SpillRecordsFn emits them) instead of records.
func LabelVocabularyOf(s beam.Scope, labels beam.PCollection, given []string) beam.PCollection {
	if len(given) > 0 {
		return beam.Create(s.Scope("GivenLabels"), append([]string(nil), given...))
	}
	return beam.Combine(s.Scope("InferLabels"), &LabelSetFn{}, labels)
}
