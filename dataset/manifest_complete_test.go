package dataset

import (
	"strings"
	"testing"
)

// TestManifestCheckComplete: a manifest is written only when it accounts
// for every input file, every record read (in a shard or removed by dedupe)
// and every rejected record (in the dead letter); what a failed bundle
// leaves out of the manifest step's side inputs shows up as one of these.
func TestManifestCheckComplete(t *testing.T) {
	complete := func() *Manifest {
		m := &Manifest{
			Inputs: []FileFingerprint{{Path: "a", Records: 60, Rejected: 2}, {Path: "b", Records: 40, Rejected: 1}},
			Splits: map[string]SplitSummary{SplitTrain: {Rows: 80}, SplitValidation: {Rows: 14}},
			Shards: []ShardInfo{{Rows: 50}, {Rows: 30}, {Rows: 14}},
		}
		m.Dedupe.Duplicates, m.Dedupe.ConflictsResolved, m.Dedupe.ConflictsDropped = 3, 1, 1
		m.Dedupe.Leakage = map[string]int64{SplitValidation: 1}
		m.Rejected.Total = 3
		return m
	}
	if err := complete().CheckComplete(2, 3); err != nil {
		t.Fatalf("a complete manifest refused: %v", err)
	}
	if err := complete().CheckComplete(0, 3); err != nil {
		t.Fatalf("with the input count unchecked: %v", err)
	}
	for _, c := range []struct {
		name    string
		change  func(m *Manifest) (inputs int, deadLetter int64)
		wantErr string
	}{
		{"an input file missing", func(m *Manifest) (int, int64) { m.Inputs = m.Inputs[:1]; return 2, 3 }, "1 of 2 input files were read"},
		{"every shard missing", func(m *Manifest) (int, int64) { m.Shards, m.Splits = nil, map[string]SplitSummary{}; return 2, 3 }, "100 records were read, but the shards hold 0"},
		{"one shard missing", func(m *Manifest) (int, int64) {
			m.Shards = m.Shards[1:]
			m.Splits[SplitTrain] = SplitSummary{Rows: 30}
			return 2, 3
		}, "100 records were read, but the shards hold 44"},
		{"shards and summaries disagree", func(m *Manifest) (int, int64) { m.Shards = m.Shards[1:]; return 2, 3 }, "the shards hold 44 rows, the split summaries count 94"},
		{"dedupe counts missing", func(m *Manifest) (int, int64) { m.Dedupe.Duplicates = 0; return 2, 3 }, "dedupe removed 3"},
		{"dead letter missing", func(m *Manifest) (int, int64) { return 2, 0 }, "3 records were rejected, but the dead letter holds 0"},
	} {
		m := complete()
		inputs, dl := c.change(m)
		err := m.CheckComplete(inputs, dl)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.wantErr)
		}
	}
}
