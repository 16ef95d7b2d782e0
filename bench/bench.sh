#!/usr/bin/env bash
# Side-by-side benchmark of fts against scp, rsync over ssh and (for many
# small files) an rsync daemon, all on loopback. Sections:
#
#   copy        one large random file, upload and download: fts, scp, rsync, cp (with peak RSS)
#   delta       a few bytes changed in a large file that both sides have:
#               fts put (delta) vs rsync --no-whole-file over ssh
#   smallfiles  a tree of many 4 KiB files, first copy and unchanged re-run:
#               fts sync vs rsync -a over ssh vs rsync daemon
#   compress    fresh upload of a large, compressible log file:
#               fts put (zstd) vs rsync -az over ssh
#   wan         the same kinds of work through a simulated WAN link (a
#               userspace proxy, examples/wanproxy.rs: one-way delay and
#               rate cap per direction) in front of both fts and sshd:
#               small-file tree first copy and re-sync, delta, fresh
#               upload; fts vs rsync -a over ssh. Not in the default set:
#               SECTIONS=wan (or all)
#   s3          fts serve s3://... on a local Garage: a large upload and
#               download, a first copy and an unchanged re-run of a tree of
#               small files; fts vs rclone straight to the same Garage
#               (rclone's defaults). Needs garage (cargo install --locked
#               garage) and rclone (installed from Debian when missing).
#               Not in the default set: SECTIONS=s3 (or all)
#
# See bench/README.md. Progress goes to stderr; the markdown report goes to
# stdout, so
#   bash bench/bench.sh > results.md
# yields a clean report.
#
# Environment:
#   FTS_BIN      fts binary (default: target/release/fts, else target/debug/fts)
#   SECTIONS     sections to run, space or comma separated, in any order
#                (default: "copy delta smallfiles compress")
#   SIZE_MB      size of the large files (copy, delta, compress) in MiB (default 1024)
#   SMALL_FILES  number of 4 KiB files for smallfiles (default 10000)
#   RUNS         repetitions per measurement; the median is reported (default 3)
#   SSH_PORT     loopback port for the throwaway sshd (default 22022)
#   RSYNCD       1: include an rsync daemon in smallfiles; 0: skip it (default 1)
#   RSYNCD_PORT  loopback port for that rsync daemon (default 22873)
#   WAN_DELAY_MS one-way delay of the wan link, each direction (default 25)
#   WAN_RATE     rate cap of the wan link, each direction, bytes/s with an
#                optional k/M/G (10^3/10^6/10^9) suffix (default 12.5M = 100 Mbit/s)
#   WAN_FILES    number of 4 KiB files in the wan tree (default 2000)
#   WAN_DELTA_MB size of the wan delta file in MiB (default 64)
#   WAN_UPLOAD_MB size of the wan fresh upload in MiB (default 256)
#   WAN_FTS_TIMEOUT  if set, fts runs in the wan section get --timeout SECS
#   FTS_FSYNC    1: fts as shipped, every file made durable before it is
#                reported stored; 0: fts serve and fts get run with
#                --no-fsync, as scp and rsync write (no fsync) (default 1)
#   MANY_COUNTS  file counts for manyfiles (default "100000 1000000")
#   MANY_SIZE    size of each manyfiles file in bytes (default 100)
#   MANY_RUNS    repetitions per manyfiles cell (default 1: a million files is slow)
#   PAR_FILES    files in the parallel section (default 8), PAR_MB their size
#                in MiB (default 128), PAR_N connections for --parallel (default 4),
#                PAR_CONN_RATE the cap of each single connection on its wan link
#                (default 3M; 0: none, one connection can then fill the link)
#   S3_MB        size of the s3 section's large file in MiB (default 1024)
#   S3_FILES     number of 4 KiB files in the s3 section's tree (default 10000)
#   GARAGE_BIN   garage binary (default: on PATH, else ~/.cargo/bin/garage)
#   WANPROXY_BIN the proxy (default: target/release/examples/wanproxy, built
#                with cargo build --release --example wanproxy when absent)

set -euo pipefail

SECTIONS=${SECTIONS:-copy delta smallfiles compress}
SIZE_MB=${SIZE_MB:-1024}
SMALL_FILES=${SMALL_FILES:-10000}
RUNS=${RUNS:-3}
SSH_PORT=${SSH_PORT:-22022}
RSYNCD=${RSYNCD:-1}
RSYNCD_PORT=${RSYNCD_PORT:-22873}
WAN_DELAY_MS=${WAN_DELAY_MS:-25}
WAN_RATE=${WAN_RATE:-12.5M}
WAN_FILES=${WAN_FILES:-2000}
WAN_DELTA_MB=${WAN_DELTA_MB:-64}
WAN_UPLOAD_MB=${WAN_UPLOAD_MB:-256}
WAN_FTS_TIMEOUT=${WAN_FTS_TIMEOUT:-}
MANY_COUNTS=${MANY_COUNTS:-100000 1000000}
MANY_SIZE=${MANY_SIZE:-100}
MANY_RUNS=${MANY_RUNS:-1}
PAR_FILES=${PAR_FILES:-8}
PAR_MB=${PAR_MB:-128}
PAR_N=${PAR_N:-4}
PAR_CONN_RATE=${PAR_CONN_RATE:-3M}
S3_MB=${S3_MB:-1024}
S3_FILES=${S3_FILES:-10000}
FTS_FSYNC=${FTS_FSYNC:-1}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_pos_int "$SIZE_MB" || die "SIZE_MB must be a positive integer (got '$SIZE_MB')"
is_pos_int "$SMALL_FILES" || die "SMALL_FILES must be a positive integer (got '$SMALL_FILES')"
is_pos_int "$RUNS" || die "RUNS must be a positive integer (got '$RUNS')"
is_pos_int "$SSH_PORT" || die "SSH_PORT must be a positive integer (got '$SSH_PORT')"
is_pos_int "$RSYNCD_PORT" || die "RSYNCD_PORT must be a positive integer (got '$RSYNCD_PORT')"
[[ $RSYNCD == [01] ]] || die "RSYNCD must be 0 or 1 (got '$RSYNCD')"
is_uint "$WAN_DELAY_MS" || die "WAN_DELAY_MS must be a non-negative integer (got '$WAN_DELAY_MS')"
[[ $WAN_RATE =~ ^[0-9]+(\.[0-9]+)?[kKMG]?$ ]] || die "WAN_RATE must be bytes/s like 12.5M or 1000000 (got '$WAN_RATE')"
is_pos_int "$WAN_FILES" || die "WAN_FILES must be a positive integer (got '$WAN_FILES')"
is_pos_int "$WAN_DELTA_MB" || die "WAN_DELTA_MB must be a positive integer (got '$WAN_DELTA_MB')"
is_pos_int "$WAN_UPLOAD_MB" || die "WAN_UPLOAD_MB must be a positive integer (got '$WAN_UPLOAD_MB')"
[[ $FTS_FSYNC == [01] ]] || die "FTS_FSYNC must be 0 or 1 (got '$FTS_FSYNC')"
# The fsync variant: fts's own writes (the server's for uploads, the
# client's for get) with or without their durability passes.
NO_FSYNC=()
[[ $FTS_FSYNC == 0 ]] && NO_FSYNC=(--no-fsync)
[[ -z $WAN_FTS_TIMEOUT ]] || is_pos_int "$WAN_FTS_TIMEOUT" || die "WAN_FTS_TIMEOUT must be a positive integer (got '$WAN_FTS_TIMEOUT')"
[[ $EUID -eq 0 ]] || die "run as root (needs apt-get and a root sshd)"

# Sections always run in this order, whatever order SECTIONS lists them in.
ALL_SECTIONS=(copy delta smallfiles compress wan manyfiles parallel s3)
declare -A WANT=()
read -r -a words <<<"${SECTIONS//,/ }"
for w in "${words[@]}"; do
    case $w in
    all) for s in "${ALL_SECTIONS[@]}"; do WANT[$s]=1; done ;;
    copy | delta | smallfiles | compress | wan | manyfiles | parallel | s3) WANT[$w]=1 ;;
    *) die "unknown section '$w' in SECTIONS (known: ${ALL_SECTIONS[*]} all)" ;;
    esac
done
((${#WANT[@]})) || die "SECTIONS selects nothing (known: ${ALL_SECTIONS[*]} all)"
want() { [[ -n ${WANT[$1]:-} ]]; }
SELECTED=()
for s in "${ALL_SECTIONS[@]}"; do
    if want "$s"; then SELECTED+=("$s"); fi
done

# Resolve the binary to an absolute path up front: the script never cd's, but
# a relative FTS_BIN must not silently depend on the caller's cwd later on.
if [[ -z ${FTS_BIN:-} ]]; then
    if [[ -x $REPO_ROOT/target/release/fts ]]; then
        FTS_BIN=$REPO_ROOT/target/release/fts
    else
        FTS_BIN=$REPO_ROOT/target/debug/fts
    fi
fi
[[ -x $FTS_BIN ]] || die "fts binary not found or not executable: $FTS_BIN (build it, or set FTS_BIN)"
FTS_BIN=$(readlink -f "$FTS_BIN")

# The wan section's proxy: built from examples/wanproxy.rs when absent.
if want wan || want parallel; then
    if [[ -z ${WANPROXY_BIN:-} ]]; then
        WANPROXY_BIN=$REPO_ROOT/target/release/examples/wanproxy
        if [[ ! -x $WANPROXY_BIN ]]; then
            log "building the wan proxy (cargo build --release --example wanproxy)"
            cargo build --release --example wanproxy --manifest-path "$REPO_ROOT/Cargo.toml" >&2 </dev/null ||
                die "could not build examples/wanproxy.rs"
        fi
    fi
    [[ -x $WANPROXY_BIN ]] || die "wan proxy not found or not executable: $WANPROXY_BIN"
    WANPROXY_BIN=$(readlink -f "$WANPROXY_BIN")
fi

# ---------------------------------------------------------------------------
# Cleanup. Everything the script starts or creates is recorded here so that
# any exit path (success, error, Ctrl-C) leaves nothing behind.
# ---------------------------------------------------------------------------
WORK=
FTS_PID=
SSHD_PID=
RSYNCD_PID=
WAN_FTS_PID=
WAN_SSH_PID=
GARAGE_PID=
S3_FTS_PID=
CHILD_PID=
CREATED_RUN_SSHD=

stop_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        # fts gives in-flight transfers a grace period; don't hang on it.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_pid "$CHILD_PID"
    stop_pid "$FTS_PID"
    stop_pid "$RSYNCD_PID"
    stop_pid "$WAN_FTS_PID"
    stop_pid "$WAN_SSH_PID"
    stop_pid "$S3_FTS_PID"
    stop_pid "$GARAGE_PID"
    stop_pid "$SSHD_PID"
    [[ -n $CREATED_RUN_SSHD ]] && rmdir /run/sshd 2>/dev/null
    [[ -n $WORK && -d $WORK ]] && rm -rf -- "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------
# No pipes into early-exiting readers (grep -q, head) in this script: under
# pipefail the writer's SIGPIPE would turn into a spurious failure.
pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == 'install ok installed' ]]
}

install_deps() {
    local pkgs=() p
    for p in rsync openssh-server openssh-client; do
        pkg_installed "$p" || pkgs+=("$p")
    done
    if want s3 && ! command -v rclone >/dev/null; then pkgs+=(rclone); fi
    ((${#pkgs[@]})) || return 0
    log "installing: ${pkgs[*]}"
    # Installing openssh-server would otherwise start (and keep running) a
    # system sshd on port 22; policy-rc.d exit 101 tells invoke-rc.d not to.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local ok=1
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2 || ok=
    [[ -n $made_policy ]] && rm -f "$policy"
    [[ -n $ok ]] || die "apt-get install failed"
}
install_deps

SSHD=$(command -v sshd || echo /usr/sbin/sshd)
[[ -x $SSHD ]] || die "sshd not found after install"

# ---------------------------------------------------------------------------
# Work area. A private HOME keeps fts's known_hosts and server certificate
# (and nothing else) away from the user's real ones; XDG_* and FTS_* would
# override HOME or change server behaviour, so they go too.
# ---------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fts-bench.XXXXXX")
# rsync -e takes a single string that it splits on whitespace itself.
[[ $WORK != *[[:space:]]* ]] || die "temporary directory path contains whitespace: $WORK"
REAL_HOME=$HOME
export HOME=$WORK/home
unset XDG_CONFIG_HOME XDG_STATE_HOME XDG_DATA_HOME XDG_CACHE_HOME
unset FTS_PASSWORD FTS_ADMIN_PASSWORD SSH_AUTH_SOCK
mkdir -p "$HOME" "$WORK"/{bin,srv,ssh,out}

# Run a private copy of the binary, so that a rebuild during the benchmark
# (cargo replaces target/*/fts) cannot mix two versions in one report.
FTS_ORIG=$FTS_BIN
cp "$FTS_ORIG" "$WORK/bin/fts"
FTS_BIN=$WORK/bin/fts
if want wan || want parallel; then
    WANPROXY_ORIG=$WANPROXY_BIN
    cp "$WANPROXY_BIN" "$WORK/bin/wanproxy"
    WANPROXY_BIN=$WORK/bin/wanproxy
fi

SIZE_BYTES=$((SIZE_MB * 1024 * 1024))
SMALL_SIZE=4096

# Every section deletes its files when it is done, so the peak is the
# largest single section: copy keeps the source and one copy (the server's
# copy is a hard link); delta keeps the old version, the edited source, one
# basis per receiver and a receiver's temporary file; compress keeps the log
# and up to two copies; smallfiles keeps the tree and one copy per tool.
need_kb=0
peak() { (($1 > need_kb)) && need_kb=$1; return 0; }
if want copy; then peak $((SIZE_MB * 1024 * 2)); fi
if want delta; then peak $((SIZE_MB * 1024 * 5)); fi
if want compress; then peak $((SIZE_MB * 1024 * 3)); fi
if want smallfiles; then peak $(((SMALL_FILES + SMALL_FILES / 100 + 1) * 4 * 4)); fi
# manyfiles: the largest tree and two copies, 4 KiB of blocks per file.
if want manyfiles; then
    for n in $MANY_COUNTS; do peak $(((n + n / 100 + 1) * 4 * 3)); done
fi
if want parallel; then peak $((PAR_FILES * PAR_MB * 1024 * 3)); fi
# s3: the file, one copy per run and tool in Garage, one download; the tree three times.
if want s3; then peak $((S3_MB * 1024 * (2 * RUNS + 2) + S3_FILES * 4 * 4)); fi
# wan keeps all its data at once: the tree and two copies, the delta
# file's old and new version and two receivers (+ a temporary file), the
# upload and two copies.
if want wan; then peak $(((WAN_FILES + WAN_FILES / 100 + 1) * 4 * 3 + WAN_DELTA_MB * 1024 * 5 + WAN_UPLOAD_MB * 1024 * 3)); fi
need_kb=$((need_kb + 65536))
avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
((avail_kb > need_kb)) || die "not enough space in $WORK: need ~$((need_kb / 1024)) MiB, have $((avail_kb / 1024)) MiB"
# tmpfs runs out of inodes too (by default one per two pages of RAM): the
# largest manyfiles tree and its two copies take one per file and directory
# (a 1,000,000-file row needs 3.03 million).
need_inodes=0
if want manyfiles; then
    for n in $MANY_COUNTS; do
        (((n + n / 100 + 1) * 3 > need_inodes)) && need_inodes=$(((n + n / 100 + 1) * 3))
    done
fi
avail_inodes=$(df -Pi "$WORK" | awk 'NR == 2 { print $4 }')
# Some filesystems (btrfs) have no fixed inode count and report none.
if [[ $avail_inodes =~ ^[0-9]+$ ]] && ((avail_inodes > 0 && avail_inodes < need_inodes + 10000)); then
    die "not enough inodes in $WORK: need ~$need_inodes, have $avail_inodes (on tmpfs: mount -o remount,nr_inodes=... or fewer MANY_COUNTS)"
fi

# ---------------------------------------------------------------------------
# Throwaway sshd: own host key, own user key, own config, loopback only.
# ---------------------------------------------------------------------------
SSH_DIR=$WORK/ssh
ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/user_key"
cp "$SSH_DIR/user_key.pub" "$SSH_DIR/authorized_keys"

# scp in OpenSSH >= 9.0 speaks SFTP, so the sftp subsystem must exist; use
# the same external server a stock Debian sshd_config uses when available.
SFTP_SERVER=internal-sftp
[[ -x /usr/lib/openssh/sftp-server ]] && SFTP_SERVER=/usr/lib/openssh/sftp-server

cat >"$SSH_DIR/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSH_DIR/host_key
AuthorizedKeysFile $SSH_DIR/authorized_keys
PidFile $SSH_DIR/sshd.pid
PermitRootLogin yes
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp $SFTP_SERVER
EOF

# sshd refuses to start without its privilege separation directory, which a
# freshly installed package in a container may not have created.
if [[ ! -d /run/sshd ]]; then
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    CREATED_RUN_SSHD=1
fi

"$SSHD" -t -f "$SSH_DIR/sshd_config" || die "sshd rejected the generated config"
log "starting sshd on 127.0.0.1:$SSH_PORT"
# -D keeps sshd in the foreground, so $! is the listener itself.
"$SSHD" -D -f "$SSH_DIR/sshd_config" -E "$SSH_DIR/sshd.log" </dev/null &
SSHD_PID=$!

# -F /dev/null: neither /etc/ssh/ssh_config nor ~/.ssh/config may change what
# is measured; IdentitiesOnly keeps stray keys out of the handshake.
SSH_OPTS=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes
    -i "$SSH_DIR/user_key")
SSH_CMD=(ssh "${SSH_OPTS[@]}" -p "$SSH_PORT")
RSYNC_RSH=${SSH_CMD[*]}
SSH_HOST=root@127.0.0.1

# An rsync -e string whose ssh logs at VERBOSE into $1. At exit the ssh
# client then logs "Transferred: sent N, received M bytes": the bytes on its
# TCP socket (handshake, encryption and MAC included), which is what fts's
# wire_bytes_* count for TLS. ssh takes the first value given for an option,
# so this LogLevel wins over the one in SSH_OPTS.
# $2: the port to connect to (default SSH_PORT; the wan section's proxy).
rsh_logged() {
    printf 'ssh -o LogLevel=VERBOSE -E %s %s -p %s' "$1" "${SSH_OPTS[*]}" "${2:-$SSH_PORT}"
}

ssh_ok=
for _ in $(seq 100); do
    kill -0 "$SSHD_PID" 2>/dev/null || break
    if "${SSH_CMD[@]}" "$SSH_HOST" true </dev/null 2>/dev/null; then
        ssh_ok=1
        break
    fi
    sleep 0.1
done
if [[ -z $ssh_ok ]]; then
    cat "$SSH_DIR/sshd.log" >&2 2>/dev/null
    die "could not log in to the throwaway sshd (port $SSH_PORT in use? root password locked with '!' and UsePAM no?)"
fi

# ---------------------------------------------------------------------------
# fts server on a free port; its first stdout line announces port and
# certificate fingerprint.
# ---------------------------------------------------------------------------
log "starting fts serve ($FTS_BIN)"
"$FTS_BIN" serve "$WORK/srv" --listen 127.0.0.1:0 --json "${NO_FSYNC[@]}" \
    >"$WORK/out/serve.log" 2>"$WORK/out/serve.err" </dev/null &
FTS_PID=$!

first=
for _ in $(seq 100); do
    first=$(head -n 1 "$WORK/out/serve.log" 2>/dev/null || true)
    [[ -n $first ]] && break
    kill -0 "$FTS_PID" 2>/dev/null || break
    sleep 0.1
done
[[ $first == *'"event":"listening"'* ]] || {
    cat "$WORK/out/serve.err" >&2
    die "fts serve did not announce a listening address"
}
FTS_ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' <<<"$first")
FTS_FP=$(sed -n 's/.*"fingerprint":"\([^"]*\)".*/\1/p' <<<"$first")
[[ -n $FTS_ADDR && -n $FTS_FP ]] || die "could not parse fts serve announcement: $first"
log "fts listening on $FTS_ADDR ($FTS_FP)"

# Pin the fingerprint explicitly rather than relying on trust-on-first-use,
# so every fts run does the same work.
FTS_CLIENT=("$FTS_BIN" --json --fingerprint "$FTS_FP")

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# After a failed command: say which of the servers are gone, with their exit
# status and last words, so that a crashed server is not mistaken for a
# client error. Each one that is gone is reaped and forgotten.
server_health() {
    local rc
    if [[ -n $FTS_PID ]] && ! kill -0 "$FTS_PID" 2>/dev/null; then
        rc=0
        wait "$FTS_PID" 2>/dev/null || rc=$?
        log "fts serve (pid $FTS_PID) is gone, exit status $rc; last lines of its stderr and stdout:"
        tail -n 20 "$WORK/out/serve.err" >&2
        tail -n 5 "$WORK/out/serve.log" >&2
        FTS_PID=
    fi
    if [[ -n $SSHD_PID ]] && ! kill -0 "$SSHD_PID" 2>/dev/null; then
        rc=0
        wait "$SSHD_PID" 2>/dev/null || rc=$?
        log "sshd (pid $SSHD_PID) is gone, exit status $rc"
        tail -n 20 "$SSH_DIR/sshd.log" >&2
        SSHD_PID=
    fi
    if [[ -n $RSYNCD_PID ]] && ! kill -0 "$RSYNCD_PID" 2>/dev/null; then
        rc=0
        wait "$RSYNCD_PID" 2>/dev/null || rc=$?
        log "rsync daemon (pid $RSYNCD_PID) is gone, exit status $rc"
        tail -n 20 "$WORK/rsyncd/rsyncd.log" >&2
        RSYNCD_PID=
    fi
    if [[ -n $WAN_FTS_PID ]] && ! kill -0 "$WAN_FTS_PID" 2>/dev/null; then
        rc=0
        wait "$WAN_FTS_PID" 2>/dev/null || rc=$?
        log "wan proxy for fts (pid $WAN_FTS_PID) is gone, exit status $rc"
        tail -n 20 "$WORK/out/wanproxy-fts.err" >&2
        WAN_FTS_PID=
    fi
    if [[ -n $WAN_SSH_PID ]] && ! kill -0 "$WAN_SSH_PID" 2>/dev/null; then
        rc=0
        wait "$WAN_SSH_PID" 2>/dev/null || rc=$?
        log "wan proxy for sshd (pid $WAN_SSH_PID) is gone, exit status $rc"
        tail -n 20 "$WORK/out/wanproxy-ssh.err" >&2
        WAN_SSH_PID=
    fi
    return 0
}

# Runs "$@" and sets ELAPSED to its wall time in seconds. Not meant for
# $(...): the command must be a child of the main shell, running in the
# background, so that a signal interrupts the wait and the cleanup trap can
# stop it instead of waiting for a long copy to finish (or orphaning it).
# A failed command ends the script, unless TIMED_SOFT is set: then TIMED_RC
# is its exit status and ELAPSED its time (TIMED_RC is 0 on success).
timed() {
    local out=$1 err=$2 t0 t1 rc=0
    shift 2
    t0=$(date +%s.%N)
    "$@" >"$out" 2>"$err" </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    t1=$(date +%s.%N)
    CHILD_PID=
    ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    TIMED_RC=$rc
    if ((rc != 0)); then
        cat "$err" >&2
        server_health
        [[ -n ${TIMED_SOFT:-} ]] && return 0
        die "command failed (exit $rc): $(shell_quote "$@")"
    fi
}

# Quotes for copy-and-paste into a shell, readably: plain words stay bare,
# anything else goes in single quotes.
shell_quote() {
    local a out=() sq="'" esc="'\\''"
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=("$a")
        else
            out+=("'${a//"$sq"/"$esc"}'")
        fi
    done
    echo "${out[*]}"
}

# Median of a space-separated list of numbers, printed with format $2.
median() {
    local fmt=${2:-%.3f}
    tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v fmt="$fmt" '
        { v[NR] = $1 }
        END { if (NR % 2) printf fmt, v[(NR + 1) / 2]
              else printf fmt, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Appends value $3 to the space-separated sample list under key $2 of the
# associative array named $1.
add_sample() {
    local -n _arr=$1
    _arr[$2]="${_arr[$2]:-} $3"
}

# Readers of the numbers the tools print. They set NUM (no $(...), so that
# die really ends the script) and fail loudly on missing fields.
#   fts --json:     "field":123
#   rsync --stats:  "Label: 1,234 bytes"
#   ssh -E log:     "Transferred: sent 123, received 456 bytes"
json_num() {
    NUM=$(sed -n "s/.*\"$2\":\([0-9][0-9]*\).*/\1/p" "$1")
    is_uint "$NUM" || die "no numeric \"$2\" in fts output $1: $(cat "$1")"
}
fts_wire() {
    local s
    json_num "$1" wire_bytes_sent
    s=$NUM
    json_num "$1" wire_bytes_received
    NUM=$((s + NUM))
}
rsync_stat() {
    NUM=$(sed -n "s/^$2: \([0-9,][0-9,]*\).*/\1/p" "$1")
    NUM=${NUM//,/}
    is_uint "$NUM" || die "no \"$2\" in rsync --stats output $1: $(cat "$1")"
}
rsync_wire() {
    local s
    rsync_stat "$1" 'Total bytes sent'
    s=$NUM
    rsync_stat "$1" 'Total bytes received'
    NUM=$((s + NUM))
}
ssh_socket() {
    local pair
    pair=$(sed -n 's/.*Transferred: sent \([0-9]*\), received \([0-9]*\) bytes.*/\1 \2/p' "$1")
    [[ $pair =~ ^([0-9]+)\ ([0-9]+)$ ]] || die "no 'Transferred:' line in ssh log $1: $(cat "$1")"
    NUM=$((BASH_REMATCH[1] + BASH_REMATCH[2]))
}

# Directory listing with path, size, mode and mtime (ns) of everything,
# the top directory included: two trees with equal listings and `diff -r`
# clean are identical as far as rsync -a's quick check can tell.
tree_listing() {
    (cd "$1" && find . -printf '%P %y %s %m %T@\n' | LC_ALL=C sort) >"$2"
}

check_tree() {
    local what=$1 src=$2 dest=$3
    tree_listing "$src" "$WORK/out/list.src"
    tree_listing "$dest" "$WORK/out/list.dst"
    cmp -s "$WORK/out/list.src" "$WORK/out/list.dst" || {
        diff "$WORK/out/list.src" "$WORK/out/list.dst" | sed -n 1,20p >&2 || true
        die "$what: tree listing (names, sizes, modes, mtimes) differs from source ($dest)"
    }
    diff -r -q "$src" "$dest" >&2 || die "$what: tree content differs from source ($dest)"
}

# Markdown table row helpers: integer with thousands separators, ratio.
fmt_int() {
    local s=$1 grouped=
    while ((${#s} > 3)); do
        grouped=,${s: -3}$grouped
        s=${s:0:${#s}-3}
    done
    printf '%s%s' "$s" "$grouped"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
is_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
is_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
verdict() { if "$@"; then printf 'met'; else printf '**not met**'; fi; }

# Writes a "Samples" and a "Commands" list for the given keys, from the
# calling section's TIMES and CMDLINE arrays (bash scoping is dynamic).
print_samples_and_commands() {
    local key
    echo
    echo "Samples (s):"
    echo
    for key in "$@"; do
        echo "- $key:${TIMES[$key]:-}"
    done
    echo
    echo "Commands (last run; temporary paths are removed on exit):"
    echo
    echo '```'
    for key in "$@"; do
        [[ -n ${CMDLINE[$key]:-} ]] || continue
        echo "# $key"
        echo "${CMDLINE[$key]}"
    done
    echo '```'
}

# ---------------------------------------------------------------------------
# Section: copy. One large random file, upload and download, full copies.
# ---------------------------------------------------------------------------
section_copy() {
    local SRC=$WORK/copy/data.bin
    local -A TIMES=() CMDLINE=() DEST=() MED=() RC=() RS=()
    local OPS=(upload download) TOOLS=(fts scp rsync cp)
    local run op tool key outf json m f keys=()

    mkdir -p "$WORK/copy"
    log "copy: creating ${SIZE_MB} MiB random file"
    head -c "$SIZE_BYTES" /dev/urandom >"$SRC"
    # Downloads of all tools read this very inode, so they share one warm cache.
    ln "$SRC" "$WORK/srv/data.bin"
    # Page-cache-warm source: the comparison is about the transfer, not the disk.
    cat "$SRC" >/dev/null

    # The command for one (operation, tool) pair, as an array in CMD.
    set_cmd() {
        case "$1:$2" in
        upload:fts) CMD=("${FTS_CLIENT[@]}" put "$SRC" "fts://$FTS_ADDR/up/") ;;
        upload:scp) CMD=(scp -q "${SSH_OPTS[@]}" -P "$SSH_PORT" "$SRC" "$SSH_HOST:$WORK/sshdst/") ;;
        upload:rsync) CMD=(rsync -a --whole-file -e "$RSYNC_RSH" "$SRC" "$SSH_HOST:$WORK/sshdst/") ;;
        download:fts) CMD=("${FTS_CLIENT[@]}" get "${NO_FSYNC[@]}" "fts://$FTS_ADDR/data.bin" "$WORK/dl/data.bin") ;;
        download:scp) CMD=(scp -q "${SSH_OPTS[@]}" -P "$SSH_PORT" "$SSH_HOST:$WORK/srv/data.bin" "$WORK/dl/data.bin") ;;
        download:rsync) CMD=(rsync -a --whole-file -e "$RSYNC_RSH" "$SSH_HOST:$WORK/srv/data.bin" "$WORK/dl/data.bin") ;;
        upload:cp) CMD=(cp "$SRC" "$WORK/cpdst/") ;;
        download:cp) CMD=(cp "$WORK/srv/data.bin" "$WORK/dl/data.bin") ;;
        esac
    }

    dest_of() {
        case "$1:$2" in
        upload:fts) echo "$WORK/srv/up/data.bin" ;;
        upload:cp) echo "$WORK/cpdst/data.bin" ;;
        upload:*) echo "$WORK/sshdst/data.bin" ;;
        download:*) echo "$WORK/dl/data.bin" ;;
        esac
    }

    # Removes the destination (and any leftover temp/partial files beside
    # it) so the next run is a full copy: rsync must not find a basis file.
    drop_dest() {
        rm -rf -- "$WORK/srv/up" "$WORK/sshdst" "$WORK/dl" "$WORK/cpdst"
        mkdir -p "$WORK/srv/up" "$WORK/sshdst" "$WORK/dl" "$WORK/cpdst"
    }

    check_copy() {
        local what=$1 dest=$2 json=$3
        cmp -s "$SRC" "$dest" || die "$what: copy differs from source ($dest)"
        if [[ -n $json ]]; then
            json_num "$json" bytes_transferred
            ((NUM == SIZE_BYTES)) ||
                die "$what: fts reported unexpected bytes_transferred: $(cat "$json")"
        fi
    }

    for ((run = 1; run <= RUNS; run++)); do
        for op in "${OPS[@]}"; do
            # Tools alternate within each run, so drift on a shared machine
            # hits all of them alike instead of whichever happens to run last.
            for tool in "${TOOLS[@]}"; do
                key=$op:$tool
                set_cmd "$op" "$tool"
                CMDLINE[$key]=$(shell_quote "${CMD[@]}")
                DEST[$key]=$(dest_of "$op" "$tool")
                drop_dest
                # Flush earlier copies' dirty pages now, so their writeback is
                # not billed to this run.
                sync
                outf=$WORK/out/copy-$op-$tool-$run.out
                # Peak memory: the local side from /usr/bin/time, fts serve's
                # from its VmHWM (reset first, so the peak is this copy's).
                rm -f -- "$WORK/out/rss.client"
                if [[ -x /usr/bin/time ]]; then
                    CMD=(/usr/bin/time -f %M -o "$WORK/out/rss.client" "${CMD[@]}")
                fi
                [[ $tool == fts ]] && reset_peak_rss "$FTS_PID"
                timed "$outf" "$WORK/out/copy-$op-$tool-$run.err" "${CMD[@]}"
                [[ -s $WORK/out/rss.client ]] && add_sample RC "$key" "$(tail -n 1 "$WORK/out/rss.client")"
                [[ $tool == fts ]] && add_sample RS "$key" "$(peak_rss_of "$FTS_PID")"
                json=
                [[ $tool == fts ]] && json=$outf
                check_copy "copy $key run $run" "${DEST[$key]}" "$json"
                add_sample TIMES "$key" "$ELAPSED"
                log "copy: run $run/$RUNS  $op  $tool  ${ELAPSED}s"
            done
        done
    done
    rm -rf -- "$WORK/srv/up" "$WORK/sshdst" "$WORK/dl" "$WORK/cpdst" "$WORK/srv/data.bin" "$WORK/copy"

    for op in "${OPS[@]}"; do
        for tool in "${TOOLS[@]}"; do
            MED[$op:$tool]=$(median "${TIMES[$op:$tool]}")
            keys+=("$op:$tool")
        done
    done

    echo "## copy: one large file, full upload and download"
    echo
    echo "${SIZE_MB} MiB ($SIZE_BYTES bytes) from /dev/urandom (incompressible), page-cache warm;"
    echo "destination deleted before every copy; rsync with \`--whole-file\`; cp: a local"
    echo "copy on the same filesystem, the floor."
    echo
    echo "| operation | tool | median s | MB/s | ratio vs fts | client MiB | server MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    local rc rs
    for op in "${OPS[@]}"; do
        for tool in "${TOOLS[@]}"; do
            m=${MED[$op:$tool]}
            f=${MED[$op:fts]}
            rc=—
            rs=—
            [[ -n ${RC[$op:$tool]:-} ]] && rc=$(awk -v k="$(median "${RC[$op:$tool]}" %.0f)" 'BEGIN { printf "%.1f", k / 1024 }')
            [[ -n ${RS[$op:$tool]:-} ]] && rs=$(awk -v k="$(median "${RS[$op:$tool]}" %.0f)" 'BEGIN { printf "%.1f", k / 1024 }')
            awk -v op="$op" -v tool="$tool" -v m="$m" -v f="$f" -v b="$SIZE_BYTES" -v rc="$rc" -v rs="$rs" 'BEGIN {
                mbs = (m > 0) ? sprintf("%.1f", b / 1e6 / m) : "inf"
                ratio = (f > 0) ? sprintf("%.2f", m / f) : "n/a"
                printf "| %s | %s | %.3f | %s | %s | %s | %s |\n", op, tool, m, mbs, ratio, rc, rs
            }'
        done
    done
    echo
    echo "MB = 10^6 bytes. ratio = tool time / fts time for the same operation (> 1: fts is faster)."
    echo "client MiB: peak RSS of the command run here (/usr/bin/time); server MiB: fts serve's"
    echo "peak RSS during the copy (VmHWM, reset before it); — where not measured."
    print_samples_and_commands "${keys[@]}"
    echo
}

# ---------------------------------------------------------------------------
# Section: delta. Both receivers hold the old version of a large random
# file; the sender's copy differs in 3 × 10 bytes.
# ---------------------------------------------------------------------------
section_delta() {
    local d=$WORK/delta
    local pristine=$d/pristine.bin src=$d/src/data.bin
    local -A TIMES=() WIRE=() SOCK=() LIT=() MAT=() CMDLINE=() DEST=()
    local TOOLS=(fts fts-no-delta rsync)
    local run tool k off ndiff outf errf sshlog rsh destdir wire offsets=() keys=()

    mkdir -p "$d/src"
    log "delta: creating ${SIZE_MB} MiB random file"
    head -c "$SIZE_BYTES" /dev/urandom >"$pristine"
    # The old version is a day old and the edited source is from now, so
    # rsync's quick check (size + mtime) cannot mistake them for equal.
    touch -d "@$(($(date +%s) - 86400))" "$pristine"
    cp -p "$pristine" "$src"
    # Three 10-byte edits at 1/6, 3/6 and 5/6 of the file, deliberately not
    # on any power-of-two block boundary.
    for k in 1 3 5; do
        off=$((SIZE_BYTES * k / 6 + 1234))
        printf 'EDIT%06d' "$k" | dd of="$src" bs=1 seek="$off" conv=notrunc status=none
        offsets+=("$off")
    done
    [[ $(stat -c %s "$src") == "$SIZE_BYTES" ]] || die "delta: edit changed the file size"
    ndiff=$( (cmp -l "$pristine" "$src" || true) | wc -l)
    ((ndiff > 0 && ndiff <= 30)) || die "delta: expected 1..30 changed bytes, found $ndiff"
    cat "$src" >/dev/null

    dest_of() {
        case $1 in
        fts*) echo "$WORK/srv/delta" ;;
        rsync) echo "$d/sshdst" ;;
        esac
    }

    for ((run = 1; run <= RUNS; run++)); do
        for tool in "${TOOLS[@]}"; do
            outf=$WORK/out/delta-$tool-$run.out
            errf=$WORK/out/delta-$tool-$run.err
            sshlog=$WORK/out/delta-$tool-$run.ssh.log
            case $tool in
            fts) CMD=("${FTS_CLIENT[@]}" put "$src" "fts://$FTS_ADDR/delta/") ;;
            fts-no-delta) CMD=("${FTS_CLIENT[@]}" put --no-delta "$src" "fts://$FTS_ADDR/delta/") ;;
            rsync)
                rsh=$(rsh_logged "$sshlog")
                CMD=(rsync -a --no-whole-file --stats -e "$rsh" "$src" "$SSH_HOST:$d/sshdst/")
                ;;
            esac
            CMDLINE[$tool]=$(shell_quote "${CMD[@]}")
            # Restore the old version on this receiver (untimed), dropping any
            # temp file a previous run left beside it.
            destdir=$(dest_of "$tool")
            DEST[$tool]=$destdir/data.bin
            rm -rf -- "$destdir"
            mkdir -p "$destdir"
            cp -p "$pristine" "$destdir/data.bin"
            rm -f -- "$sshlog"
            sync
            timed "$outf" "$errf" "${CMD[@]}"
            cmp -s "$src" "${DEST[$tool]}" || die "delta $tool run $run: result differs from source"
            add_sample TIMES "$tool" "$ELAPSED"
            if [[ $tool == fts* ]]; then
                json_num "$outf" files_transferred
                ((NUM == 1)) || die "delta $tool run $run: expected 1 file transferred: $(cat "$outf")"
                fts_wire "$outf"
                wire=$NUM
                add_sample WIRE "$tool" "$NUM"
                add_sample SOCK "$tool" "$NUM"
                json_num "$outf" literal_bytes
                add_sample LIT "$tool" "$NUM"
                json_num "$outf" matched_bytes
                add_sample MAT "$tool" "$NUM"
                if [[ $tool == fts ]] && ((NUM == 0)); then
                    log "delta: WARNING: fts run $run matched 0 bytes (no delta used?)"
                fi
            else
                rsync_wire "$outf"
                wire=$NUM
                add_sample WIRE "$tool" "$NUM"
                ssh_socket "$sshlog"
                add_sample SOCK "$tool" "$NUM"
                rsync_stat "$outf" 'Literal data'
                add_sample LIT "$tool" "$NUM"
                rsync_stat "$outf" 'Matched data'
                add_sample MAT "$tool" "$NUM"
                ((NUM > 0)) || log "delta: WARNING: rsync run $run matched 0 bytes (no delta used?)"
            fi
            log "delta: run $run/$RUNS  $tool  ${ELAPSED}s  wire ${wire} B"
        done
    done
    rm -rf -- "$d" "$WORK/srv/delta"

    local -A M=()
    for tool in "${TOOLS[@]}"; do
        M[t:$tool]=$(median "${TIMES[$tool]}")
        M[w:$tool]=$(median "${WIRE[$tool]}" %.0f)
        M[s:$tool]=$(median "${SOCK[$tool]}" %.0f)
        M[l:$tool]=$(median "${LIT[$tool]}" %.0f)
        M[m:$tool]=$(median "${MAT[$tool]}" %.0f)
        keys+=("$tool")
    done

    echo "## delta: 3 × 10 bytes changed in a ${SIZE_MB} MiB file"
    echo
    echo "Both receivers hold the old version (restored, untimed, before every run);"
    echo "the sender's file differs at offsets ${offsets[*]}. fts: \`fts put\` (delta is"
    echo "the default); rsync: \`rsync -a --no-whole-file --stats\` over ssh."
    echo
    echo "| tool | median s | wire bytes | socket bytes | literal | matched | time ÷ fts | wire ÷ fts | socket ÷ fts |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for tool in "${TOOLS[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$tool" "${M[t:$tool]}" \
            "$(fmt_int "${M[w:$tool]}")" "$(fmt_int "${M[s:$tool]}")" \
            "$(fmt_int "${M[l:$tool]}")" "$(fmt_int "${M[m:$tool]}")" \
            "$(ratio "${M[t:$tool]}" "${M[t:fts]}")" "$(ratio "${M[w:$tool]}" "${M[w:fts]}")" \
            "$(ratio "${M[s:$tool]}" "${M[s:fts]}")"
    done
    echo
    echo "wire bytes, both directions: fts \`wire_bytes_sent + wire_bytes_received\` (TLS bytes"
    echo "on its socket); rsync \`Total bytes sent + Total bytes received\` from \`--stats\` (rsync"
    echo "protocol bytes, before ssh adds encryption, MAC and its handshake). socket bytes: the"
    echo "same for fts; for rsync ssh's own count (\`Transferred: sent …, received …\` at"
    echo "LogLevel VERBOSE). fts-no-delta (\`--no-delta\`) is a reference, not a target."
    echo
    echo "Targets:"
    echo
    echo "- fts wire bytes ≤ rsync's: $(fmt_int "${M[w:fts]}") vs $(fmt_int "${M[w:rsync]}") (--stats) — $(verdict is_le "${M[w:fts]}" "${M[w:rsync]}");" \
        "vs ssh socket $(fmt_int "${M[s:rsync]}") — $(verdict is_le "${M[s:fts]}" "${M[s:rsync]}")"
    echo "- fts time ≤ ½ rsync's: ${M[t:fts]} s vs ${M[t:rsync]} s — $(verdict is_le "$(awk -v a="${M[t:fts]}" 'BEGIN { print 2 * a }')" "${M[t:rsync]}")"
    print_samples_and_commands "${keys[@]}"
    echo
}

# ---------------------------------------------------------------------------
# Section: smallfiles. A tree of SMALL_FILES random 4 KiB files, 100 per
# directory: first copy into an empty destination, then the same again with
# nothing changed.
# ---------------------------------------------------------------------------
start_rsyncd() {
    local r=$WORK/rsyncd
    mkdir -p "$r/mod"
    cat >"$r/rsyncd.conf" <<EOF
use chroot = no
lock file = $r/rsyncd.lock
log file = $r/rsyncd.log

[bench]
    path = $r/mod
    read only = no
    uid = root
    gid = root
EOF
    log "starting rsync daemon on 127.0.0.1:$RSYNCD_PORT"
    # --no-detach keeps the daemon in the foreground, so $! is the listener.
    rsync --daemon --no-detach --config="$r/rsyncd.conf" --address=127.0.0.1 \
        --port="$RSYNCD_PORT" </dev/null >"$r/daemon.out" 2>&1 &
    RSYNCD_PID=$!
    for _ in $(seq 100); do
        kill -0 "$RSYNCD_PID" 2>/dev/null || break
        if rsync "rsync://127.0.0.1:$RSYNCD_PORT/" </dev/null >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    cat "$r/daemon.out" "$r/rsyncd.log" >&2 2>/dev/null
    die "rsync daemon did not come up on 127.0.0.1:$RSYNCD_PORT (port in use? set RSYNCD_PORT, or RSYNCD=0 to skip it)"
}

# make_small_tree DIR COUNT SECTION: COUNT random SMALL_SIZE-byte files,
# 100 per directory (DIR/d000/f000 …), checked by count.
make_small_tree() {
    local tree=$1 count=$2 section=$3 ndirs left i n dir
    ndirs=$(((count + 99) / 100))
    left=$count
    for ((i = 0; i < ndirs; i++)); do
        n=$((left < 100 ? left : 100))
        left=$((left - n))
        printf -v dir '%s/d%03d' "$tree" "$i"
        mkdir -p "$dir"
        head -c $((n * SMALL_SIZE)) /dev/urandom | split -b "$SMALL_SIZE" -a 3 -d - "$dir/f"
    done
    n=$(find "$tree" -type f | wc -l)
    ((n == count)) || die "$section: created $n files, expected $count"
}

section_smallfiles() {
    local tree=$WORK/tree
    local -A TIMES=() WIRE=() SOCK=() CMDLINE=()
    local TOOLS=(fts rsync) PHASES=(first second)
    local ndirs i n left dir run tool phase key outf sshlog rsh dest keys=()

    if [[ $RSYNCD == 1 ]]; then
        TOOLS+=(rsyncd)
        start_rsyncd
    fi

    log "smallfiles: creating $SMALL_FILES files of $SMALL_SIZE bytes"
    make_small_tree "$tree" "$SMALL_FILES" smallfiles
    ndirs=$(((SMALL_FILES + 99) / 100))
    # Warm the cache for the source tree (data and metadata).
    find "$tree" -type f -exec cat {} + >/dev/null

    dest_of() {
        case $1 in
        fts) echo "$WORK/srv/tree" ;;
        rsync) echo "$WORK/sshtree" ;;
        rsyncd) echo "$WORK/rsyncd/mod/tree" ;;
        esac
    }

    for ((run = 1; run <= RUNS; run++)); do
        for tool in "${TOOLS[@]}"; do
            dest=$(dest_of "$tool")
            # The first copy goes into a destination that does not exist.
            rm -rf -- "$dest"
            sync
            for phase in "${PHASES[@]}"; do
                key=$phase:$tool
                outf=$WORK/out/small-$phase-$tool-$run.out
                sshlog=$WORK/out/small-$phase-$tool-$run.ssh.log
                rm -f -- "$sshlog"
                case $tool in
                fts) CMD=("${FTS_CLIENT[@]}" sync "$tree" "fts://$FTS_ADDR/tree") ;;
                rsync)
                    rsh=$(rsh_logged "$sshlog")
                    CMD=(rsync -a --stats -e "$rsh" "$tree/" "$SSH_HOST:$dest/")
                    ;;
                rsyncd) CMD=(rsync -a --stats "$tree/" "rsync://127.0.0.1:$RSYNCD_PORT/bench/tree/") ;;
                esac
                CMDLINE[$key]=$(shell_quote "${CMD[@]}")
                timed "$outf" "$WORK/out/small-$phase-$tool-$run.err" "${CMD[@]}"
                add_sample TIMES "$key" "$ELAPSED"
                check_tree "smallfiles $key run $run" "$tree" "$dest"
                # First copy: every file sent; second: none.
                n=0
                [[ $phase == first ]] && n=$SMALL_FILES
                if [[ $tool == fts ]]; then
                    json_num "$outf" files_transferred
                    ((NUM == n)) || die "smallfiles $key run $run: fts transferred $NUM files, expected $n: $(cat "$outf")"
                    fts_wire "$outf"
                    add_sample WIRE "$key" "$NUM"
                    add_sample SOCK "$key" "$NUM"
                else
                    rsync_stat "$outf" 'Number of regular files transferred'
                    ((NUM == n)) || die "smallfiles $key run $run: rsync transferred $NUM files, expected $n"
                    rsync_wire "$outf"
                    add_sample WIRE "$key" "$NUM"
                    if [[ $tool == rsync ]]; then
                        ssh_socket "$sshlog"
                        add_sample SOCK "$key" "$NUM"
                    fi
                fi
                log "smallfiles: run $run/$RUNS  $phase  $tool  ${ELAPSED}s"
            done
            sync
        done
    done

    local -A M=()
    for phase in "${PHASES[@]}"; do
        for tool in "${TOOLS[@]}"; do
            key=$phase:$tool
            keys+=("$key")
            M[t:$key]=$(median "${TIMES[$key]}")
            M[w:$key]=$(median "${WIRE[$key]}" %.0f)
            M[s:$key]=
            if [[ -n ${SOCK[$key]:-} ]]; then M[s:$key]=$(median "${SOCK[$key]}" %.0f); fi
        done
    done
    rm -rf -- "$tree" "$WORK/srv/tree" "$WORK/sshtree" "$WORK/rsyncd/mod/tree"
    if [[ -n $RSYNCD_PID ]]; then
        stop_pid "$RSYNCD_PID"
        RSYNCD_PID=
    fi

    echo "## smallfiles: $SMALL_FILES × $SMALL_SIZE-byte files in $ndirs directories"
    echo
    echo "first: copy into an absent destination (deleted before every run); second: the same"
    echo "command again with nothing changed (quick check by size + mtime skips every file)."
    echo "fts: \`fts sync\`; rsync: \`rsync -a --stats\` over ssh; rsyncd: the same against an"
    echo "rsync daemon on loopback (no ssh, no encryption)."
    echo
    echo "| phase | tool | median s | files/s | wire bytes | socket bytes | time ÷ fts | wire ÷ fts |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    local sock
    for phase in "${PHASES[@]}"; do
        for tool in "${TOOLS[@]}"; do
            key=$phase:$tool
            sock='—'
            if [[ -n ${M[s:$key]} ]]; then sock=$(fmt_int "${M[s:$key]}"); fi
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$phase" "$tool" "${M[t:$key]}" \
                "$(awk -v n="$SMALL_FILES" -v t="${M[t:$key]}" 'BEGIN { if (t > 0) printf "%.0f", n / t; else printf "inf" }')" \
                "$(fmt_int "${M[w:$key]}")" "$sock" \
                "$(ratio "${M[t:$key]}" "${M[t:$phase:fts]}")" "$(ratio "${M[w:$key]}" "${M[w:$phase:fts]}")"
        done
    done
    echo
    echo "files/s = files in the tree / time (for second: files checked). wire and socket"
    echo "bytes as in the delta section; for rsyncd, wire bytes are rsync's \`--stats\` count"
    echo "(there is no ssh). Trees are checked after every run: \`diff -r\` plus names,"
    echo "types, sizes, modes and mtimes (ns) of every entry."
    print_samples_and_commands "${keys[@]}"
    echo
}

# ---------------------------------------------------------------------------
# Section: compress. Fresh upload of a large, compressible log file.
# ---------------------------------------------------------------------------

# Writes about $2 bytes of web-service log lines (whole lines, at most $2)
# to $1: ms timestamps, levels, hosts, services, request ids, client IPs,
# methods, paths with ids, status codes, durations, sizes and error texts,
# all drawn at random, so it compresses like a real log, not like one
# repeated line.
make_log() {
    awk -v target="$2" -v seed="$RANDOM" '
    BEGIN {
        srand(seed)
        split("GET GET GET GET POST POST PUT DELETE PATCH HEAD", meth, " ")
        split("/api/v1/users /api/v1/orders /api/v1/items /api/v2/search /static/js/app.js /static/css/site.css /healthz /login /logout /api/v1/cart /api/v1/payments /metrics", path, " ")
        split("web-1 web-2 web-3 api-1 api-2 worker-1", host, " ")
        split("auth orders billing search cart gateway", svc, " ")
        split("connection reset by peer|upstream timed out|invalid token|rate limit exceeded|db deadlock detected, retrying|cache miss for key", err, "|")
        hex = "0123456789abcdef"
        t = 1700000000; ms = 0; total = 0; last = -1
        for (;;) {
            ms += int(rand() * 40)
            if (ms >= 1000) { t += int(ms / 1000); ms %= 1000 }
            if (t != last) { ts = strftime("%Y-%m-%dT%H:%M:%S", t, 1); last = t }
            r = rand()
            lvl = r < 0.80 ? "INFO" : r < 0.92 ? "DEBUG" : r < 0.98 ? "WARN" : "ERROR"
            rid = ""
            for (i = 0; i < 12; i++) rid = rid substr(hex, int(rand() * 16) + 1, 1)
            p = path[int(rand() * 12) + 1]
            if (p ~ /users|orders|items/ && rand() < 0.7) p = p "/" int(rand() * 100000)
            if (lvl == "ERROR") st = 500 + int(rand() * 4)
            else if (lvl == "WARN") st = rand() < 0.5 ? 404 : 429
            else st = rand() < 0.9 ? 200 : 201 + int(rand() * 4)
            line = sprintf("%s.%03dZ %-5s [%s] %s req=%s ip=10.%d.%d.%d %s %s status=%d dur=%.1fms bytes=%d",
                ts, ms, lvl, host[int(rand() * 6) + 1], svc[int(rand() * 6) + 1], rid,
                int(rand() * 4), int(rand() * 256), int(rand() * 256),
                meth[int(rand() * 10) + 1], p, st, rand() * rand() * 2000, int(rand() * 50000))
            if (lvl == "ERROR" || lvl == "WARN") line = line " msg=\"" err[int(rand() * 6) + 1] "\""
            total += length(line) + 1
            if (total > target) break
            print line
        }
    }' >"$1"
}

section_compress() {
    local c=$WORK/compress
    local src=$c/src/app.log
    local -A TIMES=() WIRE=() SOCK=() CMDLINE=() DEST=()
    local TOOLS=(fts rsync)
    local run tool outf sshlog rsh bytes zstd_bytes negotiated=unknown keys=()

    mkdir -p "$c/src"
    log "compress: generating ${SIZE_MB} MiB of log lines"
    make_log "$src" "$SIZE_BYTES"
    bytes=$(stat -c %s "$src")
    ((bytes > 0)) || die "compress: log generator wrote nothing"
    cat "$src" >/dev/null
    # For orientation only: what plain single-stream zstd -3 makes of it.
    zstd_bytes=
    if command -v zstd >/dev/null; then
        zstd_bytes=$(zstd -3 -q -c "$src" | wc -c)
    fi

    DEST[fts]=$WORK/srv/compress
    DEST[rsync]=$c/sshdst
    for ((run = 1; run <= RUNS; run++)); do
        for tool in "${TOOLS[@]}"; do
            outf=$WORK/out/compress-$tool-$run.out
            sshlog=$WORK/out/compress-$tool-$run.ssh.log
            case $tool in
            fts) CMD=("${FTS_CLIENT[@]}" put "$src" "fts://$FTS_ADDR/compress/") ;;
            rsync)
                rsh=$(rsh_logged "$sshlog")
                # --debug=nstr prints the negotiated compressor (rsync >= 3.2
                # picks zstd when both ends have it).
                CMD=(rsync -az --stats --debug=nstr -e "$rsh" "$src" "$SSH_HOST:${DEST[rsync]}/")
                ;;
            esac
            CMDLINE[$tool]=$(shell_quote "${CMD[@]}")
            # Fresh upload: the target must not exist (no basis, no resume).
            rm -rf -- "${DEST[$tool]}" "$sshlog"
            mkdir -p "${DEST[$tool]}"
            sync
            timed "$outf" "$WORK/out/compress-$tool-$run.err" "${CMD[@]}"
            cmp -s "$src" "${DEST[$tool]}/app.log" || die "compress $tool run $run: copy differs from source"
            add_sample TIMES "$tool" "$ELAPSED"
            if [[ $tool == fts ]]; then
                json_num "$outf" bytes_transferred
                ((NUM == bytes)) || die "compress fts run $run: unexpected bytes_transferred: $(cat "$outf")"
                fts_wire "$outf"
                add_sample WIRE "$tool" "$NUM"
                add_sample SOCK "$tool" "$NUM"
            else
                rsync_wire "$outf"
                add_sample WIRE "$tool" "$NUM"
                ssh_socket "$sshlog"
                add_sample SOCK "$tool" "$NUM"
                negotiated=$(sed -n 's/^Client negotiated compress: //p' "$outf")
                negotiated=${negotiated:-unknown}
            fi
            log "compress: run $run/$RUNS  $tool  ${ELAPSED}s"
        done
    done
    rm -rf -- "$c" "$WORK/srv/compress"

    local -A M=()
    for tool in "${TOOLS[@]}"; do
        keys+=("$tool")
        M[t:$tool]=$(median "${TIMES[$tool]}")
        M[w:$tool]=$(median "${WIRE[$tool]}" %.0f)
        M[s:$tool]=$(median "${SOCK[$tool]}" %.0f)
    done

    echo "## compress: fresh upload of a ${SIZE_MB} MiB log file"
    echo
    echo "$(fmt_int "$bytes") bytes of generated web-service log lines (random ids, IPs, paths,"
    echo "durations); target absent before every run. fts: \`fts put\` (zstd, default level);"
    echo "rsync: \`rsync -az --stats\` over ssh (negotiated: $negotiated)."
    if [[ -n $zstd_bytes ]]; then
        echo "For reference, \`zstd -3\` on the whole file: $(fmt_int "$zstd_bytes") bytes."
    fi
    echo
    echo "| tool | median s | MB/s | wire bytes | socket bytes | size ÷ wire | time ÷ fts | wire ÷ fts | socket ÷ fts |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for tool in "${TOOLS[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$tool" "${M[t:$tool]}" \
            "$(awk -v b="$bytes" -v t="${M[t:$tool]}" 'BEGIN { if (t > 0) printf "%.1f", b / 1e6 / t; else printf "inf" }')" \
            "$(fmt_int "${M[w:$tool]}")" "$(fmt_int "${M[s:$tool]}")" \
            "$(ratio "$bytes" "${M[w:$tool]}")" \
            "$(ratio "${M[t:$tool]}" "${M[t:fts]}")" "$(ratio "${M[w:$tool]}" "${M[w:fts]}")" \
            "$(ratio "${M[s:$tool]}" "${M[s:fts]}")"
    done
    echo
    echo "wire and socket bytes as in the delta section."
    echo
    echo "Target:"
    echo
    echo "- fts fewer wire bytes than rsync -z: $(fmt_int "${M[w:fts]}") vs $(fmt_int "${M[w:rsync]}") (--stats) — $(verdict is_lt "${M[w:fts]}" "${M[w:rsync]}");" \
        "vs ssh socket $(fmt_int "${M[s:rsync]}") — $(verdict is_lt "${M[s:fts]}" "${M[s:rsync]}")"
    print_samples_and_commands "${keys[@]}"
    echo
}

# ---------------------------------------------------------------------------
# Section: wan. Small files, delta and a fresh upload through a simulated
# WAN link: one wanproxy (examples/wanproxy.rs) in front of fts serve and
# one in front of sshd, both with WAN_DELAY_MS one-way delay and a WAN_RATE
# cap in each direction.
# ---------------------------------------------------------------------------

# Starts a wan proxy named $1 (fts or ssh) that forwards to 127.0.0.1:$2;
# records its pid for cleanup and sets WAN_PORT to the port it listens on.
start_wanproxy() {
    local name=$1 target=$2 out=$WORK/out/wanproxy-$1.out first= pid
    shift 2
    # Further arguments go to the proxy (e.g. --conn-rate).
    "$WANPROXY_BIN" --listen 127.0.0.1:0 --target "127.0.0.1:$target" \
        --delay-ms "$WAN_DELAY_MS" --rate "$WAN_RATE" "$@" \
        >"$out" 2>"$WORK/out/wanproxy-$name.err" </dev/null &
    pid=$!
    case $name in
    fts) WAN_FTS_PID=$pid ;;
    ssh) WAN_SSH_PID=$pid ;;
    esac
    for _ in $(seq 100); do
        first=$(head -n 1 "$out" 2>/dev/null || true)
        [[ -n $first ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ $first =~ ^listening\ 127\.0\.0\.1:([0-9]+)$ ]] || {
        cat "$WORK/out/wanproxy-$name.err" >&2
        die "wan proxy ($name) did not announce its address: $first"
    }
    WAN_PORT=${BASH_REMATCH[1]}
}

# WAN_RATE in bytes per second (12.5M -> 12500000).
wan_rate_bps() {
    awk -v r="$WAN_RATE" 'BEGIN {
        m = 1; s = substr(r, length(r))
        if (s == "k" || s == "K") m = 1e3; else if (s == "M") m = 1e6; else if (s == "G") m = 1e9
        if (m > 1) r = substr(r, 1, length(r) - 1)
        printf "%.0f", r * m }'
}

section_wan() {
    local w=$WORK/wan
    local tree=$w/tree pristine=$w/pristine.bin dsrc=$w/dsrc/data.bin usrc=$w/usrc/up.bin
    local delta_bytes=$((WAN_DELTA_MB * 1024 * 1024)) up_bytes=$((WAN_UPLOAD_MB * 1024 * 1024))
    local -A TIMES=() WIRE=() SOCK=() CMDLINE=() FAILS=() FAILMSG=() SETUP=()
    local ROWS=(first second delta upload) TOOLS=(fts rsync)
    local fts_addr ssh_port rate_bps ndirs left n i k off dir run tool row key outf errf sshlog rsh dest ndiff
    local offsets=() keys=() FTS_W=("${FTS_CLIENT[@]}")
    [[ -n $WAN_FTS_TIMEOUT ]] && FTS_W+=(--timeout "$WAN_FTS_TIMEOUT")
    rate_bps=$(wan_rate_bps)

    start_wanproxy fts "${FTS_ADDR##*:}"
    fts_addr=127.0.0.1:$WAN_PORT
    start_wanproxy ssh "$SSH_PORT"
    ssh_port=$WAN_PORT
    log "wan: $WAN_DELAY_MS ms one way, $rate_bps B/s each way; fts via $fts_addr, sshd via 127.0.0.1:$ssh_port"

    log "wan: creating $WAN_FILES files of $SMALL_SIZE bytes, a ${WAN_DELTA_MB} MiB and a ${WAN_UPLOAD_MB} MiB random file"
    make_small_tree "$tree" "$WAN_FILES" wan
    # The delta file as in the delta section: the old version a day old,
    # the source with three 10-byte edits off block boundaries.
    mkdir -p "$w/dsrc" "$w/usrc"
    head -c "$delta_bytes" /dev/urandom >"$pristine"
    touch -d "@$(($(date +%s) - 86400))" "$pristine"
    cp -p "$pristine" "$dsrc"
    for k in 1 3 5; do
        off=$((delta_bytes * k / 6 + 1234))
        printf 'EDIT%06d' "$k" | dd of="$dsrc" bs=1 seek="$off" conv=notrunc status=none
        offsets+=("$off")
    done
    ndiff=$( (cmp -l "$pristine" "$dsrc" || true) | wc -l)
    ((ndiff > 0 && ndiff <= 30)) || die "wan: expected 1..30 changed bytes in the delta file, found $ndiff"
    head -c "$up_bytes" /dev/urandom >"$usrc"
    find "$tree" -type f -exec cat {} + >/dev/null
    cat "$dsrc" "$usrc" >/dev/null

    dest_of() {
        case $1:$2 in
        tree:fts) echo "$WORK/srv/wantree" ;;
        tree:rsync) echo "$w/sshtree" ;;
        delta:fts) echo "$WORK/srv/wandelta" ;;
        delta:rsync) echo "$w/sshdelta" ;;
        upload:fts) echo "$WORK/srv/wanup" ;;
        upload:rsync) echo "$w/sshup" ;;
        esac
    }

    # Times CMD as row $1, tool $2, run $3 (ssh log $4) and records its
    # time, wire and socket bytes. A failure (fts timing out on a slow link,
    # say) is recorded instead of ending the script: returns 1.
    wan_run() {
        local row=$1 tool=$2 run=$3 sshlog=$4 key=$1:$2
        outf=$WORK/out/wan-$row-$tool-$run.out
        errf=$WORK/out/wan-$row-$tool-$run.err
        CMDLINE[$key]=$(shell_quote "${CMD[@]}")
        TIMED_SOFT=1 timed "$outf" "$errf" "${CMD[@]}"
        if ((TIMED_RC != 0)); then
            FAILS[$key]=$((${FAILS[$key]:-0} + 1))
            FAILMSG[$key]="run $run, exit $TIMED_RC after ${ELAPSED} s: $(tail -n 1 "$errf" | cut -c 1-300)"
            log "wan: run $run/$RUNS  $row  $tool  FAILED (${FAILMSG[$key]})"
            return 1
        fi
        add_sample TIMES "$key" "$ELAPSED"
        if [[ $tool == fts ]]; then
            fts_wire "$outf"
            add_sample WIRE "$key" "$NUM"
            add_sample SOCK "$key" "$NUM"
        else
            rsync_wire "$outf"
            add_sample WIRE "$key" "$NUM"
            ssh_socket "$sshlog"
            add_sample SOCK "$key" "$NUM"
        fi
        log "wan: run $run/$RUNS  $row  $tool  ${ELAPSED}s"
    }

    # Files transferred by the run just timed (outf) must be $2.
    wan_files_check() {
        local what=$1 want=$2 tool=$3
        if [[ $tool == fts ]]; then
            json_num "$outf" files_transferred
        else
            rsync_stat "$outf" 'Number of regular files transferred'
        fi
        ((NUM == want)) || die "$what: $tool transferred $NUM files, expected $want"
    }

    for ((run = 1; run <= RUNS; run++)); do
        # Connection setup through the link, without data.
        timed /dev/null "$WORK/out/wan-ssh-true.err" ssh "${SSH_OPTS[@]}" -p "$ssh_port" "$SSH_HOST" true
        add_sample SETUP ssh "$ELAPSED"
        timed /dev/null "$WORK/out/wan-fts-ls.err" "${FTS_W[@]}" ls "fts://$fts_addr/"
        add_sample SETUP fts "$ELAPSED"

        # first and second: the tree into an absent destination, then the
        # same command with nothing changed.
        for tool in "${TOOLS[@]}"; do
            dest=$(dest_of tree "$tool")
            rm -rf -- "$dest"
            sync
            for row in first second; do
                sshlog=$WORK/out/wan-$row-$tool-$run.ssh.log
                rm -f -- "$sshlog"
                case $tool in
                fts) CMD=("${FTS_W[@]}" sync "$tree" "fts://$fts_addr/wantree") ;;
                rsync)
                    rsh=$(rsh_logged "$sshlog" "$ssh_port")
                    CMD=(rsync -a --stats -e "$rsh" "$tree/" "$SSH_HOST:$dest/")
                    ;;
                esac
                # After a failed first copy, "unchanged" would not hold.
                wan_run "$row" "$tool" "$run" "$sshlog" || break
                check_tree "wan $row:$tool run $run" "$tree" "$dest"
                n=0
                [[ $row == first ]] && n=$WAN_FILES
                wan_files_check "wan $row:$tool run $run" "$n" "$tool"
            done
            sync
        done

        # delta: both receivers hold the old version (restored, untimed).
        for tool in "${TOOLS[@]}"; do
            dest=$(dest_of delta "$tool")
            sshlog=$WORK/out/wan-delta-$tool-$run.ssh.log
            rm -rf -- "$dest" "$sshlog"
            mkdir -p "$dest"
            cp -p "$pristine" "$dest/data.bin"
            sync
            case $tool in
            fts) CMD=("${FTS_W[@]}" put "$dsrc" "fts://$fts_addr/wandelta/") ;;
            rsync)
                rsh=$(rsh_logged "$sshlog" "$ssh_port")
                CMD=(rsync -a --no-whole-file --stats -e "$rsh" "$dsrc" "$SSH_HOST:$dest/")
                ;;
            esac
            wan_run delta "$tool" "$run" "$sshlog" || continue
            cmp -s "$dsrc" "$dest/data.bin" || die "wan delta:$tool run $run: result differs from source"
            wan_files_check "wan delta:$tool run $run" 1 "$tool"
            if [[ $tool == fts ]]; then
                json_num "$outf" matched_bytes
            else
                rsync_stat "$outf" 'Matched data'
            fi
            ((NUM > 0)) || log "wan: WARNING: delta $tool run $run matched 0 bytes (no delta used?)"
        done

        # upload: a fresh upload, no basis and nothing to resume.
        for tool in "${TOOLS[@]}"; do
            dest=$(dest_of upload "$tool")
            sshlog=$WORK/out/wan-upload-$tool-$run.ssh.log
            rm -rf -- "$dest" "$sshlog"
            mkdir -p "$dest"
            sync
            case $tool in
            fts) CMD=("${FTS_W[@]}" put "$usrc" "fts://$fts_addr/wanup/") ;;
            rsync)
                rsh=$(rsh_logged "$sshlog" "$ssh_port")
                CMD=(rsync -a --stats -e "$rsh" "$usrc" "$SSH_HOST:$dest/")
                ;;
            esac
            wan_run upload "$tool" "$run" "$sshlog" || continue
            cmp -s "$usrc" "$dest/up.bin" || die "wan upload:$tool run $run: copy differs from source"
            if [[ $tool == fts ]]; then
                json_num "$outf" bytes_transferred
                ((NUM == up_bytes)) || die "wan upload:fts run $run: unexpected bytes_transferred: $(cat "$outf")"
            fi
            rm -rf -- "$dest"
        done
    done

    stop_pid "$WAN_FTS_PID"
    stop_pid "$WAN_SSH_PID"
    WAN_FTS_PID=
    WAN_SSH_PID=
    rm -rf -- "$w" "$WORK/srv/wantree" "$WORK/srv/wandelta" "$WORK/srv/wanup"

    local -A M=() WORK_OF=() FLOOR=()
    WORK_OF[first]="$WAN_FILES × $SMALL_SIZE B, first copy"
    WORK_OF[second]="the same, unchanged"
    WORK_OF[delta]="3 × 10 B changed in ${WAN_DELTA_MB} MiB"
    WORK_OF[upload]="${WAN_UPLOAD_MB} MiB random, fresh"
    FLOOR[first]=$(awk -v b=$((WAN_FILES * SMALL_SIZE)) -v r="$rate_bps" 'BEGIN { printf "%.2f", b / r }')
    FLOOR[second]='—'
    FLOOR[delta]='—'
    FLOOR[upload]=$(awk -v b="$up_bytes" -v r="$rate_bps" 'BEGIN { printf "%.2f", b / r }')
    for row in "${ROWS[@]}"; do
        for tool in "${TOOLS[@]}"; do
            key=$row:$tool
            keys+=("$key")
            M[t:$key]=
            M[w:$key]=
            M[s:$key]=
            if [[ -n ${TIMES[$key]:-} ]]; then
                M[t:$key]=$(median "${TIMES[$key]}")
                M[w:$key]=$(median "${WIRE[$key]}" %.0f)
                M[s:$key]=$(median "${SOCK[$key]}" %.0f)
            fi
        done
    done

    # A cell: the median, "failed" when no run succeeded, and how many
    # runs failed when some did.
    cell() {
        local v=$1 key=$2
        [[ -n $v ]] || v=failed
        if [[ -n ${FAILS[$key]:-} ]]; then v="$v (${FAILS[$key]}/$RUNS failed)"; fi
        printf '%s' "$v"
    }
    num_or_dash() { if [[ -n $1 ]]; then fmt_int "$1"; else printf '—'; fi; }

    echo "## wan: fts vs rsync over a simulated WAN link ($WAN_DELAY_MS ms one way, $(fmt_int "$rate_bps") B/s each way)"
    echo
    echo "\`fts serve\` and the sshd each sit behind their own \`wanproxy\` (examples/wanproxy.rs, a"
    echo "userspace TCP proxy: $WAN_DELAY_MS ms one-way delay and a $(fmt_int "$rate_bps") B/s cap in each"
    echo "direction, so a $((2 * WAN_DELAY_MS)) ms round trip; no loss or reordering). fts: \`fts sync\` for the"
    echo "tree, \`fts put\` for the files; rsync: \`rsync -a --stats\` over ssh (\`--no-whole-file\`"
    echo "for delta, which over ssh is the default anyway)."
    if [[ -n $WAN_FTS_TIMEOUT ]]; then
        echo "fts ran with \`--timeout $WAN_FTS_TIMEOUT\`."
    fi
    echo "Connection setup through the link, without data (median): ssh login + \`true\`"
    echo "$(median "${SETUP[ssh]}") s, \`fts ls\` $(median "${SETUP[fts]}") s."
    echo
    echo "| row | work | link floor s | fts s | rsync s | fts ÷ rsync | fts wire bytes | rsync wire bytes | rsync socket bytes | fts ≤ ½ rsync |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    local f r v
    for row in "${ROWS[@]}"; do
        f=${M[t:$row:fts]}
        r=${M[t:$row:rsync]}
        if [[ -n $f && -n $r ]]; then
            v=$(verdict is_le "$(awk -v a="$f" 'BEGIN { print 2 * a }')" "$r")
        else
            v='n/a'
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$row" "${WORK_OF[$row]}" "${FLOOR[$row]}" \
            "$(cell "$f" "$row:fts")" "$(cell "$r" "$row:rsync")" \
            "$( if [[ -n $f && -n $r ]]; then ratio "$f" "$r"; else printf 'n/a'; fi)" \
            "$(num_or_dash "${M[w:$row:fts]}")" "$(num_or_dash "${M[w:$row:rsync]}")" \
            "$(num_or_dash "${M[s:$row:rsync]}")" "$v"
    done
    echo
    echo "link floor: the row's file bytes ÷ the rate, the time the link needs for the payload"
    echo "alone (no round trips, no protocol overhead). fts ÷ rsync < 1: fts is faster; the"
    echo "target is ≤ 0.5. Wire bytes as in the delta section (both directions; for fts the"
    echo "TLS bytes on its socket, which is also its socket figure; for rsync \`--stats\`, and"
    echo "ssh's own socket count). Checks after every run: trees by \`diff -r\` and a listing of"
    echo "names, types, sizes, modes and mtimes; files by \`cmp\`; files transferred as expected."
    if ((${#FAILS[@]})); then
        echo
        echo "Failed runs (not in the medians):"
        echo
        for key in "${keys[@]}"; do
            [[ -n ${FAILS[$key]:-} ]] || continue
            echo "- $key: ${FAILS[$key]} of $RUNS; last: ${FAILMSG[$key]}"
        done
    fi
    print_samples_and_commands "${keys[@]}"
    echo
}

# Peak resident memory of a running process in KiB (VmHWM), and a reset of
# that peak (clear_refs 5), so that each command's peak is its own.
peak_rss_of() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
reset_peak_rss() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# manyfiles: sync of 100,000 and 1,000,000 small files on the work area's
# filesystem (tmpfs when TMPDIR is one), with the peak memory of both sides:
# the client from /usr/bin/time, the server from its VmHWM (fts, reset
# before each command) or /usr/bin/time around the remote rsync.
section_manyfiles() {
    local -A TIMES=() W=() RC=() RS=() CMDLINE=()
    local TOOLS=(fts rsync) PHASES=(first second) keys=()
    local count tree dest run tool phase key outf sshlog rsh n SMALL_SIZE=$MANY_SIZE
    [[ -x /usr/bin/time ]] || die "manyfiles needs /usr/bin/time (Debian package 'time')"
    for count in $MANY_COUNTS; do
        tree=$WORK/many
        log "manyfiles: creating $count files of $MANY_SIZE bytes"
        make_small_tree "$tree" "$count" manyfiles
        find "$tree" -type f -exec cat {} + >/dev/null
        for ((run = 1; run <= MANY_RUNS; run++)); do
            for tool in "${TOOLS[@]}"; do
                case $tool in
                fts) dest=$WORK/srv/many ;;
                rsync) dest=$WORK/sshmany ;;
                esac
                rm -rf -- "$dest"
                sync
                for phase in "${PHASES[@]}"; do
                    key=$count:$phase:$tool
                    outf=$WORK/out/many-$key-$run.out
                    sshlog=$WORK/out/many-$key-$run.ssh.log
                    rm -f -- "$sshlog" "$WORK/out/rss.client" "$WORK/out/rss.server"
                    case $tool in
                    fts)
                        CMD=(/usr/bin/time -f %M -o "$WORK/out/rss.client"
                            "${FTS_CLIENT[@]}" sync "$tree" "fts://$FTS_ADDR/many")
                        reset_peak_rss "$FTS_PID"
                        ;;
                    rsync)
                        rsh=$(rsh_logged "$sshlog")
                        CMD=(/usr/bin/time -f %M -o "$WORK/out/rss.client"
                            rsync -a --stats -e "$rsh"
                            --rsync-path="/usr/bin/time -f %M -o $WORK/out/rss.server rsync"
                            "$tree/" "$SSH_HOST:$dest/")
                        ;;
                    esac
                    CMDLINE[$key]=$(shell_quote "${CMD[@]}")
                    timed "$outf" "$WORK/out/many-$key-$run.err" "${CMD[@]}"
                    add_sample TIMES "$key" "$ELAPSED"
                    add_sample RC "$key" "$(tail -n 1 "$WORK/out/rss.client")"
                    if [[ $tool == fts ]]; then
                        add_sample RS "$key" "$(peak_rss_of "$FTS_PID")"
                        json_num "$outf" files_transferred
                        n=0
                        [[ $phase == first ]] && n=$count
                        ((NUM == n)) || die "manyfiles $key: fts transferred $NUM files, expected $n"
                        fts_wire "$outf"
                    else
                        add_sample RS "$key" "$(tail -n 1 "$WORK/out/rss.server")"
                        ssh_socket "$sshlog"
                    fi
                    add_sample W "$key" "$NUM"
                    log "manyfiles: $count files, run $run/$MANY_RUNS, $phase, $tool: ${ELAPSED}s"
                done
                check_tree "manyfiles $count $tool run $run" "$tree" "$dest"
            done
        done
        for phase in "${PHASES[@]}"; do
            for tool in "${TOOLS[@]}"; do keys+=("$count:$phase:$tool"); done
        done
        rm -rf -- "$tree" "$WORK/srv/many" "$WORK/sshmany"
    done
    echo "## manyfiles: $MANY_COUNTS files of $MANY_SIZE bytes, 100 per directory"
    echo
    echo "first: sync into an absent destination; second: the same again with nothing"
    echo "changed. fts: \`fts sync\`; rsync: \`rsync -a --stats\` over ssh. Peak RSS of the"
    echo "client (/usr/bin/time) and of the server side (fts serve's VmHWM, reset before"
    echo "each command; the remote rsync under /usr/bin/time). Wire: TLS payload both ways"
    echo "for fts (socket bytes are within a few % of it), ssh socket bytes for rsync."
    echo
    echo "| files | phase | tool | median s | time ÷ fts | client MiB | server MiB | wire bytes |"
    echo "|---:|---|---|---:|---:|---:|---:|---:|"
    local t
    for key in "${keys[@]}"; do
        IFS=: read -r count phase tool <<<"$key"
        t=$(median "${TIMES[$key]}")
        printf '| %s | %s | %s | %s | %s | %.1f | %.1f | %s |\n' "$(fmt_int "$count")" "$phase" "$tool" "$t" \
            "$(ratio "$t" "$(median "${TIMES[$count:$phase:fts]}")")" \
            "$(awk -v k="$(median "${RC[$key]}" %.0f)" 'BEGIN { print k / 1024 }')" \
            "$(awk -v k="$(median "${RS[$key]}" %.0f)" 'BEGIN { print k / 1024 }')" \
            "$(fmt_int "$(median "${W[$key]}" %.0f)")"
    done
    echo
    print_samples_and_commands "${keys[@]}"
    echo
}

# parallel: PAR_FILES × PAR_MB MiB random files uploaded over the wan proxy
# (WAN_DELAY_MS each way, WAN_RATE for the link), one at a time and with
# --parallel PAR_N, against rsync over ssh through the same kind of link.
section_parallel() {
    local -A TIMES=() CMDLINE=()
    local src=$WORK/par keys=(fts fts-parallel rsync) run key i rsh fproxy sproxy
    mkdir -p "$src"
    for ((i = 0; i < PAR_FILES; i++)); do
        head -c $((PAR_MB << 20)) /dev/urandom >"$src/f$i.bin"
    done
    # Each connection is held to PAR_CONN_RATE as well as sharing the link,
    # as one TCP flow is on a long fat pipe: the case --parallel is for.
    start_wanproxy fts "${FTS_ADDR##*:}" --conn-rate "$PAR_CONN_RATE"
    fproxy=127.0.0.1:$WAN_PORT
    start_wanproxy ssh "$SSH_PORT" --conn-rate "$PAR_CONN_RATE"
    sproxy=127.0.0.1:$WAN_PORT
    for ((run = 1; run <= RUNS; run++)); do
        for key in "${keys[@]}"; do
            rm -rf -- "$WORK/srv/par" "$WORK/sshpar"
            mkdir -p "$WORK/srv/par"
            case $key in
            fts) CMD=("${FTS_CLIENT[@]}" put "$src"/f*.bin "fts://$fproxy/par/") ;;
            fts-parallel) CMD=("${FTS_CLIENT[@]}" put --parallel "$PAR_N" "$src"/f*.bin "fts://$fproxy/par/") ;;
            rsync)
                rsh="ssh ${SSH_OPTS[*]} -p ${sproxy##*:}"
                CMD=(rsync -a -e "$rsh" "$src/" "$SSH_HOST:$WORK/sshpar/")
                ;;
            esac
            CMDLINE[$key]=$(shell_quote "${CMD[@]}")
            timed "$WORK/out/par-$key.out" "$WORK/out/par-$key.err" "${CMD[@]}"
            add_sample TIMES "$key" "$ELAPSED"
            log "parallel: run $run/$RUNS $key ${ELAPSED}s"
            case $key in
            rsync) diff -r -q "$src" "$WORK/sshpar" >&2 || die "parallel: rsync copy differs" ;;
            *) diff -r -q "$src" "$WORK/srv/par" >&2 || die "parallel: $key copy differs" ;;
            esac
        done
    done
    stop_pid "$WAN_FTS_PID"
    stop_pid "$WAN_SSH_PID"
    WAN_FTS_PID= WAN_SSH_PID=
    rm -rf -- "$src" "$WORK/srv/par" "$WORK/sshpar"
    echo "## parallel: $PAR_FILES × $PAR_MB MiB over a wan link ($WAN_DELAY_MS ms each way, $WAN_RATE shared by its connections, at most $PAR_CONN_RATE for each)"
    echo
    echo "| tool | median s | MB/s | time ÷ fts --parallel $PAR_N |"
    echo "|---|---:|---:|---:|"
    local t
    for key in "${keys[@]}"; do
        t=$(median "${TIMES[$key]}")
        printf '| %s | %s | %s | %s |\n' "$key" "$t" \
            "$(awk -v b=$((PAR_FILES * (PAR_MB << 20))) -v t="$t" 'BEGIN { printf "%.1f", b / t / 1e6 }')" \
            "$(ratio "$t" "$(median "${TIMES[fts-parallel]}")")"
    done
    echo
    print_samples_and_commands "${keys[@]}"
    echo
}

# ---------------------------------------------------------------------------
# s3: fts serve s3://… over a single-node Garage vs rclone to the same bucket
# ---------------------------------------------------------------------------
garage_cmd() { "$GARAGE_BIN" -c "$WORK/garage/garage.toml" "$@"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_garage() {
    if [[ -z ${GARAGE_BIN:-} ]]; then
        GARAGE_BIN=$(command -v garage || echo "$REAL_HOME/.cargo/bin/garage")
    fi
    [[ -x $GARAGE_BIN ]] || die "s3: no garage binary (cargo install --locked garage, or set GARAGE_BIN)"
    local g=$WORK/garage rpc api adm id out i
    mkdir -p "$g"
    rpc=$(free_port) api=$(free_port) adm=$(free_port)
    cat >"$g/garage.toml" <<EOF
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$api"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$adm"
EOF
    RUST_LOG=warn "$GARAGE_BIN" -c "$g/garage.toml" server >"$g/server.log" 2>&1 </dev/null &
    GARAGE_PID=$!
    id=
    for i in $(seq 100); do
        id=$(garage_cmd node id -q 2>/dev/null || true)
        [[ -n $id ]] && break
        sleep 0.2
    done
    [[ -n $id ]] || die "s3: garage did not start: $(tail -n 5 "$g/server.log")"
    garage_cmd layout assign -z dc1 -c 10G "${id%%@*}" >/dev/null
    garage_cmd layout apply --version 1 >/dev/null
    out=$(garage_cmd key create bench)
    S3_KEY=$(awk -F': *' '/^Key ID/ { print $2 }' <<<"$out")
    S3_SECRET=$(awk -F': *' '/^Secret key/ { print $2 }' <<<"$out")
    garage_cmd bucket create bench >/dev/null
    garage_cmd bucket allow --read --write --owner bench --key bench >/dev/null
    S3_ENDPOINT=http://127.0.0.1:$api
    log "garage listening on $S3_ENDPOINT (key $S3_KEY)"
}

section_s3() {
    local -A TIMES=() CMDLINE=() RSS=()
    local big=$WORK/s3big.bin tree=$WORK/s3tree back=$WORK/s3back keys=() run key tool first addr fp
    start_garage
    export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=garage
    # rclone's S3 client refuses a plain-http endpoint when a CA bundle is set.
    unset AWS_CA_BUNDLE
    export RCLONE_CONFIG_GB_TYPE=s3 RCLONE_CONFIG_GB_PROVIDER=Other RCLONE_CONFIG_GB_ENV_AUTH=false \
        RCLONE_CONFIG_GB_ACCESS_KEY_ID=$S3_KEY RCLONE_CONFIG_GB_SECRET_ACCESS_KEY=$S3_SECRET \
        RCLONE_CONFIG_GB_REGION=garage RCLONE_CONFIG_GB_ENDPOINT=$S3_ENDPOINT \
        RCLONE_CONFIG_GB_FORCE_PATH_STYLE=true
    "$FTS_BIN" serve s3://bench/fts --s3-endpoint "$S3_ENDPOINT" --listen 127.0.0.1:0 --json \
        --state-dir "$WORK/s3state" >"$WORK/out/s3serve.log" 2>"$WORK/out/s3serve.err" </dev/null &
    S3_FTS_PID=$!
    first=
    for _ in $(seq 100); do
        first=$(head -n 1 "$WORK/out/s3serve.log" 2>/dev/null || true)
        [[ -n $first ]] && break
        kill -0 "$S3_FTS_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ $first == *'"event":"listening"'* ]] || {
        cat "$WORK/out/s3serve.err" >&2
        die "s3: fts serve s3://… did not start"
    }
    addr=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' <<<"$first")
    fp=$(sed -n 's/.*"fingerprint":"\([^"]*\)".*/\1/p' <<<"$first")
    local fts=("$FTS_BIN" --json --fingerprint "$fp")
    head -c $((S3_MB << 20)) /dev/urandom >"$big"
    make_small_tree "$tree" "$S3_FILES" s3
    keys=(upload download tree-first tree-again)
    for ((run = 1; run <= RUNS; run++)); do
        for key in "${keys[@]}"; do
            for tool in fts rclone; do
                case $key/$tool in
                # A new name each run: a fresh upload, not a delta or a skip.
                upload/fts) CMD=("${fts[@]}" put "$big" "fts://$addr/big-$run.bin") ;;
                upload/rclone) CMD=(rclone copyto "$big" "gb:bench/rclone/big-$run.bin") ;;
                download/fts)
                    rm -f -- "$back"
                    CMD=("${fts[@]}" get "${NO_FSYNC[@]}" "fts://$addr/big-$run.bin" "$back")
                    ;;
                download/rclone)
                    rm -f -- "$back"
                    CMD=(rclone copyto "gb:bench/rclone/big-$run.bin" "$back")
                    ;;
                tree-first/fts)
                    # A first copy each run: what the last run stored goes first.
                    rclone purge gb:bench/fts/tree >/dev/null 2>&1 || true
                    rclone purge gb:bench/.fts-store/meta/fts/tree >/dev/null 2>&1 || true
                    CMD=("${fts[@]}" sync "$tree" "fts://$addr/tree")
                    ;;
                tree-first/rclone)
                    rclone purge gb:bench/rclone-tree >/dev/null 2>&1 || true
                    CMD=(rclone copy "$tree" gb:bench/rclone-tree)
                    ;;
                tree-again/fts) CMD=("${fts[@]}" sync "$tree" "fts://$addr/tree") ;;
                tree-again/rclone) CMD=(rclone copy "$tree" gb:bench/rclone-tree) ;;
                esac
                CMDLINE[$key/$tool]=$(shell_quote "${CMD[@]}")
                [[ $tool == fts ]] && reset_peak_rss "$S3_FTS_PID"
                timed "$WORK/out/s3-$key-$tool.out" "$WORK/out/s3-$key-$tool.err" "${CMD[@]}"
                add_sample TIMES "$key/$tool" "$ELAPSED"
                [[ $tool == fts ]] && add_sample RSS "$key" "$(peak_rss_of "$S3_FTS_PID")"
                log "s3: run $run/$RUNS $key $tool ${ELAPSED}s"
                if [[ $key == download ]]; then
                    cmp -s "$big" "$back" || die "s3: $tool download differs"
                fi
            done
        done
    done
    # What fts stored is what was sent: read back by rclone, not by fts.
    rclone copy gb:bench/fts/tree "$WORK/s3check" >/dev/null 2>&1 || die "s3: rclone could not read fts's tree"
    diff -r -q "$tree" "$WORK/s3check" >&2 || die "s3: the tree fts stored differs"
    stop_pid "$S3_FTS_PID"
    stop_pid "$GARAGE_PID"
    S3_FTS_PID= GARAGE_PID=
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
    rm -rf -- "$big" "$back" "$tree" "$WORK/s3check" "$WORK/garage" "$WORK/s3state"
    echo "## s3: fts serve s3://… vs rclone, both to one local Garage ($S3_MB MiB file, $S3_FILES × 4 KiB files)"
    echo
    echo "| work | fts s | rclone s | rclone ÷ fts | fts MB/s | fts server peak RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|"
    local tf trc bytes peak_kib
    for key in "${keys[@]}"; do
        tf=$(median "${TIMES[$key/fts]}")
        trc=$(median "${TIMES[$key/rclone]}")
        case $key in
        upload | download) bytes=$((S3_MB << 20)) ;;
        *) bytes=$((S3_FILES * SMALL_SIZE)) ;;
        esac
        peak_kib=$(tr ' ' '\n' <<<"${RSS[$key]}" | sort -n | tail -n 1)
        printf '| %s | %s | %s | %s | %s | %s |\n' "$key" "$tf" "$trc" "$(ratio "$trc" "$tf")" \
            "$(awk -v b="$bytes" -v t="$tf" 'BEGIN { printf "%.1f", b / t / 1e6 }')" \
            "$(awk -v k="$peak_kib" 'BEGIN { printf "%.1f", k / 1024 }')"
    done
    echo
    echo "Commands (last run):"
    echo
    for key in "${keys[@]}"; do
        for tool in fts rclone; do
            echo "- $key $tool: \`${CMDLINE[$key/$tool]}\`"
        done
    done
    echo
}

# ---------------------------------------------------------------------------
# Report header, then the sections; each prints its part when it is done.
# ---------------------------------------------------------------------------
declare -A CONNECT=()
# Fixed cost of one connection (handshake, login, teardown) without data:
# with small sizes it dominates scp/rsync times, so report it alongside.
for ((run = 1; run <= RUNS; run++)); do
    timed /dev/null "$WORK/out/ssh-true.err" "${SSH_CMD[@]}" "$SSH_HOST" true
    add_sample CONNECT ssh "$ELAPSED"
    timed /dev/null "$WORK/out/fts-ls.err" "${FTS_CLIENT[@]}" ls "fts://$FTS_ADDR/"
    add_sample CONNECT fts "$ELAPSED"
done

fts_version=$("$FTS_BIN" --version 2>/dev/null || echo "fts (unknown version)")
ssh_version=$(ssh -V 2>&1)
rsync_version=$(rsync --version)
rsync_version=${rsync_version%%$'\n'*}

echo "# fts benchmark"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), host: $(uname -srm), $(nproc) CPUs, loopback"
echo "- sections: ${SELECTED[*]}; SIZE_MB=$SIZE_MB, SMALL_FILES=$SMALL_FILES"
if want wan; then
    echo "- wan: WAN_DELAY_MS=$WAN_DELAY_MS, WAN_RATE=$WAN_RATE, WAN_FILES=$WAN_FILES, WAN_DELTA_MB=$WAN_DELTA_MB, WAN_UPLOAD_MB=$WAN_UPLOAD_MB; proxy: examples/wanproxy.rs ($WANPROXY_ORIG, run from a copy)"
fi
echo "- runs: $RUNS per cell (median shown; tools interleaved within each run)"
echo "- fts: $fts_version ($FTS_ORIG, run from a copy taken at start); FTS_FSYNC=$FTS_FSYNC$([[ $FTS_FSYNC == 0 ]] && echo ' (serve and get with --no-fsync)')"
echo "- ssh: $ssh_version; rsync: $rsync_version"
echo "- connection setup without data (median): ssh login + \`true\` $(median "${CONNECT[ssh]}") s, \`fts ls\` $(median "${CONNECT[fts]}") s"
echo "- ratios are tool ÷ fts (> 1: fts is faster / sends less); MB = 10^6 bytes"
echo

for s in "${SELECTED[@]}"; do
    "section_$s"
done
