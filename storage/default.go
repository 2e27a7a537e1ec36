package storage

import (
	"context"
	"io"
)

// ---------------------------------------------------------------------------
// Package-level functions: the same operations on Default().

// Open opens path for reading with the default Store. See Store.Open.
func Open(ctx context.Context, p string) (io.ReadCloser, error) { return defaultStore.Open(ctx, p) }

// OpenMaybeGzip opens path, gunzipping gzip content. See Store.OpenMaybeGzip.
func OpenMaybeGzip(ctx context.Context, p string) (io.ReadCloser, error) {
	return defaultStore.OpenMaybeGzip(ctx, p)
}

// ReadFile reads a whole file or object. See Store.ReadFile.
func ReadFile(ctx context.Context, p string) ([]byte, error) { return defaultStore.ReadFile(ctx, p) }

// ReadFileLimit reads at most max bytes, else fails with ErrTooLarge. See Store.ReadFileLimit.
func ReadFileLimit(ctx context.Context, p string, max int64) ([]byte, error) {
	return defaultStore.ReadFileLimit(ctx, p, max)
}

// ReadFileWithGeneration reads content and generation. See Store.ReadFileWithGeneration.
func ReadFileWithGeneration(ctx context.Context, p string) ([]byte, int64, error) {
	return defaultStore.ReadFileWithGeneration(ctx, p)
}

// Create returns an atomic Writer. See Store.Create.
func Create(ctx context.Context, p string) (Writer, error) { return defaultStore.Create(ctx, p) }

// WriteFile atomically writes data. See Store.WriteFile.
func WriteFile(ctx context.Context, p string, data []byte) error {
	return defaultStore.WriteFile(ctx, p, data)
}

// WriteFileIfGeneration is a compare-and-swap write. See Store.WriteFileIfGeneration.
func WriteFileIfGeneration(ctx context.Context, p string, data []byte, gen int64) (int64, error) {
	return defaultStore.WriteFileIfGeneration(ctx, p, data, gen)
}

// Copy copies src to dst. See Store.Copy.
func Copy(ctx context.Context, src, dst string) error { return defaultStore.Copy(ctx, src, dst) }

// Stat describes path. See Store.Stat.
func Stat(ctx context.Context, p string) (Info, error) { return defaultStore.Stat(ctx, p) }

// Exists reports whether path exists. See Store.Exists.
func Exists(ctx context.Context, p string) (bool, error) { return defaultStore.Exists(ctx, p) }

// Remove deletes one file or object. See Store.Remove.
func Remove(ctx context.Context, p string) error { return defaultStore.Remove(ctx, p) }

// RemoveAll deletes path and everything under it. See Store.RemoveAll.
func RemoveAll(ctx context.Context, prefix string) error { return defaultStore.RemoveAll(ctx, prefix) }

// Glob lists paths matching pattern. See Store.Glob.
func Glob(ctx context.Context, pattern string) ([]string, error) {
	return defaultStore.Glob(ctx, pattern)
}
