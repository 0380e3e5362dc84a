// Package readmodeltest gives tests a fresh, empty read model database on each
// backend: a SQLite file in the test's temporary directory, and a schema of
// its own on the PostgreSQL server that BILLING_TEST_POSTGRES names. A test
// table-driven over Backends (or Each) runs against both; without that
// variable the PostgreSQL cases are skipped with a message saying how to run
// them, and with it set they must reach the server (an unreachable server
// fails the test rather than skipping it, so CI cannot pass by accident).
package readmodeltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for the admin connection

	"github.com/billtransfer/ledger/readmodel"
)

// EnvPostgres names the environment variable holding the URL of the
// PostgreSQL server (and database) the tests use, e.g.
// "postgres://billing@127.0.0.1:55432/billing_test?sslmode=disable", as
// `.ci/postgres.sh start` (make pg-start) prints it. Each test gets a schema
// of its own in that database and drops it when it ends.
const EnvPostgres = "BILLING_TEST_POSTGRES"

// Backend is a read model backend.
type Backend string

// The backends.
const (
	SQLite   Backend = "sqlite"
	Postgres Backend = "postgres"
)

// Backends lists every backend, SQLite first.
var Backends = []Backend{SQLite, Postgres}

// Each runs fn as a parallel subtest per backend, named after it.
func Each(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// Target returns a new, empty database of b for t, as readmodel.Open takes
// it (any number of times): a file path under t.TempDir() for SQLite; for
// PostgreSQL a URL whose search_path is a schema created for t and dropped,
// with everything in it, when t ends. Close what you open on it before t ends.
// For PostgreSQL without BILLING_TEST_POSTGRES it skips t.
func (b Backend) Target(t testing.TB) string {
	t.Helper()
	switch b {
	case SQLite:
		return filepath.Join(t.TempDir(), "readmodel.db")
	case Postgres:
		return postgresTarget(t)
	}
	t.Fatalf("readmodeltest: unknown backend %q", b)
	return ""
}

// Open opens a new, empty database of b (Target), closed when t ends.
func (b Backend) Open(t testing.TB) *readmodel.DB {
	t.Helper()
	target := b.Target(t)
	db, err := readmodel.Open(context.Background(), target)
	if err != nil {
		t.Fatalf("open %s read model: %v", b, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// SkipReason is why the PostgreSQL cases are skipped ("" when they run).
func SkipReason() string {
	if os.Getenv(EnvPostgres) != "" {
		return ""
	}
	return "PostgreSQL read model not tested: " + EnvPostgres + " is not set. " +
		"Start a throwaway server with `make pg-start` and export the URL it prints " +
		"(.ci/run does both), e.g. " + EnvPostgres + "=$(.ci/postgres.sh start)"
}

// admin is the connection that creates and drops the tests' schemas.
var admin struct {
	once sync.Once
	db   *sql.DB
	base *url.URL
	err  error
}

func adminDB() (*sql.DB, *url.URL, error) {
	admin.once.Do(func() {
		raw := os.Getenv(EnvPostgres)
		u, err := url.Parse(raw)
		if err != nil || !readmodel.IsPostgresURL(raw) {
			admin.err = fmt.Errorf("%s=%q is not a postgres:// URL", EnvPostgres, raw)
			return
		}
		db, err := sql.Open("pgx", raw)
		if err != nil {
			admin.err = err
			return
		}
		db.SetMaxOpenConns(4)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			admin.err = fmt.Errorf("%s=%s: cannot connect: %w", EnvPostgres, u.Redacted(), err)
			return
		}
		admin.db, admin.base = db, u
	})
	return admin.db, admin.base, admin.err
}

func postgresTarget(t testing.TB) string {
	t.Helper()
	if reason := SkipReason(); reason != "" {
		t.Skip(reason)
	}
	db, base, err := adminDB()
	if err != nil {
		t.Fatalf("readmodeltest: %v", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "rmtest_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("readmodeltest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("readmodeltest: drop schema %s: %v", schema, err)
		}
	})
	u := *base
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
