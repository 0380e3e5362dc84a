package readmodel

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration is one versioned step of the schema. Versions are applied in order,
// each in its own transaction with its row in schema_migrations, and a version is
// never edited once released: a change is a new migration appended to the list.
type migration struct {
	version int
	name    string
	stmts   []string
}

// migrations is the read model schema, oldest first, for both backends: TEXT
// and BIGINT columns (BIGINT has INTEGER affinity in SQLite), no SQLite-only
// types or functions, and two markers that dialect.ddl rewrites: AMOUNT, the
// type of exact decimals (TEXT in SQLite, NUMERIC in PostgreSQL), and
// rowidColumn (SQLite's implicit rowid, an identity column in PostgreSQL). The
// SQLite text of every released version is unchanged by the markers
// (TestSQLiteSchemaUnchanged).
var migrations = []migration{
	{
		version: 1,
		name:    "checkpoints",
		stmts: []string{
			// One row per projection: the store position its tables reflect.
			`CREATE TABLE checkpoints (
				projection TEXT PRIMARY KEY,
				position   BIGINT NOT NULL CHECK (position >= 0)
			)`,
		},
	},
	{
		version: 2,
		name:    "transfers",
		stmts: []string{
			// The transfers read model (DESIGN §3 "Transfers"), one row per transfer.
			// Times are UTC text in StoredTimeLayout, so text order = time order.
			`CREATE TABLE transfers (
				transfer_id       TEXT PRIMARY KEY,
				payer_account_id  TEXT NOT NULL,
				source_account_id TEXT NOT NULL,
				status            TEXT NOT NULL CHECK (status IN
				                    ('REQUESTED', 'ACCEPTED', 'DECLINED', 'CANCELED', 'EXPIRED', 'WITHDRAWN')),
				start_time        TEXT NOT NULL,
				end_time          TEXT,
				pricing_plan_id   TEXT NOT NULL DEFAULT '',
				expires_at        TEXT,
				notes             TEXT NOT NULL DEFAULT '',
				event_count       BIGINT NOT NULL CHECK (event_count > 0),
				updated_position  BIGINT NOT NULL CHECK (updated_position > 0),
				updated_at        TEXT NOT NULL
			)`,
			`CREATE INDEX transfers_payer ON transfers (payer_account_id, transfer_id)`,
			`CREATE INDEX transfers_source ON transfers (source_account_id, transfer_id)`,
		},
	},
	{
		version: 3,
		name:    "usage",
		stmts: []string{
			// The billable view (DESIGN R1): month × payer × source organization ×
			// account × service (× currency) → billed cost, usage quantity, record
			// count. Amounts are exact decimals (AMOUNT) in canonical form (see
			// domain.CanonicalDecimal); they are summed in Go with apd, never in SQL.
			`CREATE TABLE billable (` + rowidColumn + `
				month             TEXT NOT NULL,
				payer_account_id  TEXT NOT NULL,
				source_account_id TEXT NOT NULL,
				account_id        TEXT NOT NULL,
				service           TEXT NOT NULL,
				currency          TEXT NOT NULL,
				billed_cost       AMOUNT NOT NULL,
				usage_quantity    AMOUNT NOT NULL,
				record_count      BIGINT NOT NULL CHECK (record_count > 0),
				updated_position  BIGINT NOT NULL CHECK (updated_position > 0),
				PRIMARY KEY (month, payer_account_id, source_account_id, account_id, service, currency)
			)`,
			`CREATE INDEX billable_source ON billable (month, source_account_id)`,
			// The usage dead letter (DESIGN U4), one row per rejected record. month
			// is the booking month of the usage stream the rejection was recorded
			// on; entry is the UsageRejected exactly as recorded (base64 of its
			// deterministic protobuf encoding), which DeadLetterRecords returns for
			// a redrive; payload is its human-readable form. resolved_* is set by the
			// first batch that names the id in redriven_dead_letter_ids.
			`CREATE TABLE dead_letters (
				dead_letter_id    TEXT PRIMARY KEY,
				month             TEXT NOT NULL,
				reason            TEXT NOT NULL,
				message           TEXT NOT NULL,
				usage_id          TEXT NOT NULL,
				payload           TEXT NOT NULL,
				origin            TEXT NOT NULL,
				entry             TEXT NOT NULL,
				recorded_position BIGINT NOT NULL CHECK (recorded_position > 0),
				recorded_index    BIGINT NOT NULL CHECK (recorded_index >= 0),
				recorded_at       TEXT NOT NULL,
				resolved_position BIGINT,
				resolved_at       TEXT
			)`,
			`CREATE INDEX dead_letters_month ON dead_letters (month, dead_letter_id)`,
			`CREATE INDEX dead_letters_open ON dead_letters (recorded_position, recorded_index)
				WHERE resolved_position IS NULL`,
			// Every (month, dead letter) resolution, the first per month: a redrive
			// recorded on month M's usage streams belongs to M's replay (R2), even
			// when the dead letter was recorded in another month or resolved twice.
			`CREATE TABLE dead_letter_resolutions (
				month          TEXT NOT NULL,
				dead_letter_id TEXT NOT NULL,
				position       BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (month, dead_letter_id)
			)`,
		},
	},
	{
		version: 4,
		name:    "proforma",
		stmts: []string{
			// The proforma projection's copy of the pricing configuration (DESIGN
			// P1–P5, T8) as it stands after the events applied so far. Rules and
			// custom line items are kept exactly as their latest event carries them
			// (base64 of the deterministic protobuf encoding). Deleted aggregates
			// are removed: their ids are never reused.
			`CREATE TABLE proforma_rules (
				pricing_rule_id  TEXT PRIMARY KEY,
				owner_account_id TEXT NOT NULL,
				rule             TEXT NOT NULL
			)`,
			`CREATE TABLE proforma_plans (
				pricing_plan_id  TEXT PRIMARY KEY,
				owner_account_id TEXT NOT NULL
			)`,
			// The rules a plan holds; seq keeps the order they were associated in.
			`CREATE TABLE proforma_plan_rules (
				pricing_plan_id TEXT NOT NULL,
				pricing_rule_id TEXT NOT NULL,
				seq             BIGINT NOT NULL,
				PRIMARY KEY (pricing_plan_id, pricing_rule_id)
			)`,
			`CREATE INDEX proforma_plan_rules_rule ON proforma_plan_rules (pricing_rule_id)`,
			// Billing groups; transfer_id and start_month are set for transfer
			// billing groups (T8), which price their accounts from start_month to
			// the transfer's end (proforma_transfer_ends).
			`CREATE TABLE proforma_groups (
				billing_group_id   TEXT PRIMARY KEY,
				owner_account_id   TEXT NOT NULL,
				primary_account_id TEXT NOT NULL,
				pricing_plan_id    TEXT NOT NULL,
				transfer_id        TEXT NOT NULL,
				start_month        TEXT NOT NULL
			)`,
			`CREATE INDEX proforma_groups_plan ON proforma_groups (pricing_plan_id)`,
			`CREATE INDEX proforma_groups_primary ON proforma_groups (owner_account_id, primary_account_id)`,
			`CREATE INDEX proforma_groups_transfer ON proforma_groups (transfer_id)`,
			`CREATE TABLE proforma_group_accounts (
				billing_group_id TEXT NOT NULL,
				account_id       TEXT NOT NULL,
				owner_account_id TEXT NOT NULL,
				PRIMARY KEY (billing_group_id, account_id)
			)`,
			`CREATE INDEX proforma_group_accounts_owner ON proforma_group_accounts (owner_account_id, account_id)`,
			// Last month of each withdrawn transfer (T5).
			`CREATE TABLE proforma_transfer_ends (
				transfer_id TEXT PRIMARY KEY,
				end_month   TEXT NOT NULL
			)`,
			`CREATE TABLE proforma_items (
				custom_line_item_id TEXT PRIMARY KEY,
				owner_account_id    TEXT NOT NULL,
				billing_group_id    TEXT NOT NULL,
				item                TEXT NOT NULL
			)`,
			// Per-SKU usage aggregates (P4): booking month × bill receiver (payer) ×
			// direct payer × account × service × usage type × operation × free tier
			// → list cost, billed cost, quantity, record count. A re-rate reads
			// these, never the events, so it costs O(distinct SKUs). Exact decimals
			// (AMOUNT), summed in Go with apd.
			`CREATE TABLE proforma_usage (` + rowidColumn + `
				month                   TEXT NOT NULL,
				payer_account_id        TEXT NOT NULL,
				direct_payer_account_id TEXT NOT NULL,
				account_id              TEXT NOT NULL,
				service                 TEXT NOT NULL,
				usage_type              TEXT NOT NULL,
				operation               TEXT NOT NULL,
				free_tier               BIGINT NOT NULL CHECK (free_tier IN (0, 1)),
				list_cost               AMOUNT NOT NULL,
				billed_cost             AMOUNT NOT NULL,
				usage_quantity          AMOUNT NOT NULL,
				record_count            BIGINT NOT NULL CHECK (record_count > 0),
				PRIMARY KEY (month, payer_account_id, direct_payer_account_id, account_id, service, usage_type, operation, free_tier)
			)`,
			`CREATE INDEX proforma_usage_payer ON proforma_usage (payer_account_id, month)`,
			`CREATE INDEX proforma_usage_direct ON proforma_usage (direct_payer_account_id, month)`,
			// The pro forma view (DESIGN R1): booking month × bill receiver ×
			// pricing payer (the group's owner) × billing group × account ×
			// service → list cost, billable cost (what the pricing payer is
			// billed), pro forma cost, record count. billing_group_id '' holds
			// usage no group of the owner prices (at list cost). Custom line
			// items are computed at query time from proforma_items.
			`CREATE TABLE proforma (` + rowidColumn + `
				month             TEXT NOT NULL,
				payer_account_id  TEXT NOT NULL,
				owner_account_id  TEXT NOT NULL,
				billing_group_id  TEXT NOT NULL,
				account_id        TEXT NOT NULL,
				service           TEXT NOT NULL,
				list_cost         AMOUNT NOT NULL,
				billable_cost     AMOUNT NOT NULL,
				proforma_cost     AMOUNT NOT NULL,
				record_count      BIGINT NOT NULL CHECK (record_count > 0),
				PRIMARY KEY (month, payer_account_id, owner_account_id, billing_group_id, account_id, service)
			)`,
			`CREATE INDEX proforma_group ON proforma (owner_account_id, billing_group_id, month)`,
			`CREATE INDEX proforma_account ON proforma (account_id, month, owner_account_id, billing_group_id)`,
		},
	},
	{
		version: 5,
		name:    "pending invitations",
		stmts: []string{
			// The expiry sweeper asks for pending invitations past their deadline.
			`CREATE INDEX transfers_pending ON transfers (status, expires_at)`,
		},
	},
	{
		version: 6,
		name:    "invoices and payments",
		stmts: []string{
			// The invoices projection (billing.month.<payer>.<M>): closes (X5),
			// invoices as issued, their lines and taxes (R1 tax view). Amounts
			// are exact decimals (AMOUNT) as the events carry them (the currency's
			// minor unit, "12.30"), added in Go with apd, never in SQL.
			`CREATE TABLE closed_months (
				payer_account_id TEXT NOT NULL,
				month            TEXT NOT NULL,
				invoice_date     TEXT NOT NULL,
				invoice_count    BIGINT NOT NULL CHECK (invoice_count >= 0),
				usage_records    BIGINT NOT NULL CHECK (usage_records >= 0),
				closed_at        TEXT NOT NULL,
				position         BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (payer_account_id, month)
			)`,
			`CREATE INDEX closed_months_month ON closed_months (month, payer_account_id)`,
			`CREATE TABLE invoices (
				invoice_id                      TEXT PRIMARY KEY,
				payer_account_id                TEXT NOT NULL,
				month                           TEXT NOT NULL,
				source_account_id               TEXT NOT NULL,
				invoice_unit_id                 TEXT NOT NULL,
				invoice_unit_name               TEXT NOT NULL,
				receiver_account_id             TEXT NOT NULL,
				seller                          TEXT NOT NULL,
				currency                        TEXT NOT NULL,
				invoice_date                    TEXT NOT NULL,
				bill_to_legal_name              TEXT NOT NULL,
				bill_to_tax_registration_number TEXT NOT NULL,
				payment_method                  TEXT NOT NULL,
				subtotal                        AMOUNT NOT NULL,
				tax                             AMOUNT NOT NULL,
				total                           AMOUNT NOT NULL,
				position                        BIGINT NOT NULL CHECK (position > 0)
			)`,
			`CREATE INDEX invoices_month ON invoices (month, payer_account_id, source_account_id)`,
			`CREATE INDEX invoices_source ON invoices (month, source_account_id)`,
			// Charge periods are StoredTimeLayout text, '' when the event has none.
			`CREATE TABLE invoice_lines (
				invoice_id          TEXT NOT NULL,
				line_number         BIGINT NOT NULL CHECK (line_number > 0),
				account_id          TEXT NOT NULL,
				service             TEXT NOT NULL,
				charge_month        TEXT NOT NULL,
				charge_class        TEXT NOT NULL,
				usage_currency      TEXT NOT NULL,
				billed_cost         OPTIONAL_AMOUNT,
				fx_rate             OPTIONAL_AMOUNT,
				fx_effective_date   TEXT NOT NULL,
				converted           OPTIONAL_AMOUNT,
				amount              AMOUNT NOT NULL,
				jurisdiction        TEXT NOT NULL,
				tax_reason          TEXT NOT NULL,
				usage_records       BIGINT NOT NULL CHECK (usage_records >= 0),
				charge_period_start TEXT NOT NULL,
				charge_period_end   TEXT NOT NULL,
				PRIMARY KEY (invoice_id, line_number)
			)`,
			// seq is the tax's 1-based place on the invoice (jurisdiction, then reason).
			`CREATE TABLE invoice_taxes (
				invoice_id          TEXT NOT NULL,
				seq                 BIGINT NOT NULL CHECK (seq > 0),
				jurisdiction        TEXT NOT NULL,
				reason              TEXT NOT NULL,
				rate_percentage     OPTIONAL_AMOUNT,
				rate_effective_from TEXT NOT NULL,
				taxable             AMOUNT NOT NULL,
				tax                 AMOUNT NOT NULL,
				PRIMARY KEY (invoice_id, seq)
			)`,
			// The payments projection (billing.receivable.<payer>, Y2, Y3): one
			// receivable per posted invoice (issued = its total; paid,
			// outstanding and status follow the allocations' outstanding_after),
			// payments, their allocations and refunds.
			`CREATE TABLE receivables (
				invoice_id        TEXT PRIMARY KEY,
				payer_account_id  TEXT NOT NULL,
				month             TEXT NOT NULL,
				source_account_id TEXT NOT NULL,
				invoice_unit_id   TEXT NOT NULL,
				seller            TEXT NOT NULL,
				currency          TEXT NOT NULL,
				issued            AMOUNT NOT NULL,
				paid              AMOUNT NOT NULL,
				outstanding       AMOUNT NOT NULL,
				status            TEXT NOT NULL CHECK (status IN ('OPEN', 'PARTIALLY_PAID', 'PAID')),
				posted_position   BIGINT NOT NULL CHECK (posted_position > 0),
				updated_position  BIGINT NOT NULL CHECK (updated_position > 0)
			)`,
			`CREATE INDEX receivables_payer ON receivables (payer_account_id, month, source_account_id)`,
			`CREATE INDEX receivables_month ON receivables (month, payer_account_id)`,
			`CREATE INDEX receivables_source ON receivables (source_account_id, month)`,
			`CREATE TABLE payments (
				payer_account_id TEXT NOT NULL,
				payment_id       TEXT NOT NULL,
				amount           AMOUNT NOT NULL,
				currency         TEXT NOT NULL,
				method           TEXT NOT NULL,
				unapplied        AMOUNT NOT NULL,
				refunded         AMOUNT NOT NULL,
				received_at      TEXT NOT NULL,
				position         BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (payer_account_id, payment_id)
			)`,
			`CREATE TABLE payment_allocations (
				payer_account_id       TEXT NOT NULL,
				payment_id             TEXT NOT NULL,
				seq                    BIGINT NOT NULL CHECK (seq > 0),
				invoice_id             TEXT NOT NULL,
				bill_source_account_id TEXT NOT NULL,
				amount                 AMOUNT NOT NULL,
				outstanding_after      AMOUNT NOT NULL,
				position               BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (payer_account_id, payment_id, seq)
			)`,
			`CREATE INDEX payment_allocations_invoice ON payment_allocations (invoice_id)`,
			`CREATE TABLE payment_refunds (
				payer_account_id TEXT NOT NULL,
				payment_id       TEXT NOT NULL,
				seq              BIGINT NOT NULL CHECK (seq > 0),
				amount           AMOUNT NOT NULL,
				currency         TEXT NOT NULL,
				unapplied_after  AMOUNT NOT NULL,
				refunded_at      TEXT NOT NULL,
				position         BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (payer_account_id, payment_id, seq)
			)`,
		},
	},
	{
		version: 7,
		name:    "proforma closed months",
		stmts: []string{
			// Universes (month, bill receiver) the payer has closed, as the
			// proforma projection saw MonthClosed: a closed month is never
			// re-rated (P4), its pro forma keeps the configuration of its close (R3).
			`CREATE TABLE proforma_closed (
				month            TEXT NOT NULL,
				payer_account_id TEXT NOT NULL,
				position         BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (month, payer_account_id)
			)`,
		},
	},
	{
		version: 8,
		name:    "custom line items frozen by a close",
		stmts: []string{
			// The custom line items of an owner as they stood when it closed
			// a month (MonthClosed of that payer): the month's pro forma
			// prices these, not the live proforma_items, so changing or
			// deleting an item later leaves the closed month as it was (P5, R3).
			`CREATE TABLE proforma_closed_items (
				month               TEXT NOT NULL,
				owner_account_id    TEXT NOT NULL,
				custom_line_item_id TEXT NOT NULL,
				billing_group_id    TEXT NOT NULL,
				item                TEXT NOT NULL,
				PRIMARY KEY (month, owner_account_id, custom_line_item_id)
			)`,
			// Months closed before this version froze nothing: they keep the
			// items as they stand at the upgrade, as they showed until then.
			`INSERT INTO proforma_closed_items (month, owner_account_id, custom_line_item_id, billing_group_id, item)
			SELECT c.month, i.owner_account_id, i.custom_line_item_id, i.billing_group_id, i.item
			FROM proforma_closed c JOIN proforma_items i ON i.owner_account_id = c.payer_account_id`,
		},
	},
	{
		version: 9,
		name:    "credit notes",
		stmts: []string{
			// A posted invoice whose total is negative is a credit note (Y2,
			// Y3): status CREDIT while credit remains, then CREDIT_APPLIED.
			// credit_applied and remaining_credit are set for credit notes only
			// (NULL for an invoice). SQLite cannot change a CHECK, so the
			// receivables table is rebuilt with the new statuses and columns.
			`CREATE TABLE receivables_v9 (
				invoice_id        TEXT PRIMARY KEY,
				payer_account_id  TEXT NOT NULL,
				month             TEXT NOT NULL,
				source_account_id TEXT NOT NULL,
				invoice_unit_id   TEXT NOT NULL,
				seller            TEXT NOT NULL,
				currency          TEXT NOT NULL,
				issued            AMOUNT NOT NULL,
				paid              AMOUNT NOT NULL,
				outstanding       AMOUNT NOT NULL,
				status            TEXT NOT NULL CHECK (status IN
				                    ('OPEN', 'PARTIALLY_PAID', 'PAID', 'CREDIT', 'CREDIT_APPLIED')),
				credit_applied    AMOUNT,
				remaining_credit  AMOUNT,
				posted_position   BIGINT NOT NULL CHECK (posted_position > 0),
				updated_position  BIGINT NOT NULL CHECK (updated_position > 0)
			)`,
			// Before this version a credit note was stored PAID, with paid and
			// outstanding the currency's zero, and nothing could apply it: it
			// becomes CREDIT with all its credit (−issued) remaining, as the
			// payments projection now posts it. An amount is stored as written
			// (exact TEXT in SQLite, NUMERIC in PostgreSQL), so the sign is
			// read, and dropped, as text.
			`INSERT INTO receivables_v9 (invoice_id, payer_account_id, month, source_account_id, invoice_unit_id,
				seller, currency, issued, paid, outstanding, status, credit_applied, remaining_credit,
				posted_position, updated_position)
			SELECT invoice_id, payer_account_id, month, source_account_id, invoice_unit_id,
				seller, currency, issued, paid, outstanding,
				CASE WHEN CAST(issued AS text) LIKE '-%' THEN 'CREDIT' ELSE status END,
				CASE WHEN CAST(issued AS text) LIKE '-%' THEN paid END,
				CASE WHEN CAST(issued AS text) LIKE '-%' THEN CAST(SUBSTR(CAST(issued AS text), 2) AS AMOUNT) END,
				posted_position, updated_position
			FROM receivables`,
			`DROP TABLE receivables`,
			`ALTER TABLE receivables_v9 RENAME TO receivables`,
			`CREATE INDEX receivables_payer ON receivables (payer_account_id, month, source_account_id)`,
			`CREATE INDEX receivables_month ON receivables (month, payer_account_id)`,
			`CREATE INDEX receivables_source ON receivables (source_account_id, month)`,
			// Each ApplyCredit (CreditApplied): seq is its 1-based place among
			// the credit note's applications; applied_at the event's recorded_at.
			`CREATE TABLE credit_applications (
				payer_account_id       TEXT NOT NULL,
				credit_note_id         TEXT NOT NULL,
				seq                    BIGINT NOT NULL CHECK (seq > 0),
				bill_source_account_id TEXT NOT NULL,
				currency               TEXT NOT NULL,
				amount                 AMOUNT NOT NULL,
				remaining_credit       AMOUNT NOT NULL,
				applied_at             TEXT NOT NULL,
				position               BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (payer_account_id, credit_note_id, seq)
			)`,
			// The invoices each application settled, in order.
			`CREATE TABLE credit_allocations (
				payer_account_id       TEXT NOT NULL,
				credit_note_id         TEXT NOT NULL,
				application_seq        BIGINT NOT NULL CHECK (application_seq > 0),
				seq                    BIGINT NOT NULL CHECK (seq > 0),
				invoice_id             TEXT NOT NULL,
				bill_source_account_id TEXT NOT NULL,
				amount                 AMOUNT NOT NULL,
				outstanding_after      AMOUNT NOT NULL,
				position               BIGINT NOT NULL CHECK (position > 0),
				PRIMARY KEY (payer_account_id, credit_note_id, application_seq, seq)
			)`,
			`CREATE INDEX credit_allocations_invoice ON credit_allocations (invoice_id)`,
		},
	},
}

// SchemaVersion is the schema version this binary creates and understands: the
// version of the last migration (a test keeps them equal).
const SchemaVersion = 9

// migrate applies every migration the database has not recorded yet, each
// statement rewritten for d (dialect.ddl). It refuses a database whose schema
// is newer than this binary knows, rather than writing to tables it does not
// understand.
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	err := migrationTx(ctx, db, d, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, d.ddl(schemaMigrationsTable))
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var newest sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest.Valid && newest.Int64 > SchemaVersion {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", newest.Int64, SchemaVersion)
	}
	for _, m := range migrations {
		if err := migrationTx(ctx, db, d, func(tx *sql.Tx) error { return applyMigration(ctx, tx, d, m) }); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// schemaMigrationsTable records the versions applied.
const schemaMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`

// migrationLockKey is the PostgreSQL advisory lock that serialises migrations
// (an arbitrary constant: "billing" in ASCII).
const migrationLockKey = 0x62696c6c696e67

// migrationTx runs fn in a transaction that no other process's migration
// runs beside: in SQLite the transaction is immediate, hence exclusive; in
// PostgreSQL it first takes an advisory lock held until it ends. So two
// processes opening the same database at once apply each migration exactly once.
func migrationTx(ctx context.Context, db *sql.DB, d dialect, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if d == dialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockKey)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// applyMigration applies m in tx unless it is recorded already.
func applyMigration(ctx context.Context, tx *sql.Tx, d dialect, m migration) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	for _, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, d.ddl(stmt)); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.version, m.name, FormatStoredTime(time.Now()))
	return err
}
