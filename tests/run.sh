#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on a developer's: the
# README's test command, and all .ci/run does. Arguments go to
# `cargo test --locked` (e.g. `tests/run.sh --test docs`).
#
# Beyond the Rust toolchain the tests need the fts binary they build,
# loopback networking, and tools this script installs when they are
# missing: tmux and curl (tests/tty.rs drives fts in a real terminal:
# password prompt, progress bars; tests/wan.rs downloads and uploads with
# curl through a slow link; tests/web.rs fetches the HTML index with
# wget -r), Node.js with npm, and Debian's chromium for
# tests/browser.rs, which drives the web dashboard through playwright-core
# (tests/browser/, pinned by its lockfile: `npm ci`), and Garage (an S3
# store, `cargo install --locked garage`) for the S3 backend's tests.
# Those tests skip themselves, saying why, without their tools, but under
# CI=true tests/browser.rs and the S3 tests fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v curl >/dev/null || missing+=(curl)
command -v wget >/dev/null || missing+=(wget)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! command -v apt-get >/dev/null; then
        echo "tests/run.sh: no apt-get; install these yourself: ${missing[*]}" >&2
    elif [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
        echo "tests/run.sh: not root and no sudo; install these yourself: ${missing[*]}" >&2
    else
        echo "tests/run.sh: installing ${missing[*]}" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
fi
# tests/backends.rs and tests/scale_out.rs run against a real S3 store:
# Garage, built from crates.io (about 11-20 minutes on 2 cores, once).
if ! command -v garage >/dev/null && [ ! -x "${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin/garage" ]; then
    echo "tests/run.sh: installing garage (cargo install --locked garage)" >&2
    cargo install --locked garage --version 2.5.0
fi
if [ ! -d tests/browser/node_modules/playwright-core ] && command -v npm >/dev/null; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi
exec cargo test --locked "$@"
