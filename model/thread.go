package model

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// The torch thread: one OS thread per process on which beamtune's torch work
// runs (training, inference, evaluation's speed figures, compression), one
// call at a time.
//
// Why one thread: libgomp, the OpenMP runtime of the PyPI libtorch, keeps a
// pool of worker threads for every OS thread that starts a parallel region,
// and when a process holds more OpenMP workers than CPUs it makes idle
// workers sleep almost at once instead of spinning for a while. Go moves
// goroutines between OS threads, so without this a worker process that had
// run torch ops from two threads (a model loaded in one bundle, scored in
// another) woke sleeping workers through the kernel on every small op: int8
// inference at batch 1 took 7.9 ms instead of 2.4 ms, and a batch of 32
// up to a fifth longer, depending on which threads the scheduler had picked
// (BENCHMARKS.md, int8). libtorch's thread count
// (at::set_num_threads) is also per OS thread under OpenMP.
var torchThread struct {
	once sync.Once
	tid  atomic.Int64
	work chan func()
}

// serveTorchThread locks a new goroutine to its thread and runs the queued
// work there; ready receives the thread's id.
func serveTorchThread() {
	ready := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked: the goroutine owns the thread for its life
		ready <- syscall.Gettid()
		for f := range torchThread.work {
			f()
		}
	}()
	torchThread.tid.Store(int64(<-ready))
}

// OnTorchThread runs fn on the process's torch thread and returns its error;
// a panic in fn is raised again in the caller. Calls from fn itself (nested)
// run directly. fn must not wait for another goroutine that calls
// OnTorchThread: that would deadlock. If fn ends its goroutine
// (runtime.Goexit: t.Fatal, b.Skip), the call returns an error and a new
// torch thread takes over.
func OnTorchThread(fn func() error) error {
	torchThread.once.Do(func() {
		torchThread.work = make(chan func())
		serveTorchThread()
	})
	// A locked thread runs only its goroutine, so the thread id says whether
	// this is the torch goroutine.
	if int64(syscall.Gettid()) == torchThread.tid.Load() {
		return fn()
	}
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	torchThread.work <- func() {
		returned := false
		defer func() {
			switch p := recover(); {
			case p != nil:
				done <- result{panicked: true, value: p}
			case !returned: // runtime.Goexit: this goroutine and its thread end
				serveTorchThread()
				done <- result{err: errors.New("torch thread: the function ended its goroutine (runtime.Goexit)")}
			}
		}()
		err := fn()
		returned = true
		done <- result{err: err}
	}
	r := <-done
	if r.panicked {
		panic(r.value)
	}
	return r.err
}
