# Runs pg_regress against a throwaway cluster (as the server's OS user).
# Expects WORK (work directory with src/ and stage/) and M365_BIN.
set -u
. "$WORK/src/test/lib/cluster.sh"
cd "$WORK" || exit 1
m365_cluster_start "$WORK/regress-data" || exit 1
mkdir -p "$WORK/regress"
tests=$(cd "$WORK/src/sql" && ls *.sql | sed 's/\.sql$//' | sort)
"$M365_BIN/../lib/pgxs/src/test/regress/pg_regress" \
    --inputdir="$WORK/src" --outputdir="$WORK/regress" \
    --bindir="$M365_BIN" --host="$PGHOST" --port="$PGPORT" \
    --dbname=contrib_regression $tests
rc=$?
m365_cluster_stop "$WORK/regress-data"
exit $rc
