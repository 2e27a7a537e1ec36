package model

import (
	"os"
	"path/filepath"
)

// DefaultModelName is the pretrained encoder scripts/setup.sh installs.
const DefaultModelName = "all-MiniLM-L6-v2"

// DefaultModelHubID is the default model's Hugging Face Hub id, which its
// config.json does not record (its _name_or_path names the model it was
// made from).
const DefaultModelHubID = "sentence-transformers/all-MiniLM-L6-v2"

// CacheDir is where scripts/setup.sh keeps libtorch, the patched gotch and
// models: $BEAMTUNE_CACHE, else $XDG_CACHE_HOME/beamtune, else ~/.cache/beamtune.
func CacheDir() string {
	if d := os.Getenv("BEAMTUNE_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "beamtune")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "beamtune-cache")
	}
	return filepath.Join(home, ".cache", "beamtune")
}

// DefaultModelDir is the pretrained model folder beamtune uses when none is given.
func DefaultModelDir() string { return filepath.Join(CacheDir(), "models", DefaultModelName) }
