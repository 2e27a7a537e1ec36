package tokenizer_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/beamtune/beamtune/model/tokenizer"
)

func Example() {
	// Load("/root/.cache/beamtune/models/all-MiniLM-L6-v2/tokenizer.json") reads
	// the model's file; the example uses the copy committed for the tests.
	f, err := os.Open("../../testdata/tokenizer/all-MiniLM-L6-v2.tokenizer.json.gz")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := tokenizer.FromJSON(data) // truncation 128 and padding to 128, as the file says
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, _ = tok.WithPadding(&tokenizer.Padding{Strategy: tokenizer.PadBatchLongest})

	batch := tok.EncodePairBatch([]tokenizer.Pair{{A: "Ångström's café", B: "İstanbul"}, {A: "ok", B: "fine"}})
	for _, e := range batch {
		fmt.Println(e.IDs, e.TypeIDs, e.AttentionMask, e.Length, e.Truncated)
	}
	// HF tokenizers gives the same ids, type ids and masks.

	// Output:
	// [101 17076 15687 1005 1055 7668 102 9960 102] [0 0 0 0 0 0 0 1 1] [1 1 1 1 1 1 1 1 1] 9 false
	// [101 7929 102 2986 102 0 0 0 0] [0 0 0 1 1 0 0 0 0] [1 1 1 1 1 0 0 0 0] 5 false
}
