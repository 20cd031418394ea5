#!/usr/bin/env bash
# The project's commands: start, test, package, bench, fuzz. See README.md.
set -euo pipefail
cd "$(dirname "$0")"

# Installs Debian packages that are missing (a fresh machine or CI may lack them).
need_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "run.sh: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# cargo-deb builds the Debian package (docs/dependencies.md says why it). Pinned: the
# package test hands it the debug build (--profile dev), which it accepts with a warning.
CARGO_DEB_VERSION=3.8.0

# Installs cargo-deb when missing: a few minutes' compile, once per machine.
need_cargo_deb() {
    if ! command -v cargo-deb >/dev/null; then
        echo "run.sh: installing cargo-deb $CARGO_DEB_VERSION (compiles for a few minutes, once)" >&2
        cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
start)
    cargo build --release
    # 127.0.0.1:8888, the demo user, the blocklist, the cache and logs/: all in the file.
    exec ./target/release/proxy-server --config config/proxy-server.toml "$@"
    ;;
test)
    # chromium: the dashboard test (tests/it/dashboard/browser.rs) renders the page in it.
    # dpkg-dev, adduser and cargo-deb: the package test (tests/it/package.rs) builds the
    # Debian package, installs it and purges it again.
    need_packages curl ca-certificates chromium haproxy dpkg-dev adduser
    need_cargo_deb
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo test
    ;;
package)
    # A Debian package in target/debian/: the release binary as /usr/bin/proxy-server, the
    # systemd unit (not enabled), /etc/proxy-server/proxy-server.toml (loopback only), the
    # proxy-server user made by postinst (docs/deployment.md#debian-package).
    # --dev packages the debug binary that `cargo build`/`cargo test` left instead of
    # building a release one (the package test's way: seconds instead of minutes).
    # Other arguments go to cargo-deb, e.g. -o DIR.
    need_packages dpkg-dev
    need_cargo_deb
    if [ "${1:-}" = "--dev" ]; then
        shift
        exec cargo deb --no-build --profile dev "$@"
    fi
    exec cargo deb --locked "$@"
    ;;
bench)
    exec bench/run.sh "$@"
    ;;
fuzz)
    # Each cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS (default 60). New inputs go
    # to fuzz/target/corpus-run/ (ignored); the committed seeds in fuzz/corpus/ are only
    # read. A crash stops the run and leaves its input in fuzz/artifacts/<target>/.
    seconds="${1:-60}"
    case "$seconds" in '' | *[!0-9]*) echo "run.sh fuzz: SECONDS must be a number" >&2; exit 2 ;; esac
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    # AddressSanitizer needs a nightly compiler. Without one, the stable compiler builds
    # the coverage-instrumented targets with sanitizers off (RUSTC_BOOTSTRAP lets it
    # accept cargo-fuzz's flags); panics and assertion failures are still caught.
    if cargo +nightly --version >/dev/null 2>&1; then
        toolchain=(+nightly) sanitizer=address
    else
        toolchain=() sanitizer=none
        export RUSTC_BOOTSTRAP=1
    fi
    cd fuzz
    for target in $(cargo "${toolchain[@]}" fuzz list); do
        echo "run.sh fuzz: $target for ${seconds}s (sanitizer: $sanitizer)" >&2
        mkdir -p "target/corpus-run/$target"
        cargo "${toolchain[@]}" fuzz run -O --sanitizer "$sanitizer" "$target" \
            "target/corpus-run/$target" "corpus/$target" -- -max_total_time="$seconds"
    done
    ;;
*)
    echo "usage: ./run.sh start [proxy flags…] | test | package [--dev] [cargo-deb flags…] | bench | fuzz [SECONDS]" >&2
    exit 2
    ;;
esac
