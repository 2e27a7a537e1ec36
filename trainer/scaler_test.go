package trainer

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// TestLossScaling: the dynamic loss scaler of fp16 training, run in float32
// where it can run here. Scaling by a power of two is exact, so a run with a
// loss scale of 2^16 ends with the unscaled run's weights bit for bit; a
// scale beyond float32's range (1e40) overflows the scaled loss and every
// gradient: steps are skipped and the scale halves until they are finite,
// and the run still learns; a run killed and resumed
// continues the scaler's state (same weights as uninterrupted).
func TestLossScaling(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyDataset(t, data, 600, 128)
	job := func(name string, scale float64) Job {
		j := tinyJob(data, filepath.Join(dir, name))
		j.Config.Epochs, j.Config.LossScale = 2, scale
		return j
	}
	plain, err := Train(context.Background(), job("plain", 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	scaled := job("scaled", 65536)
	if _, err := Train(context.Background(), scaled, nil); err != nil {
		t.Fatal(err)
	}
	if st := lastCheckpointState(t, scaled.Output); st.Scaler == nil || st.Scaler.Scale != 65536 || st.Scaler.GoodSteps == 0 {
		t.Fatalf("the 2^16 run's scaler state %+v: it did not scale", st.Scaler)
	}
	want := finalWeights(t, plain.FinalDir)
	sameWeights(t, want, finalWeights(t, filepath.Join(scaled.Output, "final")))

	huge := job("overflow", 1e40)
	res, err := Train(context.Background(), huge, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := lastCheckpointState(t, huge.Output)
	if st.Scaler == nil || st.Scaler.Skipped < 5 || st.Scaler.Scale > math.MaxFloat32 {
		t.Fatalf("a loss scale of 1e40: scaler state %+v, want skipped steps and a smaller scale", st.Scaler)
	}
	if res.BestAccuracy < 0.6 {
		t.Errorf("the run with skipped steps did not learn: best accuracy %.3f", res.BestAccuracy)
	}
	for name, w := range finalWeights(t, res.FinalDir) {
		for _, v := range w {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s holds %v after skipped steps", name, v)
			}
		}
	}

	// Killed after the step-10 checkpoint (mid-skipping) and resumed: the
	// scale and skipped count carry on, and the weights match.
	killed := job("overflow-killed", 1e40)
	resumed := killAndResume(t, killed, res)
	sameWeights(t, finalWeights(t, res.FinalDir), finalWeights(t, resumed.FinalDir))
	t.Logf("2^16: bit-identical to unscaled; 1e40: %d steps skipped, scale now %.3g, best accuracy %.3f; resumed bit for bit",
		st.Scaler.Skipped, st.Scaler.Scale, res.BestAccuracy)
}

// lastCheckpointState is the state of out's latest checkpoint.
func lastCheckpointState(t *testing.T, out string) trainState {
	t.Helper()
	dir, err := latestCheckpoint(context.Background(), out)
	if err != nil || dir == "" {
		t.Fatalf("no checkpoint in %s: %v", out, err)
	}
	var step int64
	if _, err := fmt.Sscanf(filepath.Base(dir), "step-%d", &step); err != nil {
		t.Fatal(err)
	}
	return readCheckpointState(t, out, step)
}
