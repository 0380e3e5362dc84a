package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" database/sql driver
)

// DB is a read model database: SQLite (OpenSQLite) or PostgreSQL
// (OpenPostgres). It is safe for concurrent use: queries run on a pool of
// connections; write transactions are serialised by the database (SQLite), or
// by the checkpoint's compare-and-set (AdvanceCheckpoint) where the database
// lets them run side by side (PostgreSQL).
type DB struct {
	sql     *sql.DB
	name    string
	dialect dialect
}

// sqliteBusyTimeoutMS is how long a connection waits for another writer's lock
// before failing with SQLITE_BUSY. Projector transactions are short (one batch of
// events), so several seconds means something is badly stuck.
const sqliteBusyTimeoutMS = 10000

// OpenSQLite opens (creating if needed) the SQLite read model database at path
// and brings its schema up to date (see migrations.go).
//
// Connections are configured for one writer and many readers:
//   - journal_mode WAL: readers never block the writer nor the other way round;
//   - synchronous NORMAL: a commit is atomic and consistent, but the last
//     commits before a power loss (not a process crash) may be lost. That is
//     safe here because rows and checkpoint are always lost together, and the
//     projector then re-applies those events from the event store;
//   - busy_timeout: wait for the write lock instead of failing at once;
//   - foreign_keys on;
//   - _txlock=immediate: BEGIN takes the write lock up front, so two write
//     transactions never deadlock upgrading a read lock (SQLITE_BUSY_SNAPSHOT).
//
// path ":memory:" opens a private in-memory database on a single connection
// (for throwaway use; a file is what every real role uses).
func OpenSQLite(path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("readmodel: OpenSQLite: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("readmodel: OpenSQLite: path %q must not contain '?' or '#'", path)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_txlock", "immediate")
	memory := path == ":memory:"
	if !memory {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
	}
	sqldb, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("readmodel: open sqlite %s: %w", path, err)
	}
	if memory {
		// Every connection to ":memory:" is its own database.
		sqldb.SetMaxOpenConns(1)
	}
	db := &DB{sql: sqldb, name: path, dialect: dialectSQLite}
	if err := migrate(context.Background(), sqldb, dialectSQLite); err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("readmodel: migrate %s: %w", path, err)
	}
	return db, nil
}

// SQL returns the underlying *sql.DB, for dashboards, exports and tests that
// query the tables directly. Writes to projector tables belong in WithTx.
func (db *DB) SQL() *sql.DB { return db.sql }

// Close closes the database.
func (db *DB) Close() error { return db.sql.Close() }

// Backend names the database behind db: "sqlite" or "postgres".
func (db *DB) Backend() string { return db.dialect.String() }

// WithTx runs fn in one write transaction and commits it when fn returns nil;
// otherwise (or on panic) it rolls back and returns fn's error. A projector writes
// its rows and its new checkpoint through the same tx, so they are committed
// together or not at all.
//
// In PostgreSQL the transaction is READ COMMITTED. A projection is the only
// writer of its rows; a second writer of the same projection (two runners by
// mistake) waits for the rows and the checkpoint row the first one locked, then
// finds the checkpoint moved (ErrCheckpointMoved) and rolls back everything it
// wrote.
func (db *DB) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("readmodel: begin: %w", err)
	}
	if db.dialect == dialectPostgres {
		postgresTxs.Store(tx, struct{}{})
		defer postgresTxs.Delete(tx)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("readmodel: commit: %w", err)
	}
	committed = true
	return nil
}

// SchemaCookie returns the database's schema cookie (PRAGMA schema_version),
// read in tx. Every schema change and every VACUUM changes it: a projection that
// keeps row ids across transactions (BillableWriter, ProformaStore) compares it
// at the start of each transaction and forgets its ids when it moved.
//
// In PostgreSQL (a tx begun by WithTx) it is a constant: row ids are the values
// of an identity column there, which nothing renumbers (VACUUM FULL, CLUSTER
// and a dump and restore keep them).
func SchemaCookie(ctx context.Context, tx *sql.Tx) (int64, error) {
	if txDialect(tx) == dialectPostgres {
		return postgresSchemaCookie, nil
	}
	var v int64
	if err := tx.QueryRowContext(ctx, `PRAGMA schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("readmodel: read schema version: %w", err)
	}
	return v, nil
}

// postgresSchemaCookie is SchemaCookie's answer in PostgreSQL.
const postgresSchemaCookie = 1

// readTx runs fn in a read-only transaction: one consistent snapshot (in WAL
// mode it neither blocks nor waits for the writer; in PostgreSQL it is
// REPEATABLE READ, since each statement of a READ COMMITTED transaction would
// see its own snapshot). It always rolls back.
func (db *DB) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.dialect == dialectPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.sql.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("readmodel: begin read: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// querier is what *sql.DB and *sql.Tx share, so a query runs on either.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// toDBInt converts a store position or count to the signed 64-bit integer SQL
// columns hold. Positions never come near 2^63; a value that did would be a
// corrupt record, so it is refused rather than wrapped.
func toDBInt(what string, v uint64) (int64, error) {
	if v > 1<<63-1 {
		return 0, fmt.Errorf("readmodel: %s %d does not fit a BIGINT column", what, v)
	}
	return int64(v), nil
}

// fromDBInt converts a BIGINT column back to uint64, refusing negatives.
func fromDBInt(what string, v int64) (uint64, error) {
	if v < 0 {
		return 0, fmt.Errorf("readmodel: %s %d is negative", what, v)
	}
	return uint64(v), nil
}
