#!/usr/bin/env bash
# What durability costs: `fts put` of a tree of many small files and of
# one large file to an `fts serve` with its default (each batch of uploads
# made durable before it is acknowledged) and with `--no-fsync`, on each
# filesystem of DIRS. Loopback only, no root, nothing installed.
#
# Before every timed run the share is emptied and `sync` writes back what
# is dirty, so neither variant pays for the one before it (nor for making
# the test data). The markdown table goes to stdout, progress to stderr:
#   bash bench/fsync.sh > fsync.md
#
# Environment:
#   FTS_BIN      fts binary (default: target/release/fts, else target/debug/fts)
#   DIRS         where the share (and the test data) go, one benchmark per
#                entry, space separated (default: "${TMPDIR:-/tmp} /dev/shm")
#   SMALL_FILES  number of 4 KiB files in the tree, 100 per directory (default 10000)
#   BIG_MB       size of the large file in MiB (default 512)
#   RUNS         repetitions per measurement; the median is reported (default 3)

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIRS=${DIRS:-${TMPDIR:-/tmp} /dev/shm}
SMALL_FILES=${SMALL_FILES:-10000}
BIG_MB=${BIG_MB:-512}
RUNS=${RUNS:-3}

log() { printf '[fsync] %s\n' "$*" >&2; }
die() { printf '[fsync] error: %s\n' "$*" >&2; exit 1; }
is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_pos_int "$SMALL_FILES" || die "SMALL_FILES must be a positive integer (got '$SMALL_FILES')"
is_pos_int "$BIG_MB" || die "BIG_MB must be a positive integer (got '$BIG_MB')"
is_pos_int "$RUNS" || die "RUNS must be a positive integer (got '$RUNS')"

if [[ -z ${FTS_BIN:-} ]]; then
    for b in "$REPO_ROOT/target/release/fts" "$REPO_ROOT/target/debug/fts"; do
        [[ -x $b ]] && { FTS_BIN=$b; break; }
    done
fi
[[ -x ${FTS_BIN:-} ]] || die "no fts binary: build it (cargo build --release) or set FTS_BIN"

declare -A PID ADDR FP
WORKS=()
cleanup() {
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    for w in "${WORKS[@]}"; do rm -rf "$w"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One private home for the client (known_hosts, no stored passwords).
for v in "${!XDG_@}" "${!FTS_@}"; do
    [[ $v == FTS_BIN ]] || unset "$v"
done
export FTS_CREDENTIAL_STORE=file

start_server() { # mode share state_dir flags...
    local mode=$1 share=$2 state=$3 out=$3/serve.log first
    shift 3
    "$FTS_BIN" --json serve "$share" --listen 127.0.0.1:0 --state-dir "$state" "$@" >"$out" 2>"$state/serve.err" &
    PID[$mode]=$!
    for _ in $(seq 100); do [[ -s $out ]] && break; sleep 0.1; done
    first=$(head -1 "$out")
    ADDR[$mode]=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' <<<"$first")
    FP[$mode]=$(sed -n 's/.*"fingerprint":"\([^"]*\)".*/\1/p' <<<"$first")
    [[ -n ${ADDR[$mode]} && -n ${FP[$mode]} ]] || die "fts serve did not start: $(cat "$state/serve.err")"
}

stop_servers() {
    for m in "${!PID[@]}"; do
        kill "${PID[$m]}" && wait "${PID[$m]}" 2>/dev/null || true
        unset "PID[$m]"
    done
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Times `fts put SRC` into the emptied share of MODE's server; prints seconds.
timed_put() { # mode share src
    local mode=$1 share=$2 src=$3 t0 t1
    find "$share" -mindepth 1 -delete
    sync
    t0=$(date +%s.%N)
    "$FTS_BIN" -q --fingerprint "${FP[$mode]}" put -r "$src" "fts://${ADDR[$mode]}/" </dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

passes() { # mode
    "$FTS_BIN" --json --fingerprint "${FP[$1]}" stats "fts://${ADDR[$1]}/" </dev/null |
        sed -n 's/.*"fsync_passes":\([0-9]*\).*/\1/p'
}

declare -A RESULT
printf '| filesystem | workload | default (fsync) | `--no-fsync` | cost of durability | passes per run |\n'
printf '|---|---|---|---|---|---|\n'
for dir in $DIRS; do
    work=$(mktemp -d "$dir/fts-fsync.XXXXXX")
    WORKS+=("$work")
    fstype=$(df --output=fstype "$work" | tail -1)
    export HOME=$work/home
    mkdir -p "$HOME" "$work/src/small" "$work/src/big"
    log "$dir ($fstype): making $SMALL_FILES files of 4 KiB and one of $BIG_MB MiB"
    for ((i = 0; i < SMALL_FILES; i++)); do
        d=$work/src/small/d$((i / 100))
        [[ -d $d ]] || mkdir "$d"
        head -c 4096 /dev/urandom >"$d/f$i"
    done
    head -c $((BIG_MB << 20)) /dev/urandom >"$work/src/big/big.bin"
    # Both servers run side by side and the variants take turns within
    # each run, so drift in the machine's load hits both alike.
    mkdir -p "$work"/{share,state}-{fsync,no-fsync}
    start_server fsync "$work/share-fsync" "$work/state-fsync"
    start_server no-fsync "$work/share-no-fsync" "$work/state-no-fsync" --no-fsync
    for what in small big; do
        declare -A samples=([fsync]="" [no-fsync]="")
        before=$(passes fsync)
        for ((r = 1; r <= RUNS; r++)); do
            for mode in fsync no-fsync; do
                s=$(timed_put "$mode" "$work/share-$mode" "$work/src/$what")
                log "$dir $what $mode run $r: ${s}s"
                samples[$mode]+="$s "
            done
        done
        after=$(passes fsync)
        for mode in fsync no-fsync; do
            RESULT[$mode.$what]=$(printf '%s\n' ${samples[$mode]} | median)
            RESULT[$mode.$what.samples]=${samples[$mode]}
        done
        RESULT[fsync.$what.passes]=$(((after - before) / RUNS))
        [[ $(passes no-fsync) == 0 ]] || die "the --no-fsync server made durability passes"
    done
    stop_servers
    for what in small big; do
        case $what in
            small) label="$SMALL_FILES × 4 KiB" ;;
            big) label="1 × $BIG_MB MiB" ;;
        esac
        a=${RESULT[fsync.$what]} b=${RESULT[no-fsync.$what]}
        printf '| %s (%s) | %s | %s s | %s s | %s | %s |\n' "$dir" "$fstype" "$label" "$a" "$b" \
            "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.0f%% (×%.2f)", (a / b - 1) * 100, a / b }')" \
            "${RESULT[fsync.$what.passes]}"
        log "$dir $what samples: fsync ${RESULT[fsync.$what.samples]}; no-fsync ${RESULT[no-fsync.$what.samples]}"
    done
    rm -rf "$work"
done
printf '\n%s runs each, median; fts %s (%s).\n' "$RUNS" "$("$FTS_BIN" --version | awk '{ print $2 }')" "$FTS_BIN"
