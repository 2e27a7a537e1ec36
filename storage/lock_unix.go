//go:build unix

package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive lock on the lock file lp and returns the
// function that releases it (and removes the file).
//
// It uses flock(2) on a file opened without O_EXCL: the kernel drops the
// lock when its holder exits or crashes, so there are no stale locks to
// detect or break. A lock file left behind by a crash is simply locked by
// the next taker. flock locks belong to open file descriptions, so two
// goroutines of one process exclude each other too.
//
// The holder removes the file before unlocking; a taker that locked a file
// already unlinked (or replaced) checks that the path still names the inode
// it locked and otherwise starts over. Waiting polls (1ms doubling to 25ms)
// so that ctx can cancel it.
func lockFile(ctx context.Context, lp string) (unlock func(), err error) {
	delay := time.Millisecond
	for {
		f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		err = flock(f)
		if err == nil {
			held, herr := f.Stat()
			now, nerr := os.Stat(lp)
			if herr == nil && nerr == nil && os.SameFile(held, now) {
				fmt.Fprintf(f, "pid %d\n", os.Getpid())
				return func() {
					os.Remove(lp)
					f.Close()
				}, nil
			}
			f.Close() // locked a file that has been removed: retry at once
			continue
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("flock %s: %w", lp, err)
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

func flock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	cerr := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if ferr != syscall.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	return ferr
}
