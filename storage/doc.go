// Package storage is beamtune's single way to read and write files, whether
// they live on the local file system or in Google Cloud Storage (gs:// URIs).
// Every stage (prepare, train checkpoints, reports, the model registry) goes
// through it, so a path given on the command line can be either kind.
//
// # Paths
//
// A path that starts with "gs://" names a GCS object (gs://bucket/object);
// anything else is a local path. Use [Join] rather than filepath.Join to
// build paths (filepath.Join would turn "gs://b" into "gs:/b"), [IsGCS] to
// tell the two apart and [ParseGCS] to split a URI. A path that looks like a
// mistyped URI ("gs:/b/o", "GS://b/o") is rejected instead of silently being
// treated as a local file.
//
// Directories: GCS has none, so a "directory" gs://b/dir is the set of
// objects whose names start with "dir/". [Stat] and [Exists] report such a
// prefix as a directory (Info.IsDir) and [RemoveAll] deletes everything
// under it. [Glob] on gs:// matches object names only, never such prefixes
// (locally it is filepath.Glob, which also returns directories).
//
// # Atomicity
//
// Writes never expose a partial file or object, on either backend:
//
//   - Local: [Create] writes to a hidden temporary file in the destination's
//     directory (".beamtune-tmp-<name>-<random>"); Close fsyncs it, renames it
//     over the destination (an atomic replace on POSIX file systems) and then
//     fsyncs the directory (best effort). Readers see the old content or the
//     new one, never a mix. Abort, a failed Write, or a cancelled context
//     removes the temporary file and leaves the destination untouched. A
//     process killed mid-write can leave a temporary file behind; [Glob]
//     never reports such files. Parent directories are created as needed and
//     new files get mode 0644.
//   - GCS: GCS makes an object visible only when its upload is complete,
//     which happens in Close. Content that fits one upload chunk (16 MiB by
//     default, see [GCSOptions]) is kept in memory and sent by Close in a
//     single request, so the whole upload can be retried; bigger content
//     streams through a resumable upload whose chunks are retried one by
//     one. Abort (or a failed Write, or a cancelled context) cancels the
//     upload, so nothing is published and an existing object keeps its old
//     content. After the upload, the size and CRC32C GCS reports are
//     compared with what was written; a mismatch (which GCS should never
//     let through) deletes that generation and fails Close, so no corrupt
//     object stays under the name.
//
// Close after a failed Write never publishes: the Writer remembers the
// failure and Close aborts and returns it. Close after a successful upload
// makes Abort a no-op, so the idiom
//
//	w, err := storage.Create(ctx, path)
//	if err != nil { return err }
//	defer w.Abort()
//	if err := produce(w); err != nil { return err }
//	return w.Close()
//
// publishes exactly when produce and Close succeed. If produce fails after
// writing some data, call Abort (the deferred call does it); calling Close
// instead would publish what was written so far.
//
// Concurrent writers of one path through [Create]/[WriteFile]: the last
// Close wins, each reader sees one complete version. For read-modify-write
// of a shared small object use [ReadFileWithGeneration] and
// [WriteFileIfGeneration] (compare-and-swap):
//
//   - GCS: the object generation, enforced by GCS with an ifGenerationMatch
//     precondition (generation 0: the object must not exist).
//   - Local: a lock file next to the target (".beamtune-lock-<name>", held
//     with flock(2) on Unix, so a crashed holder never leaves a stale lock)
//     serializes read-compare-write. The local "generation" is derived from
//     the content (63 bits of its SHA-256, never 0), so it changes with every
//     write that changes the bytes, including writes that bypass this
//     package. Writing back identical bytes keeps the generation: the CAS is
//     on the value, which is all a read-modify-write needs. Treat
//     generations as opaque tokens on both backends.
//
// A failed compare returns an error for which errors.Is(err, ErrPrecondition)
// holds. On GCS an attempt can be applied while its answer is lost; the
// retry then fails its precondition although the write succeeded. When a
// compare-and-swap saw any failed request, such a failure is checked: each
// compare-and-swap write stores a random token in the object's metadata
// (key "beamtune-write-id"), and if the live object carries ours and holds
// exactly our bytes, the write is reported as the success it was, with that
// generation. A competing writer's object (even with the same bytes) is not
// taken for ours. What remains ambiguous is a write that succeeded and was
// overwritten by someone else before the check: it reports ErrPrecondition,
// and the caller's re-read and re-apply should be idempotent.
//
// # Errors
//
// Every error names the path it concerns (most are *fs.PathError). Missing
// files and objects (and missing buckets) satisfy
// errors.Is(err, fs.ErrNotExist) on both backends; a read over the limit of
// [ReadFileLimit] satisfies errors.Is(err, ErrTooLarge). The package never
// panics or exits the process.
//
// # Retries
//
// GCS calls retry transient failures (HTTP 408, 429 and 5xx, connection
// resets and refusals, unexpected EOFs, stalled requests) with jittered
// exponential backoff; [GCSOptions] (set with [SetGCSOptions] or
// [Store.SetGCSOptions]) tunes it. The client library retries each request;
// the transport that [NewGCSClient] installs adds what the library lacks:
//
//   - Attempt timeout: a request that makes no progress for AttemptTimeout
//     (2 min; no request bytes taken, no answer, no data while a Read waits)
//     is cancelled and retried, so a hung connection costs one attempt, not
//     the whole operation.
//   - A budget per operation: once MaxAttempts (8) requests in a row have
//     failed, or the current run of failures is older than RetryTime
//     (5 min), no further request starts and the operation fails with a
//     *[RetryError] (inside the *fs.PathError naming the path) that gives
//     the attempts, the time and the last failure. Data arriving ends a run.
//     Without it some library loops never end (a multipart upload retries
//     until the context ends; a download whose connections keep breaking
//     reopens forever). Worst case before giving up: about MaxAttempts ×
//     (AttemptTimeout + MaxBackoff), or RetryTime + AttemptTimeout.
//   - Incomplete answers: a JSON answer that does not parse (cut short
//     without a Content-Length to show it) is retried like a reset.
//
// Which calls retry, and how:
//
//   - Reads, lists and stats are idempotent and always retry. A download
//     that breaks off resumes from the byte where it stopped, pinned to the
//     generation it started with; one that ends early without a transport
//     error (a truncated body) is detected by comparing with the object's
//     size and CRC32C and resumed the same way; content whose CRC32C does
//     not match fails the read (a stream cannot take back what it
//     delivered).
//   - Uploads from [Create], [WriteFile] and [Copy] retry (RetryAlways)
//     although they carry no precondition: each attempt sends the complete
//     content (or the same chunk) to the same name, so a repeated attempt
//     publishes the same bytes. When the library gives up on a buffered
//     upload with an unknown outcome, the whole upload is repeated within
//     the budget. A streamed upload whose end failed (its final answer lost)
//     counts as done if the live object has exactly the size and CRC32C
//     written. The only hazard is a lost response followed by a retry
//     landing after another writer's upload of the same path, re-publishing
//     our bytes over theirs; paths written with Create have one writer by
//     design (shared objects use the CAS functions).
//   - [WriteFileIfGeneration] retries (RetryAlways) because its
//     ifGenerationMatch precondition makes it idempotent; see above for the
//     precondition failure of a retry.
//   - Deletes ([Remove], [RemoveAll]) first read the object's generation and
//     delete with an ifGenerationMatch precondition, which makes them
//     idempotent, so they retry; a "not found" on a retry counts as success.
//
// The context passed to each call bounds all of its attempts. A client not
// built by NewGCSClient (given to SetGCSClient) gets the library's retries
// only: no attempt timeout, no budget.
//
// # Client
//
// Package-level functions use [Default], a [Store] whose GCS client is
// created on first gs:// use from the environment: STORAGE_EMULATOR_HOST
// (host:port of an emulator, no credentials) or else Application Default
// Credentials. Local-only use never creates a client. [SetGCSClient]
// replaces that client (e.g. in tests); [NewStore] gives an independent
// Store, and [NewGCSClient] builds a client for an emulator endpoint and/or
// with a custom http.RoundTripper (proxies, recording). Package gcstest
// runs an in-process fake GCS behind a fault-injecting proxy for tests.
//
// # Scope and imports
//
// The package owns everything about where bytes live: routing a path to the
// local file system or GCS, reading, atomic writing and compare-and-swap,
// stat, glob and removal, copying folders in and out ([LocalDir],
// [UploadDir]), the GCS client with its retry guard and options, and saying
// how it authenticates without leaking credentials ([AuthMode], [Redact]).
// It knows nothing about what the bytes mean (models, datasets, reports).
//
// It may import only the standard library and the Cloud Storage client
// libraries (cloud.google.com/go/storage and the modules that come with it:
// google.golang.org/api, github.com/googleapis/gax-go/v2, and the codes and
// status packages of google.golang.org/grpc). It must not import any other
// beamtune package: the rest of beamtune imports storage, never the other
// way round. Its tests may also use storage/gcstest, which imports storage.
package storage

// Where things are:
//
//	storage.go    Store, Default, Info, Writer, ErrPrecondition, ErrTooLarge
//	client.go     building the GCS client (SetGCSClient, NewGCSClient)
//	paths.go      IsGCS, ParseGCS, Join, routing a path to a backend
//	read.go       Open, OpenMaybeGzip, ReadFile*, ReadFileWithGeneration
//	write.go      Create, WriteFile, WriteFileIfGeneration, Copy
//	meta.go       Stat, Exists, Remove, RemoveAll, Glob
//	default.go    the package-level functions, on Default()
//	helpers.go    error wrapping and small reader helpers
//	local.go      the local-file-system backend; lock_*.go its file locks
//	gcs.go        the GCS backend
//	guard.go      the transport that bounds GCS retries (RetryError)
//	options.go    GCSOptions, SetGCSOptions
//	auth.go       AuthMode, Redact
//	dirs.go       LocalDir, UploadDir
