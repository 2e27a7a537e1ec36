package gcstest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Kind classifies GCS requests; kinds combine as a bit mask.
type Kind uint8

const (
	// Read: object content downloads (XML API GETs, JSON alt=media).
	Read Kind = 1 << iota
	// Write: anything that changes objects: simple, multipart and
	// resumable uploads (session starts and chunks), copies/rewrites,
	// composes and deletes.
	Write
	// List: object listings.
	List
	// Metadata: object and bucket metadata reads and updates.
	Metadata

	// AnyKind matches every request.
	AnyKind = Read | Write | List | Metadata
)

func (k Kind) String() string {
	var parts []string
	for _, x := range []struct {
		k Kind
		n string
	}{{Read, "read"}, {Write, "write"}, {List, "list"}, {Metadata, "metadata"}} {
		if k&x.k != 0 {
			parts = append(parts, x.n)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Fault is what the proxy does to a request instead of (or after)
// forwarding it.
type Fault uint8

const (
	// Unavailable answers HTTP 503 with a JSON error body.
	Unavailable Fault = iota + 1
	// TooManyRequests answers HTTP 429.
	TooManyRequests
	// Hang never answers: the request waits until the client gives up
	// (its attempt timeout or context) and closes the connection.
	Hang
	// Reset closes the TCP connection abruptly (RST) without an answer.
	// Before forwarding it first reads a random part of the request body,
	// so uploads are cut off mid-body.
	Reset
	// ShortRead sends the response headers unchanged (Content-Length
	// included) but only a random prefix of the body, then drops the
	// connection: the client sees an unexpected EOF. It always forwards
	// first (it needs a response) and skips responses without a body.
	ShortRead
	// Truncate sends a random prefix of the body without Content-Length and
	// ends the response cleanly, as a misbehaving middlebox would: only the
	// object's size or checksum can reveal it. Forwards first; skips
	// responses without a body.
	Truncate
)

var faultNames = map[Fault]string{
	Unavailable: "503", TooManyRequests: "429", Hang: "hang", Reset: "reset",
	ShortRead: "short-read", Truncate: "truncate",
}

func (f Fault) String() string {
	if n, ok := faultNames[f]; ok {
		return n
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Faults lists every fault, for tables.
var Faults = []Fault{Unavailable, TooManyRequests, Hang, Reset, ShortRead, Truncate}

// Rule says which requests get which fault.
type Rule struct {
	// Kinds the rule applies to (0: every kind).
	Kinds Kind
	// Fault to inject.
	Fault Fault
	// Prob is the chance that a matching request gets the fault, drawn from
	// the proxy's seeded generator; 0 means always.
	Prob float64
	// After forwards the request first, so it takes effect on the server,
	// and then injects the fault into the response: a lost response.
	// (ShortRead and Truncate always forward first.)
	After bool
	// Skip lets the first Skip matching requests through untouched.
	Skip int
	// Limit stops the rule after this many injections (0: no limit).
	Limit int
	// Match, when set, further restricts the rule. It runs for every request
	// the rule's kinds match while the rule is not used up, in arrival
	// order, before Skip and Prob; tests may use it to act at a precise
	// point (e.g. write a competing version through Server.Direct). It runs
	// with the proxy's lock held: it must not send requests through the
	// proxy, and must not read the request body.
	Match func(*http.Request) bool
}

// Event is one injected fault.
type Event struct {
	Kind   Kind
	Fault  Fault
	After  bool // the request reached the server
	Method string
	Path   string // URL path and query
}

func (e Event) String() string {
	when := "before"
	if e.After {
		when = "after"
	}
	return fmt.Sprintf("%s %s (%s) %s %s", e.Fault, when, e.Kind, e.Method, e.Path)
}

// Proxy is an HTTP reverse proxy in front of a GCS emulator that injects
// faults by rule. It is safe for concurrent use. Everything it does is
// counted, so tests can assert that the faults they meant did happen.
//
// Besides faults, the proxy makes the emulator's resumable uploads behave
// like GCS when a chunk is sent twice (the client resends a chunk whose
// response was lost): fake-gcs-server appends whatever it receives and
// forgets a finished session, whereas GCS ignores bytes it already has and
// answers a finished session with the object. The proxy trims resent bytes
// and replays the final answer, so lost responses can be tested on uploads.
type Proxy struct {
	backend string
	srv     *httptest.Server
	tr      *http.Transport
	closing chan struct{}

	mu       sync.Mutex
	rng      *rand.Rand
	rules    []*ruleState
	requests map[Kind]int
	injected map[Kind]map[Fault]int
	events   []Event
	sessions map[string]*session
	raw      bool // PassResentChunks
}

type ruleState struct {
	Rule
	seen, fired int
}

// session is what the proxy knows of one resumable upload.
type session struct {
	committed int64       // bytes the emulator holds
	final     *savedReply // the answer that finished it
}

type savedReply struct {
	status int
	header http.Header
	body   []byte
}

// NewProxy starts a proxy in front of backend (the emulator's base URL,
// e.g. fakestorage.Server.URL()) with no rules and the generator seeded
// with seed. It stops when the test ends.
func NewProxy(t testing.TB, backend string, seed uint64) *Proxy {
	t.Helper()
	p := &Proxy{
		backend:  strings.TrimSuffix(backend, "/"),
		tr:       &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
		closing:  make(chan struct{}),
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		requests: map[Kind]int{},
		injected: map[Kind]map[Fault]int{},
		sessions: map[string]*session{},
	}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's base URL: give it to storage.NewGCSClient.
func (p *Proxy) URL() string { return p.srv.URL }

func (p *Proxy) close() {
	close(p.closing) // releases hung requests
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

// SetRules replaces the rules and reseeds the generator, so a test's
// sequence of injections depends only on its seed and its requests.
// Counters and events are kept (see ResetCounts).
func (p *Proxy) SetRules(seed uint64, rules ...Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p.rules = p.rules[:0]
	for _, r := range rules {
		if r.Kinds == 0 {
			r.Kinds = AnyKind
		}
		p.rules = append(p.rules, &ruleState{Rule: r})
	}
}

// PassResentChunks turns the proxy's resent-chunk handling off (on by
// default: see Proxy), exposing the emulator's own behaviour: a resent
// chunk is stored twice, and resending the last chunk of a finished upload
// gets 404. Tests of what the client does about such answers use it.
func (p *Proxy) PassResentChunks(on bool) {
	p.mu.Lock()
	p.raw = on
	p.mu.Unlock()
}

// Clear removes every rule: requests pass untouched.
func (p *Proxy) Clear() { p.SetRules(0) }

// ResetCounts zeroes the counters and forgets the events.
func (p *Proxy) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = map[Kind]int{}
	p.injected = map[Kind]map[Fault]int{}
	p.events = nil
}

// Requests counts the requests of the given kinds seen so far.
func (p *Proxy) Requests(kinds Kind) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, c := range p.requests {
		if k&kinds != 0 {
			n += c
		}
	}
	return n
}

// Injected counts the faults injected into requests of the given kinds;
// with no faults named, of any fault.
func (p *Proxy) Injected(kinds Kind, faults ...Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, m := range p.injected {
		if k&kinds == 0 {
			continue
		}
		for f, c := range m {
			if len(faults) == 0 || containsFault(faults, f) {
				n += c
			}
		}
	}
	return n
}

func containsFault(fs []Fault, f Fault) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// Events returns the injected faults in order.
func (p *Proxy) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Summary is a one-line account of requests and injections, for logs.
func (p *Proxy) Summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for _, k := range []Kind{Read, Write, List, Metadata} {
		s := fmt.Sprintf("%s %d", k, p.requests[k])
		var fs []string
		for f, c := range p.injected[k] {
			fs = append(fs, fmt.Sprintf("%s×%d", f, c))
		}
		sort.Strings(fs)
		if len(fs) > 0 {
			s += " (" + strings.Join(fs, " ") + ")"
		}
		parts = append(parts, s)
	}
	return "requests: " + strings.Join(parts, ", ")
}

// Classify tells the kind of a GCS JSON/XML API request.
func Classify(r *http.Request) Kind {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/upload/"):
		return Write
	case r.Method == http.MethodDelete:
		return Write
	case strings.Contains(path, "/copyTo/") || strings.Contains(path, "/rewriteTo/") || strings.HasSuffix(path, "/compose"):
		return Write
	case strings.HasPrefix(path, "/download/"):
		return Read
	case strings.HasPrefix(path, "/storage/v1/"):
		if r.URL.Query().Get("alt") == "media" {
			return Read
		}
		if isListPath(path) && r.Method == http.MethodGet {
			return List
		}
		if r.Method == http.MethodPost && (isListPath(path) || path == "/storage/v1/b") {
			return Write // object insert without media, bucket creation
		}
		return Metadata
	}
	return Read // XML API: GET /bucket/object
}

// isListPath reports whether path is /storage/v1/b/<bucket>/o (or .../o/):
// the JSON API's object collection, listed by GET and inserted into by POST.
func isListPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/storage/v1/b/")
	if !ok {
		return false
	}
	bucket, tail, ok := strings.Cut(rest, "/")
	return ok && bucket != "" && (tail == "o" || tail == "o/")
}

// pick finds the rule that fires for r, if any, and counts the request.
// The rule's injection is reserved; unpick returns it when the fault turns
// out not to apply (a ShortRead of an empty body).
func (p *Proxy) pick(r *http.Request, kind Kind) (*ruleState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests[kind]++
	for _, rs := range p.rules {
		if rs.Kinds&kind == 0 || (rs.Limit > 0 && rs.fired >= rs.Limit) {
			continue
		}
		if rs.Match != nil && !rs.Match(r) {
			continue
		}
		rs.seen++
		if rs.seen <= rs.Skip {
			continue
		}
		if rs.Prob > 0 && rs.Prob < 1 && p.rng.Float64() >= rs.Prob {
			continue
		}
		rs.fired++
		return rs, true
	}
	return nil, false
}

func (p *Proxy) unpick(rs *ruleState) {
	p.mu.Lock()
	rs.fired--
	p.mu.Unlock()
}

func (p *Proxy) count(kind Kind, f Fault, after bool, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.injected[kind]
	if m == nil {
		m = map[Fault]int{}
		p.injected[kind] = m
	}
	m[f]++
	p.events = append(p.events, Event{Kind: kind, Fault: f, After: after, Method: r.Method, Path: r.URL.RequestURI()})
}

// cut draws how many of n bytes a short or truncated body keeps (fewer
// than n, so it is always short).
func (p *Proxy) cut(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(n)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := Classify(r)
	rule, fire := p.pick(r, kind)
	if fire && !rule.After && rule.Fault == Reset {
		// Take part of the body, then drop the connection mid-request.
		if r.ContentLength > 0 {
			io.CopyN(io.Discard, r.Body, int64(p.cut(int(r.ContentLength)+1)))
		}
		p.count(kind, rule.Fault, false, r)
		reset(w)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	if fire && !rule.After && rule.Fault != ShortRead && rule.Fault != Truncate {
		p.count(kind, rule.Fault, false, r)
		p.inject(w, r, rule.Fault, nil)
		return
	}
	reply, err := p.forward(r, body)
	if err != nil {
		http.Error(w, "gcstest proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	if fire {
		if (rule.Fault == ShortRead || rule.Fault == Truncate) && len(reply.body) == 0 {
			fire = false // nothing to cut: not injected
			p.unpick(rule)
		}
	}
	if fire {
		p.count(kind, rule.Fault, true, r)
		p.inject(w, r, rule.Fault, reply)
		return
	}
	writeReply(w, reply)
}

// inject performs fault f; reply is the server's answer when the request
// was forwarded.
func (p *Proxy) inject(w http.ResponseWriter, r *http.Request, f Fault, reply *savedReply) {
	switch f {
	case Unavailable, TooManyRequests:
		code := http.StatusServiceUnavailable
		if f == TooManyRequests {
			code = http.StatusTooManyRequests
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"code":%d,"message":"gcstest: injected %s","errors":[{"reason":"backendError"}]}}`, code, f)
	case Hang:
		select {
		case <-r.Context().Done():
		case <-p.closing:
		}
		reset(w)
	case Reset:
		reset(w)
	case ShortRead:
		keep := p.cut(len(reply.body))
		copyHeader(w.Header(), reply.header)
		w.Header().Set("Content-Length", strconv.Itoa(len(reply.body)))
		w.WriteHeader(reply.status)
		w.Write(reply.body[:keep])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		// Abort the handler: the server closes the connection without
		// completing the declared body.
		panic(http.ErrAbortHandler)
	case Truncate:
		keep := p.cut(len(reply.body))
		copyHeader(w.Header(), reply.header)
		w.Header().Del("Content-Length")
		w.WriteHeader(reply.status)
		w.Write(reply.body[:keep])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush() // commits to chunked encoding: the body ends cleanly
		}
	default:
		http.Error(w, "gcstest: unknown fault "+f.String(), http.StatusInternalServerError)
	}
}

// reset drops the client's connection with a TCP RST.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // close sends RST instead of FIN
	}
	conn.Close()
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}

func writeReply(w http.ResponseWriter, reply *savedReply) {
	copyHeader(w.Header(), reply.header)
	w.Header().Set("Content-Length", strconv.Itoa(len(reply.body)))
	w.WriteHeader(reply.status)
	w.Write(reply.body)
}

// forward sends the request to the emulator and reads the whole answer.
// The Host header is kept, so URLs the emulator builds (resumable session
// locations) point back at the proxy.
func (p *Proxy) forward(r *http.Request, body []byte) (*savedReply, error) {
	if reply, body2, rng, done := p.dedupe(r, body); done {
		return reply, nil
	} else if body2 != nil || rng != "" {
		body = body2
		r = r.Clone(r.Context())
		r.Header.Set("Content-Range", rng)
	}
	// Not cancelled when the client gives up: once sent, the request must
	// complete and be recorded, or a resent chunk would go unnoticed.
	out, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, p.backend+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	copyHeader(out.Header, r.Header)
	out.Host = r.Host
	out.ContentLength = int64(len(body))
	res, err := p.tr.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	reply := &savedReply{status: res.StatusCode, header: res.Header.Clone(), body: data}
	p.record(r, reply)
	return reply, nil
}

// digits parses a non-empty run of ASCII digits (no sign, no spaces).
func digits(v string) (int64, bool) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// parseContentRange reads an upload chunk's "bytes START-END/TOTAL" (TOTAL
// may be "*": not known yet).
func parseContentRange(v string) (start, end int64, total string, ok bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, "", false
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, "", false
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return 0, 0, "", false
	}
	start, okA := digits(a)
	end, okB := digits(b)
	_, okT := digits(total)
	if !okA || !okB || (!okT && total != "*") {
		return 0, 0, "", false
	}
	return start, end, total, true
}

// parseCommittedRange reads a 308 answer's "bytes=0-END": what the server has.
func parseCommittedRange(v string) (end int64, ok bool) {
	rest, ok := strings.CutPrefix(v, "bytes=0-")
	if !ok {
		return 0, false
	}
	return digits(rest)
}

// dedupe applies GCS's handling of resent resumable-upload chunks (see
// Proxy). It returns the reply to send without forwarding (done), or a
// trimmed body and Content-Range to forward instead of the original.
func (p *Proxy) dedupe(r *http.Request, body []byte) (reply *savedReply, trimmed []byte, rng string, done bool) {
	id := r.URL.Query().Get("upload_id")
	if id == "" || !strings.HasPrefix(r.URL.Path, "/upload/") {
		return nil, nil, "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions[id]
	if s == nil || p.raw {
		return nil, nil, "", false
	}
	if s.final != nil {
		return s.final, nil, "", true
	}
	start, end, total, ok := parseContentRange(r.Header.Get("Content-Range"))
	if !ok {
		return nil, nil, "", false
	}
	if start >= s.committed {
		return nil, nil, "", false
	}
	if end < s.committed { // every byte is already there
		if total != "*" {
			if n, _ := strconv.ParseInt(total, 10, 64); n == s.committed {
				return nil, []byte{}, "bytes */" + total, false // just finish it
			}
		}
		h := http.Header{}
		h.Set("X-Http-Status-Code-Override", "308")
		h.Set("Range", fmt.Sprintf("bytes=0-%d", s.committed-1))
		h.Set("Content-Type", "application/json")
		return &savedReply{status: http.StatusOK, header: h, body: []byte("{}")}, nil, "", true
	}
	skip := s.committed - start
	if skip > int64(len(body)) {
		skip = int64(len(body))
	}
	return nil, body[skip:], fmt.Sprintf("bytes %d-%d/%s", s.committed, end, total), false
}

// record tracks resumable sessions from the emulator's answers.
func (p *Proxy) record(r *http.Request, reply *savedReply) {
	if !strings.HasPrefix(r.URL.Path, "/upload/") || r.URL.Query().Get("uploadType") != "resumable" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id := r.URL.Query().Get("upload_id")
	if id == "" { // a session start: learn its id from the location
		if loc := reply.header.Get("Location"); loc != "" && reply.status/100 == 2 {
			if i := strings.Index(loc, "upload_id="); i >= 0 {
				sid := loc[i+len("upload_id="):]
				if j := strings.IndexByte(sid, '&'); j >= 0 {
					sid = sid[:j]
				}
				p.sessions[sid] = &session{}
			}
		}
		return
	}
	s := p.sessions[id]
	if s == nil || reply.status/100 != 2 {
		return
	}
	if reply.header.Get("X-Http-Status-Code-Override") == "308" {
		if end, ok := parseCommittedRange(reply.header.Get("Range")); ok {
			s.committed = end + 1
		}
		return
	}
	s.final = reply
}
