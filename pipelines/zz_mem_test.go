package pipelines

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/beamtune/beamtune/transforms"
)

func TestZZMemPrepare(t *testing.T) {
	in := os.Getenv("MEM_CORPUS")
	if in == "" {
		t.Skip()
	}
	stop := make(chan bool)
	done := make(chan bool)
	go func() {
		defer close(done)
		var maxInuse uint64
		start := time.Now()
		n := 0
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > maxInuse*6/5 {
				maxInuse = ms.HeapInuse
				f, _ := os.Create(fmt.Sprintf("/tmp/memprof/heap-%02d.pprof", n))
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				fmt.Fprintf(os.Stderr, "MEM %6.1fs heap-%02d inuse %d MB sys %d MB\n", time.Since(start).Seconds(), n, ms.HeapInuse>>20, ms.Sys>>20)
				n++
			}
		}
	}()
	o := DefaultPrepareOptions()
	o.Inputs = []string{in}
	o.Fields = transforms.Fields{Text: []string{"sentence"}, Label: "label"}
	o.ModelDir = needModel(t)
	o.MaxLength = 64
	o.Runner = os.Getenv("MEM_RUNNER")
	o.Output = t.TempDir()
	if _, err := RunPrepare(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
}
