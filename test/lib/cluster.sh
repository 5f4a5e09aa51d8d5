# test/lib/cluster.sh — start and stop a throwaway cluster with m365sync
# preloaded, a master key file outside the data directory, and a private
# socket directory. Sets PGHOST, PGPORT, M365_KEYFILE.

m365_cluster_start() {
    local data=$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$data.sock"
    export PGHOST=$data.sock PGPORT=$port M365_KEYFILE=$data.key
    printf 'k1:%s\n' "$(openssl rand -hex 32)" > "$M365_KEYFILE"
    chmod 600 "$M365_KEYFILE"
    "$M365_BIN/initdb" -D "$data" -A trust -U postgres --no-sync >"$data.initdb.log" 2>&1 || { cat "$data.initdb.log"; return 1; }
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$data.sock'
shared_preload_libraries = 'm365sync'
m365sync.database = 'contrib_regression'
m365sync.key_file = '$M365_KEYFILE'
fsync = off
# Test SQL carries planted secrets as literals, which PostgreSQL itself
# would log (SECURITY.md §7); FlowAgent sends values as bind parameters.
log_statement = none
log_min_error_statement = panic
CONF
    "$M365_BIN/pg_ctl" -D "$data" -l "$data.log" -w start >/dev/null || { cat "$data.log"; return 1; }
}

m365_cluster_stop() {
    "$M365_BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1
}
