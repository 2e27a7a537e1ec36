#!/usr/bin/env bash
# Beam's Flink job server (or, with --spark, Spark's), for `--runner=flink`
# (`--runner=spark`, or universal) with `--endpoint=localhost:PORT` and
# `--environment_type=LOOPBACK`.
#
#   scripts/flink-jobserver.sh [--spark] fetch          # idempotent: resolve the jars into the cache
#   scripts/flink-jobserver.sh [--spark] start [FLAGS]  # background; prints the job endpoint (localhost:PORT)
#   scripts/flink-jobserver.sh [--spark] stop           # stops the one `start` left running
#   scripts/flink-jobserver.sh [--spark] run [FLAGS]    # foreground (Ctrl+C stops it)
#
# FLAGS go to the job server driver after the defaults below, so they win
# (args4j keeps an option's last value): --flink-master=HOST:8081 submits to
# a running Flink cluster instead of an in-process mini cluster,
# --spark-master-url=spark://HOST:7077 to a Spark one, --job-port=8099 fixes
# the port. See docs/flink.md.
#
# Maven Central as reached here serves no shaded *-job-server jar, so the job
# server runs from the unshaded runner library and its dependencies
# (scripts/flink/pom.xml, scripts/flink/spark.pom.xml), resolved by Maven
# into a repository under the cache and put on java's classpath.
#
# Environment:
#   BEAMTUNE_CACHE        cache root (default ~/.cache/beamtune)
#   JOBSERVER_STATE       where `start` keeps its pid file, log and staged
#                         artifacts (default: the runner's folder in the cache)
#   JOBSERVER_WATCH_PID   `start` stops the job server once this process is
#                         gone (tests set it, so a killed test leaves no JVM)
#   JAVA                  the java binary (default: java on PATH; Java 17)
#   JOBSERVER_JAVA_OPTS   extra JVM options, e.g. -Xmx2g (the JVM's default
#                         heap limit is a quarter of the machine's memory)
set -euo pipefail

runner=flink
if [[ "${1:-}" == "--spark" ]]; then
	runner=spark
	shift
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}"
m2="$cache/m2"
java="${JAVA:-java}"

case "$runner" in
flink)
	pom="$here/flink/pom.xml"
	main=org.apache.beam.runners.flink.FlinkJobServerDriver
	# "[local]" starts a Flink mini cluster inside the job server's JVM.
	master=(--flink-master='[local]')
	# Flink 1.19's own list for Java 17 (its config.yaml's
	# env.java.default-opts.all): Kryo, the memory manager and Netty reach
	# into these JDK packages.
	java_opts=(
		--add-exports=java.base/sun.net.util=ALL-UNNAMED
		--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
		--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
		--add-opens=java.base/java.lang=ALL-UNNAMED
		--add-opens=java.base/java.net=ALL-UNNAMED
		--add-opens=java.base/java.io=ALL-UNNAMED
		--add-opens=java.base/java.nio=ALL-UNNAMED
		--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
		--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
		--add-opens=java.base/java.text=ALL-UNNAMED
		--add-opens=java.base/java.time=ALL-UNNAMED
		--add-opens=java.base/java.util=ALL-UNNAMED
		--add-opens=java.base/java.util.concurrent=ALL-UNNAMED
		--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
		--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
	)
	;;
spark)
	pom="$here/flink/spark.pom.xml"
	main=org.apache.beam.runners.spark.SparkJobServerDriver
	# An in-process Spark with two task threads, one per core here.
	master=(--spark-master-url='local[2]')
	# Spark 3.5's own list for Java 17
	# (org.apache.spark.launcher.JavaModuleOptions in spark-launcher).
	java_opts=(
		-XX:+IgnoreUnrecognizedVMOptions
		--add-opens=java.base/java.lang=ALL-UNNAMED
		--add-opens=java.base/java.lang.invoke=ALL-UNNAMED
		--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
		--add-opens=java.base/java.io=ALL-UNNAMED
		--add-opens=java.base/java.net=ALL-UNNAMED
		--add-opens=java.base/java.nio=ALL-UNNAMED
		--add-opens=java.base/java.util=ALL-UNNAMED
		--add-opens=java.base/java.util.concurrent=ALL-UNNAMED
		--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
		--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
		--add-opens=java.base/sun.nio.cs=ALL-UNNAMED
		--add-opens=java.base/sun.security.action=ALL-UNNAMED
		--add-opens=java.base/sun.util.calendar=ALL-UNNAMED
		--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED
		-Djdk.reflect.useDirectMethodHandle=false
	)
	;;
esac
java_opts+=(-Dorg.slf4j.simpleLogger.showDateTime=true)
# shellcheck disable=SC2206 # word splitting of the user's options is intended
java_opts+=(${JOBSERVER_JAVA_OPTS:-})

# The Beam version is read from the pom so the two cannot disagree.
version="$(sed -n 's:.*<beam.version>\(.*\)</beam.version>.*:\1:p' "$pom")"
dir="$cache/$runner-jobserver-$version"
state="${JOBSERVER_STATE:-$dir}"

die() { echo "$runner-jobserver: $*" >&2; exit 1; }

fetch() {
	# A finished fetch leaves the classpath and a stamp naming the pom it
	# came from; a changed pom resolves again.
	local sum
	sum="$(sha256sum "$pom" | cut -d' ' -f1)"
	if [[ -s "$dir/classpath" && -f "$dir/.fetched" && "$(cat "$dir/.fetched")" == "$sum" ]]; then
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install maven)"
	echo "$runner-jobserver: resolving Beam $version's $runner runner and its dependencies into $m2" >&2
	mkdir -p "$dir"
	# A repository of our own: a shared ~/.m2 may hold cached "not found"
	# answers from earlier lookups that Maven would not retry.
	if ! mvn -B -f "$pom" -Dmaven.repo.local="$m2" dependency:build-classpath \
		-Dmdep.includeScope=runtime -Dmdep.outputFile="$dir/classpath.tmp" >"$dir/fetch.log" 2>&1; then
		grep -E 'ERROR|Could not' "$dir/fetch.log" | head -n 20 >&2
		die "maven could not resolve $pom (Beam $version); full log: $dir/fetch.log"
	fi
	mv "$dir/classpath.tmp" "$dir/classpath"
	echo "$sum" >"$dir/.fetched"
}

run() {
	command -v "$java" >/dev/null || die "java not found (Java 17: apt-get install openjdk-17-jre-headless)"
	fetch
	mkdir -p "$state/artifacts"
	# Free ports by default so several job servers (tests, people) can run
	# side by side; the expansion service only serves cross-language
	# transforms, which beamtune does not use.
	exec "$java" "${java_opts[@]}" -cp "$(cat "$dir/classpath")" "$main" \
		--job-port=0 --artifact-port=0 --expansion-port=-1 "${master[@]}" \
		--artifacts-dir="$state/artifacts" "$@"
}

start() {
	fetch
	mkdir -p "$state"
	local log="$state/jobserver.log" pidf="$state/jobserver.pid"
	if [[ -f "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
		die "already running (pid $(cat "$pidf"), log $log); stop it first"
	fi
	: >"$log"
	# Its own session: a Ctrl+C meant for the caller (a test) must not kill
	# the JVM before the caller's cleanup stops it.
	local self=("$0")
	[[ "$runner" == spark ]] && self+=(--spark)
	setsid "${self[@]}" run "$@" >>"$log" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$pidf"
	if [[ -n "${JOBSERVER_WATCH_PID:-}" ]]; then
		local watched="$JOBSERVER_WATCH_PID"
		(
			while kill -0 "$watched" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 2; done
			kill "$pid" 2>/dev/null || true
		) </dev/null >/dev/null 2>&1 &
	fi
	# With --job-port=0 the driver's log line is the only place the port
	# appears.
	local endpoint="" i
	for ((i = 0; i < 240; i++)); do
		endpoint="$(sed -n 's/.*JobService started on \([^ ]*\).*/\1/p' "$log" | head -n 1)"
		[[ -n "$endpoint" ]] && break
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$log" >&2
			rm -f "$pidf"
			die "the job server exited before it was ready (log: $log)"
		fi
		sleep 0.5
	done
	if [[ -z "$endpoint" ]]; then
		tail -n 30 "$log" >&2
		die "no job endpoint after 120 s (log: $log)"
	fi
	echo "$endpoint"
}

stop() {
	local pidf="$state/jobserver.pid" pid
	[[ -f "$pidf" ]] || return 0
	pid="$(cat "$pidf")"
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for ((i = 0; i < 40; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
	fi
	rm -f "$pidf"
}

case "${1:-}" in
fetch) fetch ;;
start) shift; start "$@" ;;
stop) stop ;;
run) shift; run "$@" ;;
*) echo "usage: $0 [--spark] fetch | start [FLAGS] | stop | run [FLAGS]" >&2; exit 2 ;;
esac
