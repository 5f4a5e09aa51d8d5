# test/lib/env.sh — shared set-up for test/check, test/demo and benchmarks.
#
# Installs what is missing (apt), builds the extension, and stages a private
# PostgreSQL installation (the system's binaries hard-linked, plus this build
# of m365sync) under a work directory, so tests never touch the system's
# extension directory and several checkouts can test side by side.
# PostgreSQL refuses to run as root: as root, servers and tests run as the
# "postgres" user, in a work directory that user owns.

M365_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
SYS_PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin

m365_packages="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-contrib
  libcurl4-openssl-dev libssl-dev libcjson-dev libipc-run-perl postgresql-$PG_MAJOR-cron
  unicode-cldr-core openssl curl python3 make gcc clang pgbouncer"

m365_log() { printf '%s\n' "== $*" >&2; }

# Install missing Debian packages (as root only; otherwise just report).
m365_ensure_packages() {
    local missing="" p
    for p in $m365_packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        m365_log "missing packages:$missing (run as root to install them)"
        return 1
    fi
    m365_log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null
}

# Stop the system's default cluster from getting in the way is not needed:
# every server here uses its own port and socket directory.

m365_build() {
    m365_log "building m365sync"
    make -C "$M365_TOP" -s PG_CONFIG="$SYS_PG_BIN/pg_config" ${SANITIZE:+SANITIZE=$SANITIZE} >&2
}

# m365_stage WORKDIR: a private installation in WORKDIR/stage, with
# $M365_BIN pointing at its bin directory.
m365_stage() {
    local work=$1 stage=$1/stage
    local libdir=$stage/usr/lib/postgresql/$PG_MAJOR sharedir=$stage/usr/share/postgresql/$PG_MAJOR
    rm -rf "$stage"
    mkdir -p "$stage/usr/lib/postgresql" "$stage/usr/share/postgresql"
    cp -al "/usr/lib/postgresql/$PG_MAJOR" "$stage/usr/lib/postgresql/"
    cp -a "/usr/share/postgresql/$PG_MAJOR" "$stage/usr/share/postgresql/"
    # Never write through a hard link into the system's files.
    rm -f "$libdir/lib/m365sync.so" "$sharedir"/extension/m365sync*
    rm -rf "$libdir/lib/bitcode/m365sync"*
    make -C "$M365_TOP" -s install DESTDIR="$stage" PG_CONFIG="$SYS_PG_BIN/pg_config" >/dev/null
    M365_BIN=$libdir/bin
    export M365_BIN
}

# Run a command as the server's OS user.
m365_as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env PATH="$M365_BIN:$PATH" "$@"
    else
        env PATH="$M365_BIN:$PATH" "$@"
    fi
}

# m365_keyfile PATH: a fresh master key file (mode 0600, owned by the server user).
m365_keyfile() {
    printf 'k1:%s\n' "$(openssl rand -hex 32)" > "$1"
    chmod 600 "$1"
    [ "$(id -u)" = 0 ] && chown postgres: "$1"
    return 0
}

m365_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
