#!/bin/sh
# Flex Template entry point for `beamtune retrain` (FLEX_TEMPLATE_GO_BINARY).
#
# The Go Flex Template launcher runs FLEX_TEMPLATE_GO_BINARY with flags only:
# the template's parameters as --name=value and its own runner flags
# (--runner=DataflowRunner, --project, --region, --job_name,
# --staging_location, --temp_location, --template_location, ...). beamtune
# wants its subcommand first, hence this script.
#
# Defaults go before the launcher's flags: Go's flag package keeps the last
# value, so a launch parameter overrides them.
#   --worker_binary: the launcher has no Go toolchain, and Beam would otherwise
#     try to cross-compile a CGO_ENABLED=0 worker, which cannot link libtorch.
#     The binary that builds the job is the one workers must run.
#   --sdk_container_image: baked in at image build time (SDK_CONTAINER_IMAGE);
#     without it workers would start Beam's stock image, which has no libtorch.
set -eu
bin=${BEAMTUNE_BIN:-/opt/beamtune/bin/beamtune}
set -- --worker_binary="$bin" "$@"
if [ -n "${BEAMTUNE_SDK_CONTAINER_IMAGE:-}" ]; then
  set -- --sdk_container_image="$BEAMTUNE_SDK_CONTAINER_IMAGE" "$@"
fi
exec "$bin" retrain "$@"
