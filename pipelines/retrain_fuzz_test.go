package pipelines

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzRetrainConfig: any bytes as retrain.yaml either fail with ErrConfig
// naming the file, or give a config that validates and survives a write and
// a re-read unchanged.
func FuzzRetrainConfig(f *testing.F) {
	example, err := os.ReadFile("../testdata/retrain/retrain.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("name: m\nregistry: r\nprepare: {train: [a], text_fields: [t], label_field: l}\n"))
	f.Add([]byte("name: m\nregistry: r\nprepare: {inputs: ['gs://b/*.gz'], text_fields: [a, b], label_field: l}\ndistill: {student_init: s}\ntrain: {sweep: {lr: [1e-5, 2e-5]}}\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("name: &a [*a]\n"))
	f.Add([]byte("lease_ttl: -1h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseRetrainConfig("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %v is not an ErrConfig naming the file", err)
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config cannot be written: %v", err)
		}
		again, err := ParseRetrainConfig("rewritten.yaml", out)
		if err != nil {
			t.Fatalf("written config does not parse: %v\n%s", err, out)
		}
		a, _ := json.Marshal(c)
		b, _ := json.Marshal(again)
		if string(a) != string(b) || c.LeaseTTL != again.LeaseTTL || c.Device != again.Device || c.Threads != again.Threads {
			t.Fatalf("config changed through a write and re-read:\n%s\n%s", a, b)
		}
	})
}
