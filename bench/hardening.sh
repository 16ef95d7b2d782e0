#!/usr/bin/env bash
# Reproduces the hardening figures (issue 6) in one run and prints them as
# a markdown table:
#
#   fuzz         every cargo-fuzz target in fuzz/ for FUZZ_SECS seconds
#                (skipped, and marked "not run", without cargo-fuzz)
#   kill         the kill -9 fault rounds of tests/kill.rs with a random seed
#   adversarial  tests/hostile.rs, adversarial.rs, faults.rs and web.rs
#   soak         tests/soak.rs with SOAK_CLIENTS clients for SOAK_SECS seconds
#
# See bench/README.md ("Hardening figures"). Progress and the tests' own
# output go to stderr; the table goes to stdout, so
#   bash bench/hardening.sh > hardening.md
# yields a clean report. The exit status is 0 only if every section ran
# clean (no fuzz crash, every fault round survived, every test passed).
#
# Environment:
#   SECTIONS      sections to run, space or comma separated
#                 (default: "fuzz kill adversarial soak")
#   FUZZ_SECS     seconds per fuzz target (default 60)
#   FAULT_ROUNDS  kill rounds per kind (put, get, sync) (default 7: 21 rounds)
#   FAULT_SEED    seed for the kill rounds (default: random, printed)
#   SOAK_CLIENTS  concurrent clients in the soak (default 200)
#   SOAK_SECS     soak duration in seconds (default 60)
#   JOBS          cargo build jobs (default 1: gentle on a shared machine)

set -euo pipefail

SECTIONS=${SECTIONS:-fuzz kill adversarial soak}
FUZZ_SECS=${FUZZ_SECS:-60}
FAULT_ROUNDS=${FAULT_ROUNDS:-7}
FAULT_SEED=${FAULT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SOAK_CLIENTS=${SOAK_CLIENTS:-200}
SOAK_SECS=${SOAK_SECS:-60}
JOBS=${JOBS:-1}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
REPORTS=$TARGET_DIR/hardening

log() { printf '[hardening] %s\n' "$*" >&2; }
die() { printf '[hardening] error: %s\n' "$*" >&2; exit 2; }

is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for v in FUZZ_SECS FAULT_ROUNDS SOAK_CLIENTS SOAK_SECS JOBS; do
    is_pos_int "${!v}" || die "$v must be a positive integer (got '${!v}')"
done
[[ $FAULT_SEED =~ ^[0-9]+$ ]] || die "FAULT_SEED must be a number (got '$FAULT_SEED')"
command -v python3 >/dev/null || die "python3 is needed to read the JSON summaries"

ALL_SECTIONS=(fuzz kill adversarial soak)
declare -A WANT=()
read -r -a words <<<"${SECTIONS//,/ }"
for w in "${words[@]}"; do
    case $w in
    all) for s in "${ALL_SECTIONS[@]}"; do WANT[$s]=1; done ;;
    fuzz | kill | adversarial | soak) WANT[$w]=1 ;;
    *) die "unknown section '$w' in SECTIONS (known: ${ALL_SECTIONS[*]} all)" ;;
    esac
done
((${#WANT[@]})) || die "SECTIONS selects nothing (known: ${ALL_SECTIONS[*]} all)"
want() { [[ -n ${WANT[$1]:-} ]]; }

WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT
cd "$REPO_ROOT"

# Rows of the final table ("| what | figure |"), and whether all was clean.
ROWS=()
CLEAN=1
row() { ROWS+=("| $1 | $2 |"); }

# json FILE EXPR: a value out of a one-line JSON summary (EXPR indexes `j`).
json() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# 1234567 -> 1,234,567
commas() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }

# The test files the adversarial section runs: hostile peers and share
# contents (hostile, adversarial), faults from outside (faults) and the
# web side's hostile cases (web).
ADVERSARIAL=(hostile adversarial faults web)

# Build the release test binaries once, before any clock starts.
test_args=()
want kill && test_args+=(--test kill)
want soak && test_args+=(--test soak)
if want adversarial; then
    for t in "${ADVERSARIAL[@]}"; do test_args+=(--test "$t"); done
fi
if ((${#test_args[@]})); then
    log "building release test binaries (${test_args[*]})"
    cargo test --release -j"$JOBS" --no-run "${test_args[@]}" >&2
fi

# ---------------------------------------------------------------------------
# fuzz
# ---------------------------------------------------------------------------
# cargo fuzz in fuzz/. RUSTC_BOOTSTRAP lets stable rustc take the -Z
# sanitizer flags (see fuzz/README.md); it is set for these commands only,
# since it changes rustc's fingerprint and would make every later cargo
# test rebuild the crate.
fuzz_cargo() {
    (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS=$JOBS cargo fuzz "$@")
}

fuzz_section() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "cargo fuzz is not installed: fuzz targets not run"
        row "fuzzing" "not run (cargo-fuzz not installed: \`cargo install cargo-fuzz\`)"
        return
    fi
    local targets t log_file execs rate secs start end extra
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
    mkdir -p "$REPORTS"
    log "building fuzz targets: ${targets[*]}"
    fuzz_cargo build >&2
    for t in "${targets[@]}"; do
        log "fuzzing $t for ${FUZZ_SECS}s"
        log_file=$REPORTS/fuzz-$t.log
        extra=()
        [[ $t == control_msg ]] && extra+=(-dict=dict/msg.dict)
        # A scratch corpus first (libFuzzer writes new inputs there), the
        # committed seeds second: the run starts from the seeds and leaves
        # the repository as it was. Crashes still go to fuzz/artifacts/.
        mkdir -p "$WORK/corpus-$t"
        start=$(date +%s)
        if fuzz_cargo run "$t" "$WORK/corpus-$t" "corpus/$t" -- \
            -max_total_time="$FUZZ_SECS" -print_final_stats=1 "${extra[@]}" \
            >"$log_file" 2>&1; then
            end=$(date +%s)
            execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -n1)
            rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log_file" | tail -n1)
            secs=$((end - start))
            row "fuzz \`$t\`" "$(commas "${execs:-0}") executions in ${secs} s (${rate:-?}/s), no crash"
        else
            CLEAN=0
            # The panic and the reproduction command, without the stack.
            grep -v -E '^ *(#[0-9]+ |[0-9]+: |at )' "$log_file" | tail -n 40 >&2
            row "fuzz \`$t\`" "**crash or error**: see $log_file and fuzz/artifacts/$t/"
        fi
    done
}

# summarized SUMMARY LABEL TEST [VAR=VALUE...]: runs tests/TEST.rs in
# release with the variables set; fails (after adding a row that says so)
# when the test left no JSON summary at SUMMARY.
summarized() {
    local summary=$1 label=$2 test=$3
    shift 3
    rm -f "$summary"
    env "$@" cargo test --release -j"$JOBS" --test "$test" -- --nocapture >&2 || CLEAN=0
    if [[ ! -s $summary ]]; then
        CLEAN=0
        row "$label" "**no summary** (the test did not get to the end)"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# kill -9 fault rounds
# ---------------------------------------------------------------------------
kill_section() {
    local summary=$REPORTS/kill.json
    log "kill rounds: FAULT_SEED=$FAULT_SEED FAULT_ROUNDS=$FAULT_ROUNDS per kind"
    summarized "$summary" "kill -9 fault rounds" kill \
        FAULT_SEED="$FAULT_SEED" FAULT_ROUNDS="$FAULT_ROUNDS" || return 0
    local rounds survived
    rounds=$(json "$summary" 'j["rounds"]')
    survived=$(json "$summary" 'j["survived"]')
    ((survived == rounds)) || CLEAN=0
    row "kill -9 fault rounds (seed $FAULT_SEED)" \
        "$survived / $rounds survived ($(json "$summary" '", ".join(k + " " + str(v["survived"]) + "/" + str(v["rounds"]) for k, v in j["kinds"].items())'); $(json "$summary" 'sum(v["uncut"] for v in j["kinds"].values())') completed despite the kill; $(json "$summary" 'j["violations"]') violations in $(commas "$(json "$summary" 'j["observations"]')") watcher observations)"
}

# ---------------------------------------------------------------------------
# adversarial test files
# ---------------------------------------------------------------------------
adversarial_section() {
    local t out passed failed p f
    for t in "${ADVERSARIAL[@]}"; do
        log "adversarial tests: tests/$t.rs"
        out=$WORK/adversarial-$t.log
        if ! cargo test --release -j"$JOBS" --test "$t" >"$out" 2>&1; then
            CLEAN=0
        fi
        cat "$out" >&2
        passed=0
        failed=0
        while read -r p f; do
            passed=$((passed + p))
            failed=$((failed + f))
        done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$out")
        ((failed == 0 && passed > 0)) || CLEAN=0
        row "adversarial \`tests/$t.rs\`" "$passed / $((passed + failed)) cases passed"
    done
}

# ---------------------------------------------------------------------------
# soak
# ---------------------------------------------------------------------------
soak_section() {
    local summary=$REPORTS/soak.json
    log "soak: $SOAK_CLIENTS clients for ${SOAK_SECS}s"
    summarized "$summary" "soak" soak \
        SOAK_CLIENTS="$SOAK_CLIENTS" SOAK_SECS="$SOAK_SECS" || return 0
    local failures
    failures=$(json "$summary" 'j["failures"]')
    ((failures == 0)) || CLEAN=0
    row "soak: clients × duration" "$SOAK_CLIENTS × ${SOAK_SECS} s (ran $(json "$summary" 'j["elapsed_s"]') s)"
    row "soak: operations" "$(commas "$(json "$summary" 'j["ops"]')") ($(json "$summary" '", ".join(f"{k} {v:,}" for k, v in j["ops_by_kind"].items())')), $(json "$summary" 'round(j["bytes"] / 2**20)') MiB moved"
    row "soak: failures" "$failures"
    row "soak: server peak RSS" "$(json "$summary" 'round(j["peak_rss_kib"] / 1024, 1)') MiB"
    row "soak: server fds before / peak / after" "$(json "$summary" 'j["fds_before"]') / $(json "$summary" 'j["fds_peak"]') / $(json "$summary" 'j["fds_after"]')"
}

want fuzz && fuzz_section
want kill && kill_section
want adversarial && adversarial_section
want soak && soak_section

echo "## fts hardening figures"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (modified)')"
echo
echo "| what | figure |"
echo "|---|---|"
printf '%s\n' "${ROWS[@]}"
((CLEAN)) || { log "some section did not run clean: see the table and the log above"; exit 1; }
