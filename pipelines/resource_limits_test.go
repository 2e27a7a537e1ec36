package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamtune/beamtune/dataset"
)

// giantLine is the size of the one line TestPrepareTwoGiBLine feeds prepare.
const giantLine = 2 << 30

// maxPrepareRSS is the peak resident memory a prepare of the giant line may
// reach. A prepare of the bundled sample peaks at about 250 MB on prism
// (libtorch and Beam linked in); holding the line, or a large part of it,
// would go far past this.
const maxPrepareRSS = 1 << 30

// writeSparse writes head, then n bytes of NULs without a newline (a hole in
// the file, so it costs no disk), then tail.
func writeSparse(t *testing.T, path, head string, n int64, tail string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(len(head))+n); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(tail); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// runPrepareChild runs RunPrepare in a child process (TestProcessFaultChild)
// and returns its combined output, whether it succeeded, and its peak RSS.
func runPrepareChild(t *testing.T, o PrepareOptions) (out string, ok bool, maxRSS int64, took time.Duration) {
	t.Helper()
	spec, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessFaultChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "BEAMTUNE_FAULT_CHILD=prepare:"+string(spec))
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	took = time.Since(start)
	if cmd.ProcessState == nil {
		t.Fatalf("child did not run: %v", err)
	}
	// The child's own VmHWM (see reportPeakRSS), not rusage's Maxrss.
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, peakRSSLine); ok {
			kib, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if perr != nil {
				t.Fatalf("child peak RSS line %q: %v", line, perr)
			}
			return buf.String(), err == nil, kib * 1024, took
		}
	}
	t.Fatalf("the child did not report its peak RSS:\n%s", tail(buf.String()))
	return "", false, 0, 0
}

// TestPrepareTwoGiBLine: a 2 GiB line is drained, not held. A file that is
// one 2 GiB line with no newline fails the run cleanly (its only record is
// rejected, over --max_bad_fraction), writes no manifest, and its dead-letter
// row names the file, line 1, the limit and the size; a 2 GiB line between
// good rows is one dead letter and every good row, before and after it,
// reaches the shards. Each prepare runs in a child process whose peak RSS must
// stay under maxPrepareRSS.
func TestPrepareTwoGiBLine(t *testing.T) {
	modelDir := needModel(t)
	dir := t.TempDir()
	limit := dataset.DefaultMaxRecordBytes
	wantReason := fmt.Sprintf("record exceeds %d bytes (%d bytes)", limit, giantLine)

	checkDeadLetter := func(t *testing.T, out, in string, line int64) {
		t.Helper()
		rejects, _ := filepath.Glob(filepath.Join(out, "data-*", "rejects.jsonl"))
		if len(rejects) != 1 {
			t.Fatalf("want one rejects.jsonl under %s, found %v", out, rejects)
		}
		data, err := os.ReadFile(rejects[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 8<<20 {
			t.Fatalf("rejects.jsonl is %d bytes: the dead letter holds more than the first MiB of the line", len(data))
		}
		var b dataset.BadRecord
		if err := json.Unmarshal(bytes.TrimSpace(data), &b); err != nil {
			t.Fatalf("rejects.jsonl: want exactly one row: %v", err)
		}
		if b.Source != in || b.Line != line || b.Reason != wantReason || b.RawBytes != giantLine || !b.RawTruncated || len(b.Raw) > dataset.MaxRawKept {
			t.Fatalf("dead letter: source %s line %d reason %q raw_bytes %d truncated %v kept %d; want %s line %d %q",
				b.Source, b.Line, b.Reason, b.RawBytes, b.RawTruncated, len(b.Raw), in, line, wantReason)
		}
	}

	t.Run("whole file one line", func(t *testing.T) {
		in := filepath.Join(dir, "one-line.txt")
		writeSparse(t, in, "", giantLine, "")
		o := DefaultPrepareOptions()
		o.Inputs = []string{in}
		o.Fields = dataset.Fields{Text: []string{"text"}}
		o.ModelDir, o.Output = modelDir, filepath.Join(dir, "out-one-line")
		out, ok, rss, took := runPrepareChild(t, o)
		t.Logf("2 GiB single-line file: %v, peak RSS %d MiB, success %v", took.Round(100*time.Millisecond), rss>>20, ok)
		if ok {
			t.Fatalf("prepare of a file whose only record is rejected succeeded:\n%s", tail(out))
		}
		if !strings.Contains(out, "1 of 1 records (100.00%) were rejected, over --max_bad_fraction=0.05") || !strings.Contains(out, "too_long:1") {
			t.Fatalf("the child failed, but not for the rejected line:\n%s", tail(out))
		}
		if _, err := os.Stat(filepath.Join(o.Output, "manifest.json")); !os.IsNotExist(err) {
			t.Fatalf("a failed prepare left manifest.json (stat: %v)", err)
		}
		checkDeadLetter(t, o.Output, in, 1)
		if rss > maxPrepareRSS {
			t.Fatalf("peak RSS %d MiB, over %d MiB", rss>>20, maxPrepareRSS>>20)
		}
	})

	t.Run("between good rows", func(t *testing.T) {
		in := filepath.Join(dir, "middle.tsv")
		var head, tailRows strings.Builder
		head.WriteString("sentence\tlabel\n")
		good := map[string]bool{}
		for i := 0; i < 20; i++ {
			s := fmt.Sprintf("good sentence number %d before the giant line", i)
			head.WriteString(s + "\t1\n")
			good[s] = true
			s = fmt.Sprintf("good sentence number %d after the giant line", i)
			tailRows.WriteString(s + "\t0\n")
			good[s] = true
		}
		writeSparse(t, in, head.String(), giantLine, "\n"+tailRows.String())
		o := DefaultPrepareOptions()
		o.Train = []string{in}
		o.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
		o.KeepText = true
		o.ModelDir, o.Output = modelDir, filepath.Join(dir, "out-middle")
		out, ok, rss, took := runPrepareChild(t, o)
		t.Logf("2 GiB line between 40 good rows: %v, peak RSS %d MiB, success %v", took.Round(100*time.Millisecond), rss>>20, ok)
		if !ok {
			t.Fatalf("prepare failed:\n%s", tail(out))
		}
		m, err := dataset.ReadManifest(t.Context(), o.Output)
		if err != nil {
			t.Fatal(err)
		}
		if m.RecordsRead != 41 || m.Rejected.Total != 1 || m.Rejected.ByKind["too_long"] != 1 {
			t.Fatalf("manifest: %d read, %d rejected (%v); want 41 read, 1 too_long", m.RecordsRead, m.Rejected.Total, m.Rejected.ByKind)
		}
		checkDeadLetter(t, o.Output, in, 22) // header, 20 rows, then the giant line
		rows := shardRows(t, o.Output, m, dataset.SplitTrain)
		for _, r := range rows {
			delete(good, r.Text)
		}
		if len(rows) != 40 || len(good) != 0 {
			t.Fatalf("shards hold %d rows; missing: %v", len(rows), good)
		}
		if rss > maxPrepareRSS {
			t.Fatalf("peak RSS %d MiB, over %d MiB", rss>>20, maxPrepareRSS>>20)
		}
	})
}

// tail is the end of a child's output, enough to see why it failed.
func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}
