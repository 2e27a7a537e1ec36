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
//   - GCS: [Create] streams to a GCS upload; GCS makes an object visible
//     only when the upload is finalized, which happens in Close. Abort (or a
//     failed Write, or a cancelled context) cancels the upload, so nothing is
//     published and an existing object keeps its old content.
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
// holds. On GCS a retried upload whose first attempt did succeed (but whose
// response was lost) also ends in ErrPrecondition; callers re-read and
// re-apply anyway, so make the modification idempotent or check the re-read
// value.
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
// resets and refusals, unexpected EOFs, timeouts) with jittered exponential
// backoff (200ms doubling up to 30s, at most 8 attempts per call; uploads
// instead retry each chunk for up to 32s). Which calls retry:
//
//   - Reads, lists and stats are idempotent and always retry.
//   - Uploads from [Create], [WriteFile] and [Copy] retry (RetryAlways)
//     although they carry no precondition: each attempt sends the complete
//     content to the same name, so a repeated attempt publishes the same
//     bytes. The only hazard is a lost response followed by a retry landing
//     after another writer's upload of the same path, re-publishing our
//     bytes over theirs; paths written with Create have one writer by
//     design (shared objects use the CAS functions).
//   - [WriteFileIfGeneration] retries (RetryAlways) because its
//     ifGenerationMatch precondition makes it idempotent.
//   - Deletes ([Remove], [RemoveAll]) first read the object's generation and
//     delete with an ifGenerationMatch precondition, which makes them
//     idempotent, so they retry; a "not found" on a retry counts as success.
//
// The context passed to each call bounds all of its attempts.
//
// # Client
//
// Package-level functions use [Default], a [Store] whose GCS client is
// created on first gs:// use from the environment: STORAGE_EMULATOR_HOST
// (host:port of an emulator, no credentials) or else Application Default
// Credentials. Local-only use never creates a client. [SetGCSClient]
// replaces that client (e.g. in tests); [NewStore] gives an independent
// Store, and [NewGCSClient] builds a client for an emulator endpoint and/or
// with a custom http.RoundTripper (fault injection, proxies, recording).
package storage
