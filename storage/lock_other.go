//go:build !unix

package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// staleLockAge is how old a lock file must be before it is considered left
// behind by a crashed holder. The critical section (read a small file, write
// and rename a temporary one) takes milliseconds.
const staleLockAge = 30 * time.Second

// lockFile takes an exclusive lock by creating lp with O_CREATE|O_EXCL and
// returns the function that releases it. Without flock(2) a crashed
// holder's file stays; one older than staleLockAge is removed. This is
// weaker than the Unix flock version (a holder stalled for longer than
// staleLockAge loses its lock), which is why beamtune targets Unix.
func lockFile(ctx context.Context, lp string) (unlock func(), err error) {
	delay := time.Millisecond
	for {
		f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "pid %d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(lp) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if fi, serr := os.Stat(lp); serr == nil && time.Since(fi.ModTime()) > staleLockAge {
			os.Remove(lp)
			continue
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for lock %s: %w", lp, ctx.Err())
		case <-t.C:
		}
		if delay < 25*time.Millisecond {
			delay *= 2
		}
	}
}
