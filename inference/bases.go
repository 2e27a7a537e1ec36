package inference

import (
	"sync"

	"github.com/beamtune/beamtune/model"
)

// sharedBases holds the base models of the LoRA adapters this worker
// process serves: each is loaded once, by the first DoFn instance that
// needs it, shared by every adapter over it (all DoFn instances, models and
// bundles; forward passes only read it) and freed when the last one tears
// down. The adapters stay unmerged: merging per batch would write weights
// that other adapters read at the same time, and the unmerged update costs
// little (BENCHMARKS.md, "Parameter-efficient fine-tuning").
var sharedBases = &baseCache{bases: map[string]*cachedBase{}}

type baseCache struct {
	mu    sync.Mutex
	bases map[string]*cachedBase
	loads int // base models loaded so far (tests)
}

type cachedBase struct {
	m    *model.Bert
	refs int
}

// acquire returns the base under key, loading it with load the first time.
func (c *baseCache) acquire(key string, load func() (*model.Bert, error)) (*model.Bert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.bases[key]; b != nil {
		b.refs++
		return b.m, nil
	}
	m, err := load()
	if err != nil {
		return nil, err
	}
	c.loads++
	c.bases[key] = &cachedBase{m: m, refs: 1}
	return m, nil
}

// release drops one user of the base under key, freeing it after the last.
func (c *baseCache) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bases[key]
	if b == nil {
		return
	}
	if b.refs--; b.refs == 0 {
		b.m.Free()
		delete(c.bases, key)
	}
}
