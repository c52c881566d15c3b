# Shared by scripts/test, scripts/demo and bench: locate PostgreSQL 15 and
# install what the project needs when it is missing.  Sourced, not run.

PG_MAJOR=${PG_MAJOR:-15}
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
export PG_CONFIG=${PG_CONFIG:-$PG_BINDIR/pg_config}

# Debian packages the build and every test layer need
ENR_PACKAGES="make gcc libssl-dev postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
  postgresql-$PG_MAJOR-pgtap postgresql-plperl-$PG_MAJOR libtap-parser-sourcehandler-pgtap-perl libipc-run-perl python3"

enr_have_deps() {
    [ -x "$PG_BINDIR/postgres" ] &&
    [ -f "/usr/include/postgresql/$PG_MAJOR/server/postgres.h" ] &&
    [ -f "/usr/share/postgresql/$PG_MAJOR/extension/pgtap.control" ] &&
    [ -f "/usr/share/postgresql/$PG_MAJOR/extension/plperlu.control" ] &&
    [ -f /usr/include/openssl/evp.h ] &&
    command -v pg_prove >/dev/null && command -v python3 >/dev/null && command -v gcc >/dev/null && command -v make >/dev/null &&
    perl -MIPC::Run -e1 2>/dev/null
}

# Install missing packages (needs root); a no-op when everything is there.
enr_install_deps() {
    if enr_have_deps; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "missing build or test dependencies; run as root or install: $ENR_PACKAGES" >&2
        return 1
    fi
    echo "== installing packages: $(echo $ENR_PACKAGES)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $ENR_PACKAGES >/dev/null
    enr_have_deps
}

# clang with libFuzzer and the sanitizers, for fuzz/run
enr_install_fuzz_deps() {
    if command -v clang >/dev/null && [ -n "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ]; then
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq clang libclang-rt-dev >/dev/null 2>&1 ||
        apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null
}

# Build with warnings as errors and install into the PostgreSQL tree.
enr_build_install() {
    make -s PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# Run a command as the OS user that owns clusters (initdb/postgres refuse root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# enr_init_cluster DATADIR SOCKETDIR: a cluster on a Unix socket only, with
# the library preloaded.
enr_init_cluster() {
    local data=$1 sock=$2
    as_pg "$PG_BINDIR/initdb" -D "$data" -A trust -U postgres --no-sync >/dev/null
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$sock'
shared_preload_libraries = 'enrollment'
CONF
}
