package readmodel

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// Pool limits of a PostgreSQL read model. A projector holds one connection
// per runner for its transactions; the queries take the rest.
const (
	postgresMaxOpenConns    = 16
	postgresMaxIdleConns    = 8
	postgresConnMaxIdleTime = 5 * time.Minute
)

// IsPostgresURL reports whether target names a PostgreSQL database
// (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgresURL(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// Open opens the read model that target names: a postgres:// or
// postgresql:// URL (OpenPostgres), or else the path of a SQLite file
// (OpenSQLite).
func Open(ctx context.Context, target string) (*DB, error) {
	if IsPostgresURL(target) {
		return OpenPostgres(ctx, target)
	}
	return OpenSQLite(target)
}

// OpenPostgres connects to the PostgreSQL database at dsn (a postgres:// URL
// as libpq and pgx read it, e.g.
// "postgres://billing@db:5432/billing?sslmode=disable"; a search_path
// parameter selects the schema) through pgx's database/sql driver, and brings
// its schema up to date with the same migrations as SQLite (see
// migrations.go and dialect.go for the differences: NUMERIC amounts, text
// compared byte by byte, an identity column for row ids).
//
// The same statements run as on SQLite; read queries run in REPEATABLE READ
// transactions (one snapshot), projector transactions in READ COMMITTED, and
// the checkpoint's compare-and-set keeps a second writer of a projection from
// applying events twice.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	name := redactURL(dsn)
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("readmodel: open postgres %s: %w", name, err)
	}
	sqldb.SetMaxOpenConns(postgresMaxOpenConns)
	sqldb.SetMaxIdleConns(postgresMaxIdleConns)
	sqldb.SetConnMaxIdleTime(postgresConnMaxIdleTime)
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("readmodel: connect to postgres %s: %w", name, err)
	}
	db := &DB{sql: sqldb, name: name, dialect: dialectPostgres}
	if err := migrate(ctx, sqldb, dialectPostgres); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("readmodel: migrate postgres %s: %w", name, err)
	}
	return db, nil
}

// redactURL is dsn without its password, for messages and logs.
func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
