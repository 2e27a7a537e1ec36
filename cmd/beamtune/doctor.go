package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// doctorCmd checks that this machine can run beamtune and says how to fix what it can't.
type doctorCmd struct{ o doctorOptions }

// doctorOptions are doctor's flags.
type doctorOptions struct {
	ModelDir string // pretrained model folder to check
	Threads  int    // libtorch intra-op threads (0: libtorch's default)
}

func (c *doctorCmd) register(f *flagSet) {
	f.section("Model")
	f.stringVar(&c.o.ModelDir, "model", model.DefaultModelDir(), "pretrained model folder to check")
	f.section("Compute")
	f.intVar(&c.o.Threads, "threads", 0, "libtorch intra-op threads (0: libtorch's default)")
}

// check is one doctor line.
type check struct {
	name, value, fix string
	ok               bool
}

func (c *doctorCmd) run(out io.Writer) error {
	defer model.LockThread()()
	model.SetThreads(c.o.Threads)
	var checks []check
	add := func(ch check) { checks = append(checks, ch) }

	ver, path := loadedLibtorch()
	add(check{"libtorch", fmt.Sprintf("%s (%s)", ver, path), "run scripts/setup.sh (gotch v0.9.1 needs libtorch 2.1.0)", ver == "2.1.0"})
	add(check{"threads", fmt.Sprintf("%d intra-op (set with --threads)", model.Threads()), "", true})
	devs := "cpu"
	if model.CUDAAvailable() {
		devs += fmt.Sprintf(", cuda x%d", model.CUDADeviceCount())
	} else {
		devs += " (no CUDA: CPU libtorch or no GPU)"
	}
	add(check{"devices", devs, "", true})
	add(precisionCheck())
	add(int8Check())
	add(check{"malloc", model.MallocTuning(), "", true})
	g, err := gradCheck()
	add(check{"autograd", g, "libtorch is broken or mismatched: rerun scripts/setup.sh", err == nil})
	add(check{"beam sdk", "Go SDK " + core.SdkVersion + ", default runner prism (in-process)", "", true})
	add(storageCheck())
	add(modelCheck(c.o.ModelDir))

	bad := 0
	for _, ch := range checks {
		mark := "ok  "
		if !ch.ok {
			mark = "FAIL"
			bad++
		}
		fmt.Fprintf(out, "%s %-9s %s\n", mark, ch.name, ch.value)
		if !ch.ok && ch.fix != "" {
			fmt.Fprintf(out, "     fix: %s\n", ch.fix)
		}
	}
	if bad > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", bad)
	}
	fmt.Fprintln(out, "doctor: all checks passed")
	return nil
}

// loadedLibtorch finds the libtorch_cpu.so this process mapped and reads the
// version from the headers beside it: the library actually in use, not the one
// a config file names.
func loadedLibtorch() (version, path string) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return "unknown", err.Error()
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if i := strings.Index(line, "/"); i >= 0 && strings.HasSuffix(line, "/libtorch_cpu.so") {
			path = line[i:]
			break
		}
	}
	if path == "" {
		return "unknown", "libtorch_cpu.so not mapped"
	}
	root := filepath.Dir(filepath.Dir(path))
	data, err := os.ReadFile(filepath.Join(root, "include/torch/csrc/api/include/torch/version.h"))
	if err != nil {
		return "unknown", path
	}
	parts := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		fs := strings.Fields(l)
		if len(fs) == 3 && fs[0] == "#define" && strings.HasPrefix(fs[1], "TORCH_VERSION_") {
			parts[strings.TrimPrefix(fs[1], "TORCH_VERSION_")] = fs[2]
		}
	}
	return parts["MAJOR"] + "." + parts["MINOR"] + "." + parts["PATCH"], root
}

// gradCheck runs a forward and backward pass with a known answer:
// loss = Σ (W·v)², W = [[1,2],[3,4]], v = [1,1] → loss 58, dloss/dW = 2(Wv)vᵀ = [[6,6],[14,14]].
func gradCheck() (msg string, err error) {
	var made []*ts.Tensor // freed on return; a failed free fails the check
	defer func() {
		for _, t := range made {
			if derr := t.Drop(); derr != nil && err == nil {
				err = fmt.Errorf("freeing a tensor: %w", derr)
			}
		}
		if err != nil {
			msg = err.Error()
		}
	}()
	keep := func(t *ts.Tensor, err error) (*ts.Tensor, error) {
		if err == nil {
			made = append(made, t)
		}
		return t, err
	}
	w, err := keep(model.Float32Tensor([]float32{1, 2, 3, 4}, []int64{2, 2}, gotch.CPU))
	if err != nil {
		return "", err
	}
	if err := w.RequiresGrad_(true); err != nil {
		return "", err
	}
	v, err := keep(model.Float32Tensor([]float32{1, 1}, []int64{2, 1}, gotch.CPU))
	if err != nil {
		return "", err
	}
	wv, err := keep(w.Matmul(v, false))
	if err != nil {
		return "", err
	}
	sq, err := keep(wv.Square(false))
	if err != nil {
		return "", err
	}
	loss, err := keep(sq.Sum(gotch.Float, false))
	if err != nil {
		return "", err
	}
	if err := loss.Backward(); err != nil {
		return "", err
	}
	grad, err := keep(w.Grad(false))
	if err != nil {
		return "", err
	}
	lv, err := model.Float32Scalar(loss)
	if err != nil {
		return "", err
	}
	gv, err := model.Float32s(grad)
	if err != nil {
		return "", err
	}
	want := []float32{6, 6, 14, 14}
	for i := range want {
		if math.Abs(float64(gv[i]-want[i])) > 1e-6 || lv != 58 {
			return "", fmt.Errorf("loss %v grad %v, want 58 and %v", lv, gv, want)
		}
	}
	return fmt.Sprintf("forward+backward ok (loss %g, grad %v)", lv, gv), nil
}

// storageCheck reports how gs:// paths would authenticate: the mode only
// (storage.AuthMode never returns a credential, a key file's path or its
// content).
func storageCheck() check {
	mode, err := storage.AuthMode()
	if err != nil {
		return check{"storage", err.Error(), "point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file, or unset it", false}
	}
	return check{"storage", "gs:// auth: " + mode, "", true}
}

func modelCheck(dir string) check {
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		return check{"model", err.Error(), "run scripts/setup.sh, or pass --model=DIR with a HF BERT folder", false}
	}
	for _, f := range []string{model.SafetensorsFile, model.TokenizerFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return check{"model", dir + " lacks " + f, "run scripts/setup.sh", false}
		}
	}
	return check{"model", fmt.Sprintf("%s (BERT, %d layers, hidden %d, vocab %d)", dir, cfg.NumHiddenLayers, cfg.HiddenSize, cfg.VocabSize), "", true}
}

// int8Check reports which kernels --quantize=int8 runs on this CPU. It never
// fails: without them int8 falls back to float32 with a log line.
func int8Check() check {
	f := model.HostCPU()
	if why := model.Int8Unsupported(gotch.CPU, f); why != "" {
		return check{"int8", "unavailable: " + why + "; --quantize=int8 runs float32", "", true}
	}
	return check{"int8", "--quantize=int8 runs " + model.Int8Kernels(f), "", true}
}

// precisionCheck reports whether this machine multiplies bfloat16 fast (CPU
// AVX-512 BF16 / AMX-BF16, GPU compute capability 8.0+) and what
// --precision=auto picks on each device. It never fails: fp32 always runs.
func precisionCheck() check {
	f := model.HostCPU()
	ok, why := model.FastBF16(gotch.CPU, f)
	pick := func(dev model.Device) string {
		p, err := model.ResolvePrecision(string(model.PrecisionAuto), dev, f, "")
		if err != nil {
			return err.Error()
		}
		return string(p)
	}
	msg := fmt.Sprintf("cpu fast bf16: %v (%s); --precision=auto on cpu: %s", ok, why, pick(gotch.CPU))
	if model.CUDAAvailable() {
		dev := gotch.CudaBuilder(0)
		gok, gwhy := model.FastBF16(dev, f)
		msg += fmt.Sprintf("; cuda:0 fast bf16: %v (%s); --precision=auto on cuda: %s", gok, gwhy, pick(dev))
	}
	return check{"precision", msg, "", true}
}
