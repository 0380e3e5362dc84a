package readmodel

import (
	"context"
	"database/sql"
	"fmt"
)

// MigrateTo brings the empty read model database at target (a SQLite path or
// a postgres:// URL, as Open takes it) to schema version, and no further,
// then runs stmts on it: a database as an earlier binary left it, for tests
// of an upgrade.
func MigrateTo(ctx context.Context, target string, version int, stmts ...string) error {
	d, driver := dialectSQLite, "sqlite"
	if IsPostgresURL(target) {
		d, driver = dialectPostgres, "pgx"
	}
	db, err := sql.Open(driver, target)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	if _, err := db.ExecContext(ctx, d.ddl(schemaMigrationsTable)); err != nil {
		return err
	}
	for _, m := range migrations[:version] {
		if err := migrationTx(ctx, db, d, func(tx *sql.Tx) error { return applyMigration(ctx, tx, d, m) }); err != nil {
			return fmt.Errorf("migration %d: %w", m.version, err)
		}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
