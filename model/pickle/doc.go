// Package pickle reads PyTorch checkpoints (pytorch_model.bin, as torch.save
// writes them) in pure Go, without executing them and without trusting them.
//
// A .bin is a Python pickle (inside a zip since torch 1.6, bare before), and
// a pickle is a program: GLOBAL names any importable callable and REDUCE
// calls it, so torch.load of a hostile file runs os.system or eval. gotch's
// reader runs nothing, but it allocates storages of the size the pickle
// claims and rebuilds tensors with Must* helpers that exit the process on a
// bad shape. So beamtune does not hand the file to a general unpickler at all:
// it runs the pickle on a small machine that knows only the opcodes torch.save
// emits and only the globals a state dict needs (OrderedDict, the tensor and
// parameter rebuild functions, the storage types), refuses anything else by
// name, checks every tensor against its storage and every storage against the
// bytes in the file, and then reads the tensors itself, in pure Go, one at a
// time (see File.Float32s).
//
// [Open] checks a whole file (zip or legacy format) within [Limits] and
// returns a [File]; a refused file gives an *[Error] that says why, and names
// the global when the pickle referenced a callable outside the allowlist
// ([GlobalAllowed]). FuzzPickleScan exercises the checker on arbitrary bytes.
//
// # Scope and imports
//
// The package owns parsing torch.save pickles without executing them: the
// pickle machine, the allowlist of globals, the zip and legacy containers,
// and decoding a checked tensor's values to float32. It does not build
// tensors (package model turns the values into libtorch tensors) and never
// links libtorch.
//
// It may import only the standard library and, for the half-precision
// conversions (F16ToFloat32, BF16ToFloat32), the pure-Go sibling package
// model/safetensors. It must not import package model, gotch or anything
// else that needs cgo.
package pickle
