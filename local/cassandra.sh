#!/usr/bin/env bash
# A real single-node Apache Cassandra 5.0 on 127.0.0.1 for tests, CI and the local stack.
#
#   local/cassandra.sh start    fetch (cached) + configure + start, wait until CQL answers
#   local/cassandra.sh stop     SIGTERM (clean drain), then SIGKILL after a grace period
#   local/cassandra.sh status   exit 0 iff CQL answers on 127.0.0.1:$CASSANDRA_PORT
#   local/cassandra.sh restart  stop + start (data is kept)
#   local/cassandra.sh fetch    only download the jars (CI can cache .cache/cassandra/lib)
#
# Everything lives under .cache/cassandra/ (git-ignored): lib/ (cassandra-all and its runtime
# dependencies from Maven Central, via local/cassandra/pom.xml), conf/ (rendered from
# local/cassandra/), data/, cassandra.log and cassandra.pid.
#
# Environment: CASSANDRA_PORT (native/CQL port, default 9042), CASSANDRA_STORAGE_PORT
# (default 7000), CASSANDRA_HEAP (default 1G), CASSANDRA_START_TIMEOUT (seconds, default 180),
# CASSANDRA_STOP_TIMEOUT (seconds, default 60), CASSANDRA_STATE_DIR (conf/, data/, log and pid
# of this instance; default .cache/cassandra: set it, with other ports, to run a second,
# independent server), JAVA_HOME or java on PATH (Java 17).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/local/cassandra"
LIB_HOME="$ROOT/.cache/cassandra"
LIB="$LIB_HOME/lib"
HOME_DIR="${CASSANDRA_STATE_DIR:-$ROOT/.cache/cassandra}"
CONF="$HOME_DIR/conf"
DATA="$HOME_DIR/data"
LOG="$HOME_DIR/cassandra.log"
PIDFILE="$HOME_DIR/cassandra.pid"

PORT="${CASSANDRA_PORT:-9042}"
STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
HEAP="${CASSANDRA_HEAP:-1G}"
START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-60}"

say() { echo "cassandra: $*"; }
die() { echo "cassandra: error: $*" >&2; exit 1; }

log_tail() {
    if [[ -f "$LOG" ]]; then
        echo "---- last lines of $LOG ----" >&2
        tail -n 25 "$LOG" >&2
        echo "----" >&2
    fi
}

# One line naming why the server died, from its log: a JVM option error if there is one, else
# the last ERROR / exception line, else the last line.
log_reason() {
    [[ -f "$LOG" ]] || { echo "no log written"; return; }
    local line
    line="$(grep -E '^(Invalid|Unrecognized|Improperly specified|Error occurred)' "$LOG" | head -n 1 || true)"
    [[ -n "$line" ]] || line="$(grep -E '^ERROR|Exception' "$LOG" | tail -n 1 || true)"
    [[ -n "$line" ]] || line="$(tail -n 1 "$LOG")"
    echo "${line:0:400}"
}

# CQL answers iff an OPTIONS frame (protocol v4) gets a SUPPORTED frame back (opcode 0x06).
cql_answers() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
        head -c 5 <&3 | od -An -tx1 | tr -d " \n"
    ' "$PORT" 2>/dev/null | grep -q '^8400000006$'
}

pid_alive() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q CassandraDaemon "/proc/$pid/cmdline" 2>/dev/null
}

find_java() {
    local java="java"
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        java="$JAVA_HOME/bin/java"
    fi
    command -v "$java" >/dev/null 2>&1 || die "Java 17 is required (set JAVA_HOME or put java on PATH; Debian: apt-get install openjdk-17-jre-headless)"
    local version
    version="$("$java" -version 2>&1 | head -n 1 | sed -E 's/.*version "([0-9]+).*/\1/')"
    [[ "$version" == "17" || "$version" == "11" ]] || die "Cassandra 5.0 runs on Java 17 (or 11); found Java $version at $(command -v "$java")"
    echo "$java"
}

fetch() {
    if compgen -G "$LIB/cassandra-all-*.jar" >/dev/null && [[ -f "$LIB/.complete" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed once to fetch Cassandra from Maven Central (Debian: apt-get install maven)"
    say "fetching Cassandra 5.0 and its dependencies from Maven Central into $LIB"
    mkdir -p "$LIB"
    rm -f "$LIB/.complete"
    if ! mvn -q -B -f "$SRC/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$LIB" >"$LIB_HOME/fetch.log" 2>&1; then
        tail -n 20 "$LIB_HOME/fetch.log" >&2
        die "mvn dependency:copy-dependencies failed (see $LIB_HOME/fetch.log)"
    fi
    compgen -G "$LIB/cassandra-all-*.jar" >/dev/null || die "cassandra-all jar missing after the fetch"
    touch "$LIB/.complete"
    say "fetched $(ls "$LIB"/*.jar | wc -l) jars"
}

render_conf() {
    mkdir -p "$CONF" "$DATA"/{data,commitlog,hints,saved_caches,cdc_raw}
    sed -e "s#@DATA@#$DATA#g" -e "s#@PORT@#$PORT#g" -e "s#@STORAGE_PORT@#$STORAGE_PORT#g" \
        "$SRC/cassandra.yaml.template" >"$CONF/cassandra.yaml"
    cp "$SRC/logback.xml" "$CONF/logback.xml"
}

jvm_options() {
    grep -vE '^\s*(#|$)' "$SRC/jvm17-server.options"
}

wait_for_cql() {
    local pid="$1" start=$SECONDS next_report=10
    while true; do
        if cql_answers; then
            say "up: CQL answers on 127.0.0.1:$PORT (pid $pid, $((SECONDS - start)) s)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail
            rm -f "$PIDFILE"
            die "Cassandra exited during startup: $(log_reason)"
        fi
        if (( SECONDS - start >= START_TIMEOUT )); then
            log_tail
            die "CQL did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s (pid $pid still running; see $LOG): $(log_reason)"
        fi
        if (( SECONDS - start >= next_report )); then
            say "waiting for CQL on 127.0.0.1:$PORT ... $((SECONDS - start)) s"
            next_report=$((next_report + 10))
        fi
        sleep 1
    done
}

start() {
    mkdir -p "$HOME_DIR"
    if cql_answers; then
        say "already running: CQL answers on 127.0.0.1:$PORT"
        return 0
    fi
    if pid_alive; then
        say "already starting (pid $(cat "$PIDFILE")); waiting"
        wait_for_cql "$(cat "$PIDFILE")"
        return 0
    fi
    local java
    java="$(find_java)"
    fetch
    render_conf
    if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "port $PORT on 127.0.0.1 is taken by something that does not speak CQL (set CASSANDRA_PORT)"
    fi
    if (echo >"/dev/tcp/127.0.0.1/$STORAGE_PORT") 2>/dev/null; then
        die "storage port $STORAGE_PORT on 127.0.0.1 is taken (set CASSANDRA_STORAGE_PORT)"
    fi
    [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"

    local -a opts
    mapfile -t opts < <(jvm_options)
    local jamm
    jamm="$(ls "$LIB"/jamm-*.jar 2>/dev/null | head -n 1 || true)"
    [[ -n "$jamm" ]] && opts+=("-javaagent:$jamm")
    opts+=(
        "-Xms$HEAP" "-Xmx$HEAP"
        "-Dcassandra.config=file://$CONF/cassandra.yaml"
        "-Dcassandra.storagedir=$DATA"
        "-Dcassandra.logdir=$HOME_DIR"
        "-Dlogback.configurationFile=file://$CONF/logback.xml"
        "-Dcassandra-foreground=yes"
        "-XX:HeapDumpPath=$HOME_DIR"
        "-XX:ErrorFile=$HOME_DIR/hs_err_%p.log"
    )

    say "starting Cassandra 5.0 on 127.0.0.1:$PORT (heap $HEAP, data in $DATA, log in $LOG)"
    # setsid + nohup: the server outlives this script and the test process that ran it;
    # stdin/stdout/stderr are detached so a caller capturing our output is not held open.
    setsid nohup "$java" "${opts[@]}" -cp "$CONF:$LIB/*" org.apache.cassandra.service.CassandraDaemon \
        </dev/null >>"$LOG" 2>&1 &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    wait_for_cql "$pid"
}

stop() {
    if ! pid_alive; then
        rm -f "$PIDFILE"
        if cql_answers; then
            die "CQL answers on 127.0.0.1:$PORT but not from a server this script started (no live pid in $PIDFILE)"
        fi
        say "not running"
        return 0
    fi
    local pid waited=0
    pid="$(cat "$PIDFILE")"
    say "stopping (pid $pid, SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= STOP_TIMEOUT )); then
            say "still running after ${STOP_TIMEOUT}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    rm -f "$PIDFILE"
    say "stopped"
}

status() {
    if cql_answers; then
        say "running: CQL answers on 127.0.0.1:$PORT"
        return 0
    fi
    if pid_alive; then
        say "starting or unresponsive (pid $(cat "$PIDFILE")): CQL does not answer on 127.0.0.1:$PORT"
    else
        say "not running"
    fi
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    fetch) mkdir -p "$HOME_DIR"; fetch ;;
    *) echo "usage: $0 start|stop|status|restart|fetch" >&2; exit 2 ;;
esac
