# beamtune: the two commands a fresh machine needs are `make demo` and `make test`.
# Both run scripts/setup.sh first (idempotent: seconds once everything is cached).

GO      ?= go
BIN     := bin/beamtune
# Test timeout, per package: the slowest, pipelines, takes 10–15 minutes on 2 cores.
TESTFLAGS ?= -timeout 30m

.PHONY: setup build demo test bench doctor clean

setup:
	scripts/setup.sh

build: setup
	$(GO) build -o $(BIN) ./cmd/beamtune

doctor: build
	$(BIN) doctor

# The main job on the embedded defaults: prism, the bundled sample corpus,
# the pretrained all-MiniLM-L6-v2.
demo: build
	$(BIN) doctor
	$(BIN) demo

# Packages are tested one at a time (-p 1): two test binaries driving
# libtorch's OpenMP pools at once on 2 cores spin against each other and run
# many times slower. The build before it still compiles in parallel.
test: setup
	scripts/install-chromium.sh
	scripts/flink-jobserver.sh fetch          # Beam's Flink job server (Maven Central) for the Flink test
	scripts/flink-jobserver.sh --spark fetch  # and Spark's
	scripts/pyenv.sh >/dev/null               # the Python reference environment (model-signing, huggingface_hub) for the interop tests
	$(GO) vet ./...
	$(GO) test -p 1 $(TESTFLAGS) ./...

bench: build
	bench/run.sh

clean:
	rm -rf bin out
