package signing

import (
	"encoding/json"
	"runtime/debug"
)

// ProvenanceSchema versions the provenance record.
const ProvenanceSchema = "beamtune.provenance/v1"

// Provenance is how a model folder was made, signed with its files.
type Provenance struct {
	Schema   string          `json:"schema"`
	Beamtune BuildInfo       `json:"beamtune"`
	Stage    string          `json:"stage"`            // train, distill, compress, retrain, ...
	Runner   string          `json:"runner,omitempty"` // the Beam runner the job ran on
	Created  string          `json:"created"`          // RFC 3339, UTC
	Datasets []DatasetRef    `json:"datasets,omitempty"`
	Models   []ModelRef      `json:"models,omitempty"`
	Config   json.RawMessage `json:"config,omitempty"` // the resolved training configuration (job.json)
	Results  []Result        `json:"results,omitempty"`
}

// BuildInfo identifies the beamtune binary.
type BuildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
}

// DatasetRef is a prepared dataset a model learned from.
type DatasetRef struct {
	Task           string `json:"task,omitempty"`
	Path           string `json:"path"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

// ModelRef is a model a folder was made from: the base it was fine-tuned
// from, the teacher it was distilled from, the model it compressed.
type ModelRef struct {
	Role   string `json:"role"` // init, teacher, source, base
	Path   string `json:"path"`
	SHA256 string `json:"sha256"` // the root digest of its files (as its signature's subject) or of its weights
	// Signed: it carried a model_signing key signature, whose subject
	// digest SHA256 is. Under a trust policy that signature was verified
	// when the folder was loaded; without one it is what the folder claims.
	Signed bool `json:"signed"`
}

// Result is one evaluation figure.
type Result struct {
	Task   string  `json:"task,omitempty"`
	Split  string  `json:"split"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Low    float64 `json:"ci_low,omitempty"` // a 95% interval, when known
	High   float64 `json:"ci_high,omitempty"`
}

// Build reports the running binary's module version and VCS revision, as
// the Go toolchain stamped them ("(devel)" and no commit under go test).
func Build() BuildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return BuildInfo{Version: "unknown"}
	}
	b := BuildInfo{Version: info.Main.Version}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
