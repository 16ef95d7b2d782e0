#!/usr/bin/env bash
# Side-by-side benchmark: fts vs scp vs rsync-over-ssh, upload and download of
# one large random file over loopback. See bench/README.md.
#
# Progress goes to stderr; the markdown report goes to stdout, so
#   bash bench/bench.sh > results.md
# yields a clean report.
#
# Environment:
#   FTS_BIN   fts binary (default: target/release/fts, else target/debug/fts)
#   SIZE_MB   size of the test file in MiB (default 1024)
#   RUNS      repetitions per measurement; the median is reported (default 3)
#   SSH_PORT  loopback port for the throwaway sshd (default 22022)

set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
SSH_PORT=${SSH_PORT:-22022}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_pos_int "$SIZE_MB" || die "SIZE_MB must be a positive integer (got '$SIZE_MB')"
is_pos_int "$RUNS" || die "RUNS must be a positive integer (got '$RUNS')"
is_pos_int "$SSH_PORT" || die "SSH_PORT must be a positive integer (got '$SSH_PORT')"
[[ $EUID -eq 0 ]] || die "run as root (needs apt-get and a root sshd)"

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

# ---------------------------------------------------------------------------
# Cleanup. Everything the script starts or creates is recorded here so that
# any exit path (success, error, Ctrl-C) leaves nothing behind.
# ---------------------------------------------------------------------------
WORK=
FTS_PID=
SSHD_PID=
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
export HOME=$WORK/home
unset XDG_CONFIG_HOME XDG_STATE_HOME XDG_DATA_HOME XDG_CACHE_HOME
unset FTS_PASSWORD FTS_ADMIN_PASSWORD SSH_AUTH_SOCK
mkdir -p "$HOME" "$WORK"/{src,srv/up,sshdst,dl,ssh,out}

SRC=$WORK/src/data.bin
SIZE_BYTES=$((SIZE_MB * 1024 * 1024))

# src + at most one destination copy at a time (srv copy is a hard link).
need_kb=$((SIZE_MB * 1024 * 2 + 65536))
avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
((avail_kb > need_kb)) || die "not enough space in $WORK: need ~$((need_kb / 1024)) MiB, have $((avail_kb / 1024)) MiB"

log "creating ${SIZE_MB} MiB random file"
head -c "$SIZE_BYTES" /dev/urandom >"$SRC"
# Downloads of all tools read this very inode, so they share one warm cache.
ln "$SRC" "$WORK/srv/data.bin"
# Page-cache-warm source: the comparison is about the transfer, not the disk.
cat "$SRC" >/dev/null

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
"$FTS_BIN" serve "$WORK/srv" --listen 127.0.0.1:0 --json \
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
# Measurements
# ---------------------------------------------------------------------------
declare -A TIMES CMDLINE DEST
OPS=(upload download)
TOOLS=(fts scp rsync)

# The command for one (operation, tool) pair, as an array in CMD.
set_cmd() {
    case "$1:$2" in
    upload:fts) CMD=("${FTS_CLIENT[@]}" put "$SRC" "fts://$FTS_ADDR/up/") ;;
    upload:scp) CMD=(scp -q "${SSH_OPTS[@]}" -P "$SSH_PORT" "$SRC" "$SSH_HOST:$WORK/sshdst/") ;;
    upload:rsync) CMD=(rsync -a --whole-file -e "$RSYNC_RSH" "$SRC" "$SSH_HOST:$WORK/sshdst/") ;;
    download:fts) CMD=("${FTS_CLIENT[@]}" get "fts://$FTS_ADDR/data.bin" "$WORK/dl/data.bin") ;;
    download:scp) CMD=(scp -q "${SSH_OPTS[@]}" -P "$SSH_PORT" "$SSH_HOST:$WORK/srv/data.bin" "$WORK/dl/data.bin") ;;
    download:rsync) CMD=(rsync -a --whole-file -e "$RSYNC_RSH" "$SSH_HOST:$WORK/srv/data.bin" "$WORK/dl/data.bin") ;;
    esac
}

dest_of() {
    case "$1:$2" in
    upload:fts) echo "$WORK/srv/up/data.bin" ;;
    upload:*) echo "$WORK/sshdst/data.bin" ;;
    download:*) echo "$WORK/dl/data.bin" ;;
    esac
}

# Runs "$@" and sets ELAPSED to its wall time in seconds. Not meant for
# $(...): the command must be a child of the main shell, running in the
# background, so that a signal interrupts the wait and the cleanup trap can
# stop it instead of waiting for a long copy to finish (or orphaning it).
timed() {
    local out=$1 err=$2 t0 t1 rc=0
    shift 2
    t0=$(date +%s.%N)
    "$@" >"$out" 2>"$err" </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    t1=$(date +%s.%N)
    CHILD_PID=
    if ((rc != 0)); then
        cat "$err" >&2
        die "command failed (exit $rc): $(shell_quote "$@")"
    fi
    ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
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

# Removes the destination (and any leftover temp/partial files beside it) so
# the next run is a full copy: rsync must not find a basis file.
drop_dest() {
    rm -rf -- "$WORK/srv/up" "$WORK/sshdst" "$WORK/dl"
    mkdir -p "$WORK/srv/up" "$WORK/sshdst" "$WORK/dl"
}

check_copy() {
    local what=$1 dest=$2 json=$3
    cmp -s "$SRC" "$dest" || die "$what: copy differs from source ($dest)"
    if [[ -n $json ]]; then
        grep -q "\"bytes_transferred\":${SIZE_BYTES}[,}]" "$json" ||
            die "$what: fts reported unexpected bytes_transferred: $(cat "$json")"
    fi
}

# Fixed cost of one connection (handshake, login, teardown) without data:
# with small SIZE_MB it dominates scp/rsync times, so report it alongside.
for ((run = 1; run <= RUNS; run++)); do
    timed /dev/null "$WORK/out/ssh-true.err" "${SSH_CMD[@]}" "$SSH_HOST" true
    TIMES[connect:ssh]="${TIMES[connect:ssh]:-} $ELAPSED"
    timed /dev/null "$WORK/out/fts-ls.err" "${FTS_CLIENT[@]}" ls "fts://$FTS_ADDR/"
    TIMES[connect:fts]="${TIMES[connect:fts]:-} $ELAPSED"
done

for ((run = 1; run <= RUNS; run++)); do
    for op in "${OPS[@]}"; do
        # Tools alternate within each run, so drift on a shared machine hits
        # all of them alike instead of whichever happens to run last.
        for tool in "${TOOLS[@]}"; do
            key=$op:$tool
            set_cmd "$op" "$tool"
            CMDLINE[$key]=$(shell_quote "${CMD[@]}")
            DEST[$key]=$(dest_of "$op" "$tool")
            drop_dest
            # Flush earlier copies' dirty pages now, so their writeback is not
            # billed to this run.
            sync
            outf=$WORK/out/$op-$tool-$run.out
            timed "$outf" "$WORK/out/$op-$tool-$run.err" "${CMD[@]}"
            json=
            [[ $tool == fts ]] && json=$outf
            check_copy "$key run $run" "${DEST[$key]}" "$json"
            TIMES[$key]="${TIMES[$key]:-} $ELAPSED"
            log "run $run/$RUNS  $op  $tool  ${ELAPSED}s"
        done
    done
done
drop_dest

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]
              else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A MED
for op in "${OPS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        MED[$op:$tool]=$(median "${TIMES[$op:$tool]}")
    done
done

fts_version=$("$FTS_BIN" --version 2>/dev/null || echo "fts (unknown version)")
ssh_version=$(ssh -V 2>&1)
rsync_version=$(rsync --version)
rsync_version=${rsync_version%%$'\n'*}

echo "## fts transfer benchmark"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), host: $(uname -srm), $(nproc) CPUs"
echo "- file: ${SIZE_MB} MiB ($SIZE_BYTES bytes) from /dev/urandom, page-cache warm, loopback"
echo "- runs: $RUNS per cell (median shown; tools interleaved within each run)"
echo "- fts: $fts_version ($FTS_BIN)"
echo "- ssh: $ssh_version; rsync: $rsync_version"
echo "- connection setup without data (median): ssh login + \`true\` $(median "${TIMES[connect:ssh]}") s, \`fts ls\` $(median "${TIMES[connect:fts]}") s"
echo
echo "| operation | tool | median s | MB/s | ratio vs fts |"
echo "|---|---|---:|---:|---:|"
for op in "${OPS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        m=${MED[$op:$tool]}
        f=${MED[$op:fts]}
        awk -v op="$op" -v tool="$tool" -v m="$m" -v f="$f" -v b="$SIZE_BYTES" 'BEGIN {
            mbs = (m > 0) ? sprintf("%.1f", b / 1e6 / m) : "inf"
            ratio = (f > 0) ? sprintf("%.2f", m / f) : "n/a"
            printf "| %s | %s | %.3f | %s | %s |\n", op, tool, m, mbs, ratio
        }'
    done
done
echo
echo "MB = 10^6 bytes. ratio = tool time / fts time for the same operation (> 1: fts is faster)."
echo
echo "### Samples (s)"
echo
for op in "${OPS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        echo "- $op $tool:${TIMES[$op:$tool]}"
    done
done
echo
echo "### Commands (last run; temporary paths are removed on exit)"
echo
echo '```'
for op in "${OPS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        echo "# $op $tool"
        echo "${CMDLINE[$op:$tool]}"
    done
done
echo '```'
