package tokenizer

import (
	"path/filepath"
	"testing"
)

// The benchmarks encode the same text as bench/tokenizer_peer.py does with HF
// tokenizers: truncation at 128, no padding, the whole set per iteration.
// bench/tokenizer_bench.sh runs both and prints the ratio.

func benchTokenizer(b *testing.B) *Tokenizer {
	b.Helper()
	tok, err := loadTestTokenizer(b).WithPadding(nil)
	if err != nil {
		b.Fatal(err)
	}
	if tok, err = tok.WithTruncation(&Truncation{MaxLength: 128}); err != nil {
		b.Fatal(err)
	}
	return tok
}

func benchTexts(b *testing.B, set string) []string {
	b.Helper()
	requireSharedData(b)
	var texts []string
	switch set {
	case "sst2":
		texts = readTSVColumn(b, filepath.Join(sharedDataDir, "sst2", "train.tsv"), "sentence")
	case "ag_news":
		for _, p := range readAGNews(b, filepath.Join(sharedDataDir, "ag_news", "test.csv")) {
			texts = append(texts, p.A+" "+p.B)
		}
	}
	return texts
}

func textBytes(texts []string) int64 {
	var n int64
	for _, s := range texts {
		n += int64(len(s))
	}
	return n
}

func runEncodeBench(b *testing.B, set string) {
	tok := benchTokenizer(b)
	texts := benchTexts(b, set)
	b.SetBytes(textBytes(texts))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		encs := tok.EncodeBatch(texts)
		if len(encs) != len(texts) {
			b.Fatal("short batch")
		}
	}
}

// BenchmarkEncodeSST2 encodes the SST-2 train sentences (67,349, 3.7 MB).
func BenchmarkEncodeSST2(b *testing.B) { runEncodeBench(b, "sst2") }

// BenchmarkEncodeAGNews encodes AG News test, title + " " + description (7,600, 1.8 MB).
func BenchmarkEncodeAGNews(b *testing.B) { runEncodeBench(b, "ag_news") }

// BenchmarkEncodeSST2Single calls Encode per sentence instead of EncodeBatch.
func BenchmarkEncodeSST2Single(b *testing.B) {
	tok := benchTokenizer(b)
	texts := benchTexts(b, "sst2")
	b.SetBytes(textBytes(texts))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, s := range texts {
			_ = tok.Encode(s)
		}
	}
}
