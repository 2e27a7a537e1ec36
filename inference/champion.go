package inference

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/registry"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn3x1[context.Context, []byte, func(string), error](&championFn{})
	register.Emitter1[string]()
	beam.RegisterType(reflect.TypeOf((*championFn)(nil)).Elem())
}

// ChampionModelDir is a singleton PCollection<string> naming the model a
// beamtune registry's CHAMPION points at (registry root, model name; local
// or gs://), read when the pipeline runs, for WithModelDir. It carries the
// digest CHAMPION recorded, which the workers check against the folder they
// load.
func ChampionModelDir(s beam.Scope, registryRoot, name string) beam.PCollection {
	s = s.Scope("ChampionModelDir")
	return beam.ParDo(s, &championFn{Path: storage.Join(registryRoot, name, registry.ChampionFile)}, beam.Impulse(s))
}

type championFn struct{ Path string }

func (fn *championFn) ProcessElement(ctx context.Context, _ []byte, emit func(string)) error {
	data, err := storage.ReadFileLimit(ctx, fn.Path, 1<<20)
	if err != nil {
		return fmt.Errorf("champion: %w", err)
	}
	c, err := registry.ParseChampion(data, fn.Path)
	if err != nil {
		return err
	}
	dir := c.Model
	if c.Digest != "" {
		dir += digestMark + c.Digest
	}
	emit(dir)
	return nil
}

// digestMark separates a model folder from the digest it must have, in a
// model-dir side input ("gs://b/m/runs/r-1/student@sha256:ab12…").
const digestMark = "@sha256:"

// splitDigest splits a model-dir side input into the folder and the
// digest it must have ("" when none is named).
func splitDigest(dir string) (string, string) {
	if i := strings.LastIndex(dir, digestMark); i >= 0 {
		return dir[:i], dir[i+len(digestMark):]
	}
	return dir, ""
}
