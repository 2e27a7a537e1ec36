package model

import (
	"errors"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// TestOnTorchThread: every call, from many goroutines, runs on one OS
// thread; nested calls run in place; errors and panics reach the caller.
func TestOnTorchThread(t *testing.T) {
	var mu sync.Mutex
	tids := map[int]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := OnTorchThread(func() error {
				mu.Lock()
				tids[syscall.Gettid()] = true
				mu.Unlock()
				return OnTorchThread(func() error { // nested: must not deadlock
					mu.Lock()
					tids[syscall.Gettid()] = true
					mu.Unlock()
					return nil
				})
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(tids) != 1 {
		t.Errorf("torch work ran on %d OS threads, want 1", len(tids))
	}
	want := errors.New("boom")
	if err := OnTorchThread(func() error { return want }); err != want {
		t.Errorf("error = %v, want %v", err, want)
	}
	func() {
		defer func() {
			if p := recover(); p != "torch panic" {
				t.Errorf("recovered %v, want the panic raised on the torch thread", p)
			}
		}()
		_ = OnTorchThread(func() error { panic("torch panic") })
	}()
	if err := OnTorchThread(func() error { return nil }); err != nil { // the thread survives a panic
		t.Error(err)
	}
}

// TestOnTorchThreadGoexit: a function that ends its goroutine (as t.Fatal
// does) gets an error back, and later calls still run, on one new thread.
func TestOnTorchThreadGoexit(t *testing.T) {
	if err := OnTorchThread(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Fatal("Goexit on the torch thread: no error")
	}
	var a, b int
	if err := OnTorchThread(func() error { a = syscall.Gettid(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := OnTorchThread(func() error { b = syscall.Gettid(); return nil }); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("after Goexit, calls ran on threads %d and %d, want one", a, b)
	}
}
