package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The client library retries failed requests, but on its own it cannot tell
// a hung request from a slow one (an HTTP request has no deadline but the
// caller's context), and some of its loops have no attempt limit (multipart
// uploads retry until the context ends; a reader whose response bodies keep
// breaking reopens forever). guardTransport, which NewGCSClient puts under
// every client it builds, closes both gaps:
//
//   - a request that makes no progress for AttemptTimeout is cancelled with
//     a temporary error, which the library retries;
//   - each Store operation carries an opState in its context: the transport
//     records every failed request in it and refuses to start a request once
//     MaxAttempts consecutive requests have failed or the run of failures is
//     older than RetryTime. The refusal is not retryable, so every loop of
//     the library ends there.

type opKey struct{}

// opState is the retry budget of one Store operation.
type opState struct {
	opts GCSOptions // resolved

	mu       sync.Mutex
	streak   int       // consecutive failed requests
	start    time.Time // when the streak began
	failures int       // failed requests over the whole operation
	last     error     // the latest failure
}

// withOp gives ctx a fresh retry budget for one operation.
func (s *Store) withOp(ctx context.Context) (context.Context, *opState) {
	o := &opState{opts: s.options()}
	return context.WithValue(ctx, opKey{}, o), o
}

func opFrom(ctx context.Context) *opState {
	o, _ := ctx.Value(opKey{}).(*opState)
	return o
}

// admit reports whether another request may start.
func (o *opState) admit() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streak == 0 {
		return nil
	}
	if o.streak >= o.opts.MaxAttempts || time.Since(o.start) > o.opts.RetryTime {
		return &budgetError{attempts: o.streak, elapsed: time.Since(o.start)}
	}
	return nil
}

// fail records a failed request.
func (o *opState) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streak == 0 {
		o.start = time.Now()
	}
	o.streak++
	o.failures++
	o.last = err
}

// progress records a request that delivered data: the failures before it
// were transient.
func (o *opState) progress() {
	o.mu.Lock()
	o.streak = 0
	o.mu.Unlock()
}

// failed is the number of failed requests so far in the operation.
func (o *opState) failed() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failures
}

// lastFailure returns the current streak and its latest error.
func (o *opState) lastFailure() (int, time.Duration, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streak == 0 {
		return 0, 0, nil
	}
	return o.streak, time.Since(o.start), o.last
}

// budgetError is the transport's refusal to start another request. Its
// text deliberately avoids the words the library's retry test looks for
// ("connection reset", ...), so that it ends every retry loop.
type budgetError struct {
	attempts int
	elapsed  time.Duration
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("storage: retry budget spent (%d failed attempts in %s)", e.attempts, e.elapsed.Round(time.Millisecond))
}

// stallError cancels a request that made no progress. It is temporary, so
// the library's retry test (which checks Temporary after unwrapping
// *url.Error) retries it.
type stallError struct{ after time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("storage: request stalled (no progress for %s)", e.after)
}
func (e *stallError) Timeout() bool   { return true }
func (e *stallError) Temporary() bool { return true }

// RetryError is returned (wrapped in an *fs.PathError naming the path) when
// an operation gave up after failed attempts; Err is the last failure.
type RetryError struct {
	Attempts int           // consecutive failed attempts
	Elapsed  time.Duration // from the first of them to giving up
	Err      error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("gave up after %d failed attempts in %s: %v", e.Attempts, e.Elapsed.Round(time.Millisecond), e.Err)
}
func (e *RetryError) Unwrap() error { return e.Err }

// explain turns a failure at the end of an operation into a RetryError
// when the operation was retrying, so the message says what kept failing
// (a budget refusal alone says only that we stopped).
func explain(ctx context.Context, err error) error {
	o := opFrom(ctx)
	if o == nil || err == nil || isGCSNotExist(err) || isGCSPrecondition(err) || errors.Is(err, context.Canceled) {
		return err
	}
	n, d, last := o.lastFailure()
	if n == 0 {
		return err
	}
	var be *budgetError
	if errors.As(err, &be) && last != nil {
		err = last
	}
	return &RetryError{Attempts: n, Elapsed: d, Err: err}
}

// retryableStatus: the statuses GCS documents as worth retrying.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 && code < 600
}

// guardTransport enforces the attempt timeout and the retry budget (see
// the comment at the top of this file).
type guardTransport struct {
	base http.RoundTripper
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	o := opFrom(req.Context())
	timeout := defaultAttemptTimeout
	if o != nil {
		if err := o.admit(); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		timeout = o.opts.AttemptTimeout
	}
	ctx, cancel := context.WithCancel(req.Context())
	wd := &watchdog{after: timeout, cancel: cancel}
	out := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &progressBody{ReadCloser: req.Body, wd: wd}
	}
	wd.arm()
	res, err := g.base.RoundTrip(out)
	wd.stop()
	if err == nil && wd.hasFired() { // fired as the response arrived
		res.Body.Close()
		err = &stallError{after: timeout}
	}
	if err != nil {
		cancel()
		if wd.hasFired() {
			err = &stallError{after: timeout}
		}
		if o != nil {
			o.fail(err)
		}
		return nil, err
	}
	bad := retryableStatus(res.StatusCode)
	if bad && o != nil {
		o.fail(fmt.Errorf("HTTP %s", res.Status))
	}
	isJSON := strings.HasPrefix(res.Header.Get("Content-Type"), "application/json")
	body := &guardedBody{body: res.Body, wd: wd, cancel: cancel, op: o, bad: bad, media: !isJSON}
	res.Body = body
	if bad || res.StatusCode/100 != 2 || res.StatusCode == http.StatusNoContent || !isJSON {
		return res, nil
	}
	// A JSON answer is small; read it here and make sure it is whole. The
	// library parses it after its retry decision, so an answer cut short
	// without a Content-Length to betray it (or garbled) would otherwise be
	// a final error, although the request itself may simply be repeated.
	body.whole = true
	data, err := io.ReadAll(body) // a break counts as a failure
	body.Close()
	if err == nil && !json.Valid(data) {
		err = &garbledError{n: len(data)}
		if o != nil {
			o.fail(err)
		}
	}
	if err != nil {
		return nil, err
	}
	if o != nil {
		o.progress()
	}
	res.Body = io.NopCloser(bytes.NewReader(data))
	res.ContentLength = int64(len(data))
	return res, nil
}

// garbledError is a 2xx JSON answer that does not parse. Temporary, so the
// library retries the request.
type garbledError struct{ n int }

func (e *garbledError) Error() string {
	return fmt.Sprintf("storage: incomplete or garbled JSON answer (%d bytes)", e.n)
}
func (e *garbledError) Temporary() bool { return true }

// watchdog cancels a request when armed for longer than after.
type watchdog struct {
	after  time.Duration
	cancel context.CancelFunc

	mu    sync.Mutex
	timer *time.Timer
	fired bool
}

func (w *watchdog) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.after, w.fire)
	} else {
		w.timer.Reset(w.after)
	}
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *watchdog) fire() {
	w.mu.Lock()
	w.fired = true
	w.mu.Unlock()
	w.cancel()
}

func (w *watchdog) hasFired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// progressBody re-arms the watchdog whenever the transport takes more of
// the request body, so a long upload is not mistaken for a stall.
type progressBody struct {
	io.ReadCloser
	wd *watchdog
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.wd.arm()
	}
	return n, err
}

// guardedBody times each Read of a response body (only while the caller
// waits, so a slow consumer is never taken for a stall) and reports to the
// operation's budget: a body that breaks adds a failure; one read to its
// end, or for object content any data delivered, ends a run of failures.
// (Content is counted as it comes because a long download that loses its
// connection now and then resumes where it stopped: each resume that brings
// data is progress. A small answer is only progress when whole, or answers
// that keep breaking off would never exhaust the budget.)
type guardedBody struct {
	body   io.ReadCloser
	wd     *watchdog
	cancel context.CancelFunc
	op     *opState
	bad    bool // a retryable error status, already counted as a failure
	media  bool // object content rather than an API answer
	whole  bool // progress is judged by the caller once the answer is checked

	mu   sync.Mutex
	read bool // Read was called
	once sync.Once
}

func (b *guardedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.read = true
	b.mu.Unlock()
	b.wd.arm()
	n, err := b.body.Read(p)
	b.wd.stop()
	if err != nil && err != io.EOF && b.wd.hasFired() {
		err = &stallError{after: b.wd.after}
	}
	if b.op != nil && !b.bad && (!b.whole || err != io.EOF) {
		switch {
		case err != nil && err != io.EOF:
			b.op.fail(err)
		case err == io.EOF || (n > 0 && b.media):
			b.op.progress()
		}
	}
	return n, err
}

// Close of a good response whose body nobody read (a 204, or a status the
// caller needed no body for) counts as progress: the request succeeded.
func (b *guardedBody) Close() error {
	err := b.body.Close()
	b.once.Do(func() {
		b.wd.stop()
		b.cancel()
		b.mu.Lock()
		unread := !b.read
		b.mu.Unlock()
		if unread && !b.bad && b.op != nil {
			b.op.progress()
		}
	})
	return err
}
