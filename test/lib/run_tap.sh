# Runs the TAP tests in test/t (as the server's OS user).
set -u
pgxs=$("$M365_BIN/pg_config" --pkglibdir)/pgxs
mkdir -p "$WORK/tap" && cd "$WORK/tap" || exit 1
export PG_REGRESS=$pgxs/src/test/regress/pg_regress
export M365_SRC=$WORK/src
export TESTDIR=$WORK/tap
files=()
for f in "$WORK"/src/test/t/*.pl; do
    case " ${TAP_SKIP:-} " in *" $(basename "$f" | cut -c1-3) "*) continue ;; esac
    if [ -z "${TAP_FILES:-}" ]; then files+=("$f"); continue; fi
    for p in $TAP_FILES; do case $(basename "$f") in "$p"*) files+=("$f") ;; esac; done
done
prove -v -I "$pgxs/src/test/perl" -I "$WORK/src/test/t/lib" "${files[@]}"
