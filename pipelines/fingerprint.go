package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
)

// PrepareFingerprint is the fingerprint a prepare run with these options
// would give its dataset now (inputs as storage reports them, the options
// and the tokenizer), without running it: retrain derives run ids from it.
func PrepareFingerprint(ctx context.Context, o PrepareOptions) (string, error) {
	o, err := withLabelNames(ctx, o)
	if err != nil {
		return "", err
	}
	files, err := resolveInputs(ctx, o)
	if err != nil {
		return "", err
	}
	tok, err := storage.ReadFile(ctx, storage.Join(o.ModelDir, model.TokenizerFile))
	if err != nil {
		return "", fmt.Errorf("tokenizer: %w", err)
	}
	sum := sha256.Sum256(tok)
	return prepareFingerprint(ctx, o, files, hex.EncodeToString(sum[:]))
}
