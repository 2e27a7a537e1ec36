package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/beamtune/beamtune/registry"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
)

// The model registry is a folder on storage (local or gs://):
//
//	<root>/<name>/CHAMPION              the production model: a JSON pointer, replaced only by compare-and-swap
//	<root>/<name>/LEASE                 who runs retrain for <name> now, until when (compare-and-swap)
//	<root>/<name>/runs/<run-id>/...     everything one retrain wrote (data, teacher, student, report, stage markers)
//
// Both small files change only through storage.WriteFileIfGeneration: on GCS
// a generation-match precondition, locally a content generation checked
// under an exclusive lock. Two writers that read the same generation cannot
// both succeed, which is what makes promotion and the lease safe without a
// database.

// Errors a scheduler tells apart from failures (see ExitCode).
var (
	// ErrPromotionConflict: another run replaced CHAMPION after this run
	// evaluated against it, so this run's verdict is stale; nothing was changed.
	ErrPromotionConflict = errors.New("promotion conflict: CHAMPION changed since this run evaluated against it")
	// ErrLeaseHeld: another retrain of the same model holds an unexpired lease.
	ErrLeaseHeld = errors.New("lease held by another run")
)

// Registry locates one model's folder in a registry root.
type Registry struct {
	Root string // e.g. gs://bucket/models
	Name string // e.g. sst2
}

func (r Registry) dir() string                { return storage.Join(r.Root, r.Name) }
func (r Registry) championPath() string       { return storage.Join(r.dir(), registry.ChampionFile) }
func (r Registry) leasePath() string          { return storage.Join(r.dir(), leaseFile) }
func (r Registry) RunDir(runID string) string { return storage.Join(r.dir(), runsDir, runID) }

// The CHAMPION record (package registry, which inference reads too).
type (
	Champion     = registry.Champion
	ChampionTask = registry.ChampionTask
)

// ChampionSchema versions the CHAMPION pointer.
const ChampionSchema = registry.ChampionSchema

// ReadChampion returns the current champion and the generation to pass to
// Promote; (nil, 0, nil) when there is none yet.
func (r Registry) ReadChampion(ctx context.Context) (*Champion, int64, error) {
	data, gen, err := storage.ReadFileWithGeneration(ctx, r.championPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	c, err := registry.ParseChampion(data, r.championPath())
	if err != nil {
		return nil, 0, err
	}
	return c, gen, nil
}

// Promote makes c the champion if CHAMPION is still at generation seen (0:
// no champion yet), which is what the run evaluated against. The model
// folder must be completely published first: CHAMPION never points at a
// folder without its completion marker. Returns ErrPromotionConflict when
// another run won.
func (r Registry) Promote(ctx context.Context, c Champion, seen int64) error {
	if !storage.Published(ctx, c.Model) {
		return fmt.Errorf("promote: %s is not a completely published model (no %s)", c.Model, storage.CompleteMarker)
	}
	c, err := c.Relative(r.dir())
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if c.PromotedAt == "" {
		c.PromotedAt = time.Now().UTC().Format(time.RFC3339)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if _, err := storage.WriteFileIfGeneration(ctx, r.championPath(), append(data, '\n'), seen); err != nil {
		if errors.Is(err, storage.ErrPrecondition) {
			return fmt.Errorf("%w (%s)", ErrPromotionConflict, r.championPath())
		}
		return err
	}
	return nil
}

// LeaseSchema versions the LEASE file.
const LeaseSchema = "beamtune.lease/v1"

// LeaseInfo is the content of LEASE.
type LeaseInfo struct {
	Schema   string `json:"schema"`
	Holder   string `json:"holder"` // run id, host and pid
	Acquired string `json:"acquired"`
	Expires  string `json:"expires"` // RFC 3339; a lease past it is stale and may be taken over
}

// Lease is a held lease; Renew extends it, Release gives it up.
type Lease struct {
	reg  Registry
	info LeaseInfo
	gen  int64
	ttl  time.Duration
	now  func() time.Time
}

// AcquireLease takes the model's lease for ttl, or returns an error wrapping
// ErrLeaseHeld that names the holder and its expiry. A lease whose expiry
// has passed (its run crashed or hangs) is taken over. now is the clock (nil:
// time.Now), settable so tests can age a lease.
func (r Registry) AcquireLease(ctx context.Context, holder string, ttl time.Duration, now func() time.Time) (*Lease, error) {
	if now == nil {
		now = time.Now
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("lease ttl %v: want a positive duration", ttl)
	}
	data, gen, err := storage.ReadFileWithGeneration(ctx, r.leasePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		gen = 0
	case err != nil:
		return nil, err
	default:
		var cur LeaseInfo
		if jerr := json.Unmarshal(data, &cur); jerr != nil {
			// An unreadable lease cannot be honoured; it is replaced like a stale one.
			break
		}
		exp, perr := time.Parse(time.RFC3339Nano, cur.Expires)
		if perr == nil && now().Before(exp) && cur.Holder != holder {
			return nil, fmt.Errorf("%w: %s holds %s until %s", ErrLeaseHeld, cur.Holder, r.leasePath(), cur.Expires)
		}
	}
	l := &Lease{reg: r, ttl: ttl, now: now, gen: gen}
	t := now().UTC()
	l.info = LeaseInfo{Schema: LeaseSchema, Holder: holder, Acquired: t.Format(time.RFC3339Nano), Expires: t.Add(ttl).Format(time.RFC3339Nano)}
	if err := l.write(ctx); err != nil {
		if errors.Is(err, storage.ErrPrecondition) {
			return nil, fmt.Errorf("%w: another run took %s at the same moment", ErrLeaseHeld, r.leasePath())
		}
		return nil, err
	}
	return l, nil
}

func (l *Lease) write(ctx context.Context) error {
	data, err := json.MarshalIndent(l.info, "", "  ")
	if err != nil {
		return err
	}
	gen, err := storage.WriteFileIfGeneration(ctx, l.reg.leasePath(), append(data, '\n'), l.gen)
	if err != nil {
		return err
	}
	l.gen = gen
	return nil
}

// Info is the lease as last written.
func (l *Lease) Info() LeaseInfo { return l.info }

// Renew pushes the expiry ttl past now. It fails (wrapping ErrLeaseHeld) when
// the lease was taken over meanwhile: the caller must stop its work.
func (l *Lease) Renew(ctx context.Context) error {
	l.info.Expires = l.now().UTC().Add(l.ttl).Format(time.RFC3339Nano)
	if err := l.write(ctx); err != nil {
		if errors.Is(err, storage.ErrPrecondition) {
			return fmt.Errorf("%w: %s was taken over while this run held it", ErrLeaseHeld, l.reg.leasePath())
		}
		return err
	}
	return nil
}

// Release ends the lease by writing it as expired now (a compare-and-swap
// too, so a lease taken over by someone else is left alone).
func (l *Lease) Release(ctx context.Context) error {
	l.info.Expires = l.now().UTC().Format(time.RFC3339Nano)
	err := l.write(ctx)
	if errors.Is(err, storage.ErrPrecondition) {
		return nil // someone else holds it now; not ours to release
	}
	return err
}

// KeepRenewed renews the lease every ttl/3 until ctx ends, and calls lost
// (once) if a renewal finds the lease taken over.
func (l *Lease) KeepRenewed(ctx context.Context, lost func(error)) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Renew(ctx); err != nil && ctx.Err() == nil {
				if errors.Is(err, ErrLeaseHeld) {
					lost(err)
					return
				}
				// A transient storage error: try again at the next tick,
				// well before the lease expires.
			}
		}
	}
}

// leaseHolder names this process in a lease.
func leaseHolder(runID string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host" // the lease still names the run and the process
	}
	return fmt.Sprintf("%s@%s/%d", runID, host, os.Getpid())
}

// FolderDigest is the sha256 root digest of a model folder's files, the
// signature and the completion marker's absence aside: what CHAMPION
// records and checks on load. gs:// folders are read through a local copy.
func FolderDigest(ctx context.Context, dir string) (string, error) {
	local, cleanup, err := storage.LocalDir(ctx, dir)
	if err != nil {
		return "", err
	}
	defer cleanup()
	m, err := signing.HashDir(local)
	if err != nil {
		return "", err
	}
	return m.RootDigest(), nil
}

// CheckChampion checks that the champion's folder still holds what was
// promoted: the digest CHAMPION recorded (pointers written before digests
// were recorded have none to check).
func CheckChampion(ctx context.Context, c *Champion) error {
	if c == nil || c.Digest == "" {
		return nil
	}
	got, err := FolderDigest(ctx, c.Model)
	if err != nil {
		return fmt.Errorf("champion %s: %w", c.Model, err)
	}
	if got != c.Digest {
		return fmt.Errorf("champion %s changed after it was promoted: its files hash to sha256:%s, CHAMPION recorded sha256:%s", c.Model, got, c.Digest)
	}
	return nil
}
