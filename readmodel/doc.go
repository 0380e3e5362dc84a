// Package readmodel stores the ledger's read models: the tables the projectors
// write (DESIGN §4) and the queries the API, the dashboard and billctl run on them.
//
// Map of the package:
//   - sqlite.go       OpenSQLite and DB: the embedded SQLite backend (WAL, busy
//     timeout, immediate write transactions) and WithTx, the one transaction in
//     which a projector writes its rows and its checkpoint
//   - postgres.go     OpenPostgres (pgx's database/sql driver) and Open, which
//     picks the backend from its argument (a postgres:// URL or a file path)
//   - dialect.go      what differs between the two: the schema markers
//     (AMOUNT → TEXT or NUMERIC, the rowid column), read snapshots,
//     SchemaCookie, how amounts copied from events are stored (plainAmount)
//   - migrations.go   the ordered, versioned schema, applied at open and recorded
//     in schema_migrations, one list for both backends
//   - checkpoints.go  per-projection checkpoints (store positions), advanced with an
//     optimistic guard so two runners can never both apply the same events
//   - transfers.go    the transfers read model: TransferRow, its statuses, the row
//     reads/writes used by the projector and the ListTransfers query
//   - billable.go     the billable view (R1): BillableKey, BillableRow, the
//     BillableWriter the usage projector reads rows with (by key) and writes
//     them with (by row id), and the ReportBillable query
//   - deadletters.go  the usage dead letter (U4): InsertDeadLetter and
//     ResolveDeadLetter for the projector, ListDeadLetters, and
//     DeadLetterRecords, the exact rejected entries a redrive re-ingests
//   - proforma_store.go  the proforma projection's tables (pricing
//     configuration, per-SKU usage aggregates, pro forma rows) and
//     ProformaStore, through which the projection reads and writes them
//   - proforma.go     the ReportProforma and ReportCost queries (custom line
//     items priced at query time with domain.PriceGroupMonth, P5; margin and
//     MarginPercentage, P6) and ProformaDigests (R2)
//   - invoices.go     the invoices projection's tables (closed_months,
//     invoices, invoice_lines, invoice_taxes) and the payments projection's
//     (receivables, payments, payment_allocations, payment_refunds,
//     credit_applications, credit_allocations), with the row reads and writes
//     the projections use
//   - invoices_query.go  the ReportInvoices, ReportPayments and ReportTax
//     queries (amounts summed per currency with apd) and InvoiceDigests (R2);
//     *DB is the API's InvoiceReader port as it is
//   - digest.go       replay digests (R2): BillableDigest and DeadLetterDigest
//     (SHA-256 over canonical sorted rows, with exact totals) and MonthDigest,
//     the live tables' digests of a month
//   - timefmt.go      how times are stored (fixed-width UTC text) and shown (RFC 3339)
//
// The package holds storage only: which row an event produces is decided by the
// pure reducers in package projections, which call the row functions here inside
// the runner's transaction. One set of SQL statements runs on SQLite and on
// PostgreSQL ($N placeholders, ON CONFLICT upserts, TEXT and BIGINT columns);
// the projectors' per-row writes address a row by its rowid once they know it
// (BillableWriter, ProformaStore), SQLite's implicit one or, in PostgreSQL, an
// identity column of that name (learnt from LastInsertId or RETURNING rowid). Amounts are exact
// decimals, stored as canonical TEXT in SQLite (domain.CanonicalDecimal) and
// as NUMERIC in PostgreSQL, and added in Go with apd, never in SQL. The
// subpackage readmodeltest opens a fresh database of either backend for tests.
package readmodel
