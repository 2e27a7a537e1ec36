package model

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model/pickle"
	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/sugarme/gotch"
)

// copyTiny copies the parity model into a temp folder, letting edit change
// its tensors and config first.
func copyTiny(t *testing.T, edit func(tensors []safetensors.Tensor) []safetensors.Tensor, config func(string) string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "parity", "tiny-bert")
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config(string(cfg))), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(src, SafetensorsFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tensors []safetensors.Tensor
	for _, n := range f.Names() {
		x, err := f.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, x)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, SafetensorsFile), edit(tensors), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func same(s string) string                              { return s }
func keep(ts []safetensors.Tensor) []safetensors.Tensor { return ts }

func TestLoadReportsLikeHF(t *testing.T) {
	defer LockThread()()
	// Old names (gamma/beta), a bare BertModel prefix, and a stray key.
	dir := copyTiny(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
		var out []safetensors.Tensor
		for _, x := range ts {
			switch {
			case strings.HasPrefix(x.Name, "classifier."):
				continue // a base checkpoint has no head
			case strings.HasSuffix(x.Name, "LayerNorm.weight"):
				x.Name = strings.TrimSuffix(x.Name, "weight") + "gamma"
			case strings.HasSuffix(x.Name, "LayerNorm.bias"):
				x.Name = strings.TrimSuffix(x.Name, "bias") + "beta"
			}
			x.Name = strings.TrimPrefix(x.Name, "bert.")
			out = append(out, x)
		}
		extra := out[0]
		extra.Name = "cls.predictions.bias"
		return append(out, extra)
	}, same)
	m, rep, err := Load(dir, LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if strings.Join(rep.NewlyInitialized, ",") != "classifier.weight,classifier.bias" || strings.Join(rep.Unused, ",") != "cls.predictions.bias" || rep.Renamed != 39 {
		t.Errorf("report: %s (renamed %d)", rep, rep.Renamed)
	}

	// A missing encoder weight is an error, not a silent random init.
	dir = copyTiny(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
		var out []safetensors.Tensor
		for _, x := range ts {
			if x.Name != "bert.encoder.layer.1.attention.self.key.weight" {
				out = append(out, x)
			}
		}
		return out
	}, same)
	if _, _, err := Load(dir, LoadOptions{Device: gotch.CPU}); err == nil || !strings.Contains(err.Error(), "bert.encoder.layer.1.attention.self.key.weight") {
		t.Errorf("missing weight: %v", err)
	}

	// A config that does not fit the weights names the tensor and both shapes.
	dir = copyTiny(t, keep, func(s string) string {
		return strings.Replace(s, `"intermediate_size": 64`, `"intermediate_size": 96`, 1)
	})
	_, _, err = Load(dir, LoadOptions{Device: gotch.CPU})
	if err == nil || !strings.Contains(err.Error(), "size mismatch for bert.encoder.layer.0.intermediate.dense.weight: checkpoint has shape [64 32], model (config.json) expects [96 32]") {
		t.Errorf("shape mismatch: %v", err)
	}

	// fp16 and bf16 checkpoints load as float32.
	for _, dt := range []safetensors.DType{safetensors.F16, safetensors.BF16} {
		dir = copyTiny(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
			f, _ := safetensors.Open(filepath.Join("..", "testdata", "parity", "tiny-bert", SafetensorsFile), nil)
			defer f.Close()
			var out []safetensors.Tensor
			for _, x := range ts {
				v, err := f.Float32(x.Name)
				if err != nil {
					t.Fatal(err)
				}
				y, err := safetensors.FromFloat32(x.Name, dt, x.Shape, v)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, y)
			}
			return out
		}, same)
		half, _, err := Load(dir, LoadOptions{Device: gotch.CPU})
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		full, _, _ := Load(filepath.Join("..", "testdata", "parity", "tiny-bert"), LoadOptions{Device: gotch.CPU})
		d := maxAbsDiff(values(t, half.Param("bert.pooler.dense.weight").T), values(t, full.Param("bert.pooler.dense.weight").T))
		if d == 0 || d > 0.02 {
			t.Errorf("%s: pooler weight differs from fp32 by %g (want rounding only)", dt, d)
		}
		half.Free()
		full.Free()
	}
}

// TestLoadPytorchBin loads a torch.save checkpoint with old gamma/beta names
// and gets exactly the weights of the safetensors copy.
func TestLoadPytorchBin(t *testing.T) {
	defer LockThread()()
	bin, rep, err := Load(filepath.Join("..", "testdata", "parity", "tiny-bert-bin"), LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Free()
	if rep.Format != "pytorch_model.bin" || rep.Renamed != 10 || len(rep.NewlyInitialized)+len(rep.Unused) != 0 {
		t.Errorf("report: %s (format %s, renamed %d)", rep, rep.Format, rep.Renamed)
	}
	ref, _, err := Load(filepath.Join("..", "testdata", "parity", "tiny-bert"), LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Free()
	for _, p := range ref.Params() {
		if d := maxAbsDiff(values(t, bin.Param(p.Name).T), values(t, p.T)); d != 0 {
			t.Errorf("%s differs by %g between .bin and safetensors", p.Name, d)
		}
	}
}

// A malicious pytorch_model.bin is refused by Load, with the global and the
// file named, and its command never runs.
func TestLoadRefusesMaliciousPickle(t *testing.T) {
	defer LockThread()()
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	cfg, err := os.ReadFile(filepath.Join("..", "testdata", "parity", "tiny-bert-bin", ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, PytorchFile)
	if err := os.WriteFile(bin, osSystemZip(t, "touch "+marker), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _, err := Load(dir, LoadOptions{Device: gotch.CPU})
	if err == nil {
		m.Free()
		t.Fatal("a pickle calling os.system was loaded")
	}
	var pe *pickle.Error
	if !errors.As(err, &pe) || pe.Global != "os.system" || pe.File != bin || pe.Member != "archive/data.pkl" || pe.Offset != 2 {
		t.Fatalf("err = %#v", err)
	}
	for _, s := range []string{bin, `"os.system"`, "archive/data.pkl", "not allowed"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not mention %s", err, s)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the payload ran: %s exists", marker)
	}
}

// osSystemZip is the classic pickle exploit, by hand: a torch-style zip whose
// archive/data.pkl is GLOBAL 'os' 'system', a command, TUPLE1, REDUCE (the
// bytes model/pickle's test helper of the same name writes).
func osSystemZip(t testing.TB, command string) []byte {
	pkl := []byte{0x80, 2}                // PROTO 2
	pkl = append(pkl, "cos\nsystem\n"...) // GLOBAL 'os' 'system', at byte 2
	pkl = append(pkl, 'X')                // BINUNICODE: uint32 length, UTF-8 bytes
	pkl = binary.LittleEndian.AppendUint32(pkl, uint32(len(command)))
	pkl = append(pkl, command...)
	pkl = append(pkl, 0x85, 'R', '.') // TUPLE1, REDUCE, STOP
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range []struct {
		name string
		data []byte
	}{{"archive/data.pkl", pkl}, {"archive/byteorder", []byte("little")}} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
