package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildBeamtune builds this command, once per test binary, into a folder
// TestMain removes, with the go on PATH and this process's environment (it
// links Beam and libtorch: about a minute unless the build cache is warm).
func buildBeamtune(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the beamtune binary; skipped with -short")
	}
	built.once.Do(func() {
		built.bin = filepath.Join(binDir, "beamtune")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", built.bin, ".")
		cmd.Env = os.Environ()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// built is the binary the tests share.
var built struct {
	once sync.Once
	bin  string
	err  error
}

// binDir holds the built binary; TestMain makes and removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "beamtune-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type ran struct {
	stdout, stderr string
	code           int
}

// run runs the binary; none of the invocations in these tests gets as far as
// a pipeline, and the timeout makes sure of it.
func run(t *testing.T, bin string, args ...string) ran {
	t.Helper()
	return runEnv(t, bin, nil, time.Minute, args...)
}

// runEnv runs the binary in a fresh folder with extra environment variables.
func runEnv(t *testing.T, bin string, env []string, timeout time.Duration, args ...string) ran {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := ran{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		r.code = exit.ExitCode()
	default:
		t.Fatalf("beamtune %s: %v\nstderr:\n%s", strings.Join(args, " "), err, r.stderr)
	}
	return r
}

// lineIndex is the byte offset of the first line of text that starts with
// prefix, or -1.
func lineIndex(text, prefix string) int {
	if strings.HasPrefix(text, prefix) {
		return 0
	}
	if i := strings.Index(text, "\n"+prefix); i >= 0 {
		return i + 1
	}
	return -1
}

// flagLine is how help starts the entry of flag name.
func flagLine(text, name string) int {
	for _, suffix := range []string{" ", "\n"} {
		if i := lineIndex(text, "  --"+name+suffix); i >= 0 {
			return i
		}
	}
	return -1
}

// ownFlags declares command c's flags on a fresh flag set, as the binary
// does on flag.CommandLine: its sections and their flags.
func ownFlags(t *testing.T, c commandInfo) *flagSet {
	t.Helper()
	f := newFlagSet(flag.NewFlagSet(c.name, flag.ContinueOnError))
	c.make().register(f)
	if len(f.own) == 0 {
		t.Fatalf("%s declares no flags", c.name)
	}
	return f
}

// beamFlags are the flags the Beam SDK registered on this process's
// flag.CommandLine (this test binary links the same packages as beamtune).
func beamFlags(t *testing.T) []string {
	var names []string
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			names = append(names, f.Name)
		}
	})
	for _, want := range []string{"runner", "job_name", "endpoint"} {
		if flag.CommandLine.Lookup(want) == nil {
			t.Fatalf("no --%s on flag.CommandLine: Beam's flags are not registered", want)
		}
	}
	return names
}

func TestHelp(t *testing.T) {
	bin := buildBeamtune(t)
	beam := beamFlags(t)

	t.Run("overview", func(t *testing.T) {
		r := run(t, bin, "help")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("beamtune help: exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
		}
		for _, c := range commands {
			if !strings.Contains(r.stdout, "\n  "+c.name+" ") || !strings.Contains(r.stdout, c.summary+"\n") {
				t.Errorf("beamtune help does not list %s (%q):\n%s", c.name, c.summary, r.stdout)
			}
		}
		for _, want := range []string{"--runner", "prism", "\nExit codes:\n", "\n  0  ", "\n  1  ", "\n  2  ", "\n  3  retrain", "\n  4  retrain"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("beamtune help lacks %q:\n%s", want, r.stdout)
			}
		}
		if h := run(t, bin, "--help"); h.code != 0 || h.stdout != r.stdout {
			t.Errorf("beamtune --help: exit %d, stdout\n%s\nwant 0 and the text of beamtune help", h.code, h.stdout)
		}
		// Without a command, the same list, as a usage error.
		if bare := run(t, bin); bare.code != 2 || bare.stderr != r.stdout {
			t.Errorf("beamtune: exit %d, stderr\n%s\nwant 2 and the text of beamtune help", bare.code, bare.stderr)
		}
	})

	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			h := run(t, bin, "help", c.name)
			if h.code != 0 || h.stderr != "" || h.stdout == "" {
				t.Fatalf("beamtune help %s: exit %d, stderr %q, %d bytes of stdout; want 0, nothing, the help",
					c.name, h.code, h.stderr, len(h.stdout))
			}
			for _, arg := range []string{"--help", "-h"} {
				if r := run(t, bin, c.name, arg); r.code != 0 || r.stdout != h.stdout || r.stderr != "" {
					t.Errorf("beamtune %s %s: exit %d, stderr %q, stdout differs from beamtune help %s: %v",
						c.name, arg, r.code, r.stderr, c.name, r.stdout != h.stdout)
				}
			}
			text := h.stdout
			beamAt := lineIndex(text, beamFlagsTitle+":\n")
			if beamAt < 0 {
				t.Fatalf("no %q section:\n%s", beamFlagsTitle, text)
			}
			// Own flags: each under its heading, the headings in order, all
			// before Beam's section.
			f := ownFlags(t, c)
			heads := make([]int, len(f.sections)+1)
			for k, s := range f.sections {
				heads[k] = lineIndex(text, s.title+":\n")
				if heads[k] < 0 || k > 0 && heads[k] <= heads[k-1] || heads[k] > beamAt {
					t.Errorf("heading %q at %d; want after the one before and before the Beam section at %d", s.title, heads[k], beamAt)
				}
			}
			heads[len(f.sections)] = beamAt
			for k, s := range f.sections {
				for _, n := range s.names {
					if i := flagLine(text, n); i < heads[k] || i > heads[k+1] {
						t.Errorf("--%s at %d; want under %q, between %d and %d", n, i, s.title, heads[k], heads[k+1])
					}
				}
			}
			// Beam's flags: every one, and only after its section's heading.
			for _, n := range beam {
				if f.own[n] {
					t.Errorf("--%s is both beamtune's and Beam's", n)
				}
				if i := flagLine(text, n); i < beamAt {
					t.Errorf("Beam's --%s at %d; want after the Beam section's heading at %d", n, i, beamAt)
				}
			}
		})
	}

	t.Run("train sections", func(t *testing.T) {
		text := run(t, bin, "train", "--help").stdout
		beamAt := lineIndex(text, beamFlagsTitle+":\n")
		for _, n := range []string{"data", "epochs", "lr", "output"} {
			if i := flagLine(text, n); i < 0 || i > beamAt {
				t.Errorf("--%s at %d; want before the Beam section at %d", n, i, beamAt)
			}
		}
		for _, n := range []string{"runner", "job_name"} {
			if i := flagLine(text, n); i < beamAt || beamAt < 0 {
				t.Errorf("--%s at %d; want after the Beam section at %d", n, i, beamAt)
			}
		}
		for _, h := range []string{"Data:", "Model:", "Recipe:", "Output:", "Compute:"} {
			if lineIndex(text, h+"\n") < 0 {
				t.Errorf("no heading %q in beamtune train --help:\n%s", h, text)
			}
		}
		if !strings.Contains(text, "  --epochs int\n      passes over the training split (when --max_steps is 0) (default 3)\n") {
			t.Errorf("--epochs lacks its type, help or default:\n%s", text)
		}
	})

	t.Run("unknown command", func(t *testing.T) {
		for _, args := range [][]string{{"help", "nosuch"}, {"nosuch"}} {
			r := run(t, bin, args...)
			if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `"nosuch"`) {
				t.Errorf("beamtune %s: exit %d, stdout %q, stderr %q; want 2, nothing, one line naming nosuch",
					strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
		}
	})

	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{{"train", "--no_such_flag"}, {"train", "--epochs=three"}, {"--no_such_flag"}} {
			r := run(t, bin, args...)
			bad := strings.TrimLeft(strings.SplitN(args[len(args)-1], "=", 2)[0], "-")
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, bad) {
				t.Errorf("beamtune %s: exit %d, stdout %q, stderr %q; want 2, nothing, a message naming %s",
					strings.Join(args, " "), r.code, r.stdout, r.stderr, bad)
			}
		}
	})
}
