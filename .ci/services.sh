#!/usr/bin/env bash
# Install and start what the tests need beyond Python: PostgreSQL (Debian's package) and
# Chromium (the dashboard's browser test). Prints `export` lines for the caller to eval:
#   eval "$(bash .ci/services.sh)"
# Nothing here is fatal: a missing service makes its tests skip with a message naming it.
set -uo pipefail
log() { echo "services: $*" >&2; }
need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
    log "installing ${need[*]} (apt-get)"
    if ! (DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/tmp/recoforge-apt.log 2>&1 \
          || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
              apt-get install -y -q "${need[@]}" >>/tmp/recoforge-apt.log 2>&1)); then
        log "apt-get failed (see /tmp/recoforge-apt.log); the tests needing ${need[*]} skip"
    fi
fi
if command -v pg_ctlcluster >/dev/null 2>&1; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_lsclusters -h 2>/dev/null | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null 2>&1
    pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
    if pg_lsclusters -h | grep -q "^$version main .* online"; then
        port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
        su postgres -c "psql -q -p $port -c \"ALTER USER postgres PASSWORD 'recoforge'\"" >/dev/null 2>&1
        su postgres -c "psql -q -p $port -tc \"SELECT 1 FROM pg_database WHERE datname='recoforge_test'\"" \
            | grep -q 1 || su postgres -c "createdb -p $port recoforge_test" >/dev/null 2>&1
        echo "export RECOFORGE_TEST_POSTGRES_URL=postgresql+psycopg://postgres:recoforge@127.0.0.1:$port/recoforge_test"
    else
        log "PostgreSQL did not start; the PostgreSQL tests skip"
    fi
fi
command -v chromium >/dev/null 2>&1 && echo "export RECOFORGE_TEST_CHROMIUM=$(command -v chromium)"
exit 0
