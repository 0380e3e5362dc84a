#!/usr/bin/env bash
# A throwaway PostgreSQL server for the read-model tests (issue #8): a private
# cluster under $PGTEST_DIR that listens on 127.0.0.1:$PGTEST_PORT only, trusts
# every local connection and runs with fsync off. Nothing else on the machine is
# touched, except that PostgreSQL is installed with apt-get when no initdb is found.
#
#   .ci/postgres.sh start   install if needed, create the cluster on first use, start
#                           it (a no-op when it runs already) and print the URL to
#                           export as BILLING_TEST_POSTGRES
#   .ci/postgres.sh url     print that URL
#   .ci/postgres.sh status  exit 0 when the server runs
#   .ci/postgres.sh stop    stop the server (the cluster stays; rm -rf $PGTEST_DIR drops it)
#   .ci/postgres.sh free-port  print a free loopback port from 55432 up
#
# PostgreSQL refuses to run as root: as root, initdb, pg_ctl and psql run as the
# "postgres" user the Debian packages create (or a system user "pgtest" created
# here when there is none), through runuser.
set -euo pipefail

DIR=${PGTEST_DIR:-/tmp/billing-pgtest}
PORT=${PGTEST_PORT:-55432}
DB=billing_test
ROLE=billing
URL="postgres://$ROLE@127.0.0.1:$PORT/$DB?sslmode=disable"

log() { echo "postgres.sh: $*" >&2; }

# bindir prints the directory of initdb and pg_ctl: the newest Debian-packaged
# version first, then whatever PATH has.
bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then
		echo "$d"
		return 0
	fi
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		dirname "$(readlink -f "$(command -v initdb)")"
		return 0
	fi
	return 1
}

install_postgres() {
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
		log "no initdb/pg_ctl found, and cannot apt-get install postgresql (not root, or no apt-get)"
		exit 1
	fi
	log "installing PostgreSQL with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends postgresql >&2
}

BIN=$(bindir || true)

# as runs a command as the server's OS user: the current user, or when root
# the postgres user (created here as pgtest when the machine has none), from /
# so that the command never needs to read the working directory.
OSUSER=
as() {
	if [[ $(id -u) -ne 0 ]]; then
		"$@"
		return
	fi
	if [[ -z $OSUSER ]]; then
		OSUSER=postgres
		if ! id -u "$OSUSER" >/dev/null 2>&1; then
			OSUSER=pgtest
			id -u "$OSUSER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$OSUSER"
		fi
	fi
	(cd / && runuser -u "$OSUSER" -- "$@")
}

running() { [[ -n $BIN && -f $DIR/data/PG_VERSION ]] && as "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

psql_admin() { as "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres "$@"; }

# port_busy reports whether something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
	if [[ -z $BIN ]]; then
		install_postgres
		BIN=$(bindir) || { log "PostgreSQL installed, but no initdb found"; exit 1; }
	fi
	if ! running; then
		if port_busy "$PORT"; then
			log "127.0.0.1:$PORT is taken by another server; set PGTEST_PORT (and PGTEST_DIR) to use another"
			exit 1
		fi
		mkdir -p "$DIR"
		as true # picks the OS user
		if [[ $(id -u) -eq 0 ]]; then chown "$OSUSER" "$DIR"; fi
		chmod 700 "$DIR"
		if [[ ! -f $DIR/data/PG_VERSION ]]; then
			log "creating a cluster in $DIR/data ($("$BIN/initdb" --version))"
			as "$BIN/initdb" -D "$DIR/data" -U "$ROLE" --auth=trust -E UTF8 --locale=C --no-sync >"$DIR/initdb.log"
		fi
		# Throwaway settings: loopback only, no fsync (a crash loses the test data,
		# which nobody needs), enough connections for parallel tests.
		as "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -o "-c listen_addresses=127.0.0.1 -c port=$PORT \
-c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c max_connections=300 -c shared_buffers=128MB" start >&2 || { cat "$DIR/server.log" >&2; exit 1; }
	fi
	if [[ -z $(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
		# The test database sorts text by an ICU locale when the server has ICU, so
		# that a read model relying on the database's collation instead of its
		# columns' COLLATE "C" fails the tests; plain C otherwise.
		psql_admin -c "CREATE DATABASE $DB TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'" 2>/dev/null ||
			psql_admin -c "CREATE DATABASE $DB TEMPLATE template0"
	fi
	echo "$URL"
}

stop() {
	if running; then
		as "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2
	fi
}

case ${1:-} in
free-port)
	for p in $(seq 55432 55531); do
		if ! port_busy "$p"; then
			echo "$p"
			exit 0
		fi
	done
	log "no free port in 55432-55531"
	exit 1
	;;
status) running ;;
start) start ;;
stop) stop ;;
url) echo "$URL" ;;
*)
	echo "usage: $0 start|stop|status|url|free-port" >&2
	exit 2
	;;
esac
