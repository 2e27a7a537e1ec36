package inference

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/beamtune/beamtune/registry"
	"github.com/beamtune/beamtune/signing"
)

// TestModelRefreshBySideInput: the model folder named by a side input
// replaces the handler's; read from a registry's CHAMPION, a pipeline
// scores with the champion of the day (and refuses a champion whose files
// changed after promotion).
func TestModelRefreshBySideInput(t *testing.T) {
	old := classifier(t, "neg", "pos")
	root := t.TempDir()
	champ := filepath.Join(root, "sst2", "runs", "r-2", "student")
	if err := os.MkdirAll(filepath.Dir(champ), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(classifier(t, "a", "b", "c"), champ); err != nil {
		t.Fatal(err)
	}
	files, err := signing.HashDir(champ)
	if err != nil {
		t.Fatal(err)
	}
	writeChampion := func(digest string) {
		data, _ := json.Marshal(registry.Champion{Schema: registry.ChampionSchema, RunID: "r-2", Model: "runs/r-2/student", Digest: digest})
		if err := os.WriteFile(filepath.Join(root, "sst2", registry.ChampionFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeChampion(files.RootDigest())
	in := texts(20)

	// The handler names yesterday's model; the side input today's.
	p, s := beam.NewPipelineWithRoot()
	res, _ := RunInference(s, ModelHandler{ModelDir: old, Device: "cpu"}, beam.CreateList(s, in), WithModelDir(ChampionModelDir(s, root, "sst2")))
	want := make([]any, len(in))
	for i := range want {
		want[i] = champ + " a,b,c"
	}
	passert.Equals(s, beam.ParDo(s, modelOf, res), want...)
	// A handler without a side input keeps its own model.
	own, _ := RunInference(s, ModelHandler{ModelDir: old, Device: "cpu"}, beam.CreateList(s, in[:3]))
	passert.Equals(s, beam.ParDo(s, modelOf, own), old+" neg,pos", old+" neg,pos", old+" neg,pos")
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}

	writeChampion(strings.Repeat("0", 64))
	p, s = beam.NewPipelineWithRoot()
	RunInference(s, ModelHandler{ModelDir: old, Device: "cpu"}, beam.CreateList(s, in[:2]), WithModelDir(ChampionModelDir(s, root, "sst2")))
	if err := ptest.Run(p); err == nil || !strings.Contains(err.Error(), "is not the model the side input names") {
		t.Errorf("a champion whose digest does not match: %v", err)
	}
}

// TestConcurrentUsers: bundles running at once in one process share one
// loaded model and get the results a lone caller gets.
func TestConcurrentUsers(t *testing.T) {
	dir := classifier(t, "neg", "pos")
	exs := make([]Example, 0, 24)
	for _, s := range texts(24) {
		exs = append(exs, Example{Text: s})
	}
	want := direct(t, dir, exs)
	before, held := Stats().ModelLoads, Stats().ModelsHeld
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := core{handler: ModelHandler{Device: "cpu", MaxBatchSize: 5}}
			defer c.release()
			var got []string
			for _, ex := range exs {
				if err := c.add(context.Background(), nil, ex, dir, func(_ any, r PredictionResult) { got = append(got, resultLine(r)) }, nil); err != nil {
					errs <- err
					return
				}
			}
			if err := c.flush(context.Background(), func(_ any, r PredictionResult) { got = append(got, resultLine(r)) }); err != nil {
				errs <- err
				return
			}
			sort.Strings(got)
			w := append([]string(nil), want...)
			sort.Strings(w)
			if strings.Join(got, "\n") != strings.Join(w, "\n") {
				errs <- &mismatch{"results", strings.Join(got, "\n"), strings.Join(w, "\n")}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := Stats().ModelLoads - before; n != 1 {
		t.Errorf("six concurrent users loaded the model %d times, want once", n)
	}
	if n := Stats().ModelsHeld - held; n != 0 {
		t.Errorf("%d more models held after every user released", n)
	}
}

type mismatch struct{ key, got, want string }

func (m *mismatch) Error() string { return m.key + ": got " + m.got + ", want " + m.want }
