package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// UsageProjection is the checkpoint key of the usage projection, which writes
// the billable, dead_letters and dead_letter_resolutions tables. The queries on
// those tables report it as the position they reflect.
const UsageProjection = "usage"

// BillableKey identifies one row of the billable view (DESIGN R1). It is a
// comparable value, so the projector and the replay aggregate usage in a
// map[BillableKey] without building string keys.
type BillableKey struct {
	// Month is the booking month (YYYY-MM).
	Month string
	// PayerAccountID is the bill receiver for the month.
	PayerAccountID string
	// SourceAccountID is the source organization (its management account).
	SourceAccountID string
	// AccountID is the account that used the resource.
	AccountID string
	// Service is the service name, e.g. "AmazonEC2".
	Service string
	// Currency is the ISO 4217 code of the amounts.
	Currency string
}

// BillableRow is one row of the billable table.
type BillableRow struct {
	BillableKey
	// BilledCost is the exact sum of the records' billed_cost, canonical
	// (domain.CanonicalDecimal).
	BilledCost string
	// UsageQuantity is the exact sum of the records' quantity, canonical.
	UsageQuantity string
	// RecordCount is the number of usage records summed into the row.
	RecordCount uint64
	// UpdatedPosition is the store position of the last event that changed the
	// row (with batched application: the last event of that batch touching it).
	UpdatedPosition uint64
}

// Proto renders the row as the API's billingv1.BillableRow.
func (r *BillableRow) Proto() *billingv1.BillableRow {
	return &billingv1.BillableRow{
		Month:           r.Month,
		PayerAccountId:  r.PayerAccountID,
		SourceAccountId: r.SourceAccountID,
		AccountId:       r.AccountID,
		Service:         r.Service,
		BilledCost:      r.BilledCost,
		UsageQuantity:   r.UsageQuantity,
		RecordCount:     r.RecordCount,
		Currency:        r.Currency,
	}
}

const billableKeyWhere = `month = $1 AND payer_account_id = $2 AND source_account_id = $3
	AND account_id = $4 AND service = $5 AND currency = $6`

// BillableWriter reads and writes billable rows inside one transaction (the
// projector runner's) through statements prepared on first use, so a batch
// parses each statement once however many rows it touches. Close it before the
// transaction ends.
//
// Rows are read by key (Lookup) and written by row id (Insert, Update): the
// id is SQLite's rowid (in PostgreSQL, an identity column named rowid), which
// an UPDATE finds with one integer search instead of a search of the
// six-column text key, and which binds 5 parameters rather than 10. A caller
// that keeps ids across transactions must drop them when SchemaCookie changes
// (VACUUM may renumber SQLite's rowids, and bumps it).
type BillableWriter struct {
	tx                  *sql.Tx
	dialect             dialect
	get, insert, update *sql.Stmt
}

// NewBillableWriter returns a writer working in tx.
func NewBillableWriter(_ context.Context, tx *sql.Tx) (*BillableWriter, error) {
	return &BillableWriter{tx: tx, dialect: txDialect(tx)}, nil
}

// Close releases the prepared statements.
func (w *BillableWriter) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{w.get, w.insert, w.update} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	w.get, w.insert, w.update = nil, nil, nil
	return errors.Join(errs...)
}

// prepare returns *st, preparing query into it on first use.
func prepare(ctx context.Context, tx *sql.Tx, st **sql.Stmt, what, query string) (*sql.Stmt, error) {
	if *st != nil {
		return *st, nil
	}
	p, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("readmodel: prepare %s: %w", what, err)
	}
	*st = p
	return p, nil
}

// Get returns the row of k, or nil and no error when there is none yet.
func (w *BillableWriter) Get(ctx context.Context, k BillableKey) (*BillableRow, error) {
	r, _, err := w.Lookup(ctx, k)
	return r, err
}

// Lookup returns the row of k and its row id, or nil and no error when there
// is none yet.
func (w *BillableWriter) Lookup(ctx context.Context, k BillableKey) (*BillableRow, int64, error) {
	st, err := prepare(ctx, w.tx, &w.get, "billable read", `SELECT rowid, billed_cost, usage_quantity, record_count,
		updated_position FROM billable WHERE `+billableKeyWhere)
	if err != nil {
		return nil, 0, err
	}
	r := BillableRow{BillableKey: k}
	var id, count, pos int64
	err = st.QueryRowContext(ctx, k.Month, k.PayerAccountID, k.SourceAccountID, k.AccountID, k.Service, k.Currency).
		Scan(&id, &r.BilledCost, &r.UsageQuantity, &count, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("readmodel: read billable row %+v: %w", k, err)
	}
	if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
		return nil, 0, err
	}
	if r.UpdatedPosition, err = fromDBInt("updated_position", pos); err != nil {
		return nil, 0, err
	}
	return &r, id, nil
}

// Insert adds r, whose key has no row yet, and returns its row id.
func (w *BillableWriter) Insert(ctx context.Context, r *BillableRow) (int64, error) {
	count, pos, err := billableInts(r)
	if err != nil {
		return 0, err
	}
	st, err := prepare(ctx, w.tx, &w.insert, "billable insert", insertQuery(w.dialect, `INSERT INTO billable (month,
			payer_account_id, source_account_id, account_id, service, currency, billed_cost, usage_quantity, record_count,
			updated_position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`))
	if err != nil {
		return 0, err
	}
	id, err := insertRowID(ctx, w.dialect, st, r.Month, r.PayerAccountID, r.SourceAccountID, r.AccountID, r.Service,
		r.Currency, r.BilledCost, r.UsageQuantity, count, pos)
	if err != nil {
		return 0, fmt.Errorf("readmodel: write billable row %+v: %w", r.BillableKey, err)
	}
	return id, nil
}

// Update replaces the amounts, count and position of the row with id, which
// must be r's (Lookup or Insert returned it for r's key).
func (w *BillableWriter) Update(ctx context.Context, id int64, r *BillableRow) error {
	count, pos, err := billableInts(r)
	if err != nil {
		return err
	}
	st, err := prepare(ctx, w.tx, &w.update, "billable update", `UPDATE billable SET billed_cost = $1,
		usage_quantity = $2, record_count = $3, updated_position = $4 WHERE rowid = $5`)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, r.BilledCost, r.UsageQuantity, count, pos, id)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fmt.Errorf("readmodel: write billable row %+v (row %d): %w", r.BillableKey, id, err)
	}
	return nil
}

func billableInts(r *BillableRow) (count, pos int64, err error) {
	if count, err = toDBInt("record_count", r.RecordCount); err != nil {
		return 0, 0, err
	}
	if pos, err = toDBInt("updated_position", r.UpdatedPosition); err != nil {
		return 0, 0, err
	}
	return count, pos, nil
}

// oneRow checks that a write by row id changed exactly one row.
func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%d rows changed, want 1", n)
	}
	return nil
}

// ReportBillable reads the billable view (R1) of month, optionally only one
// payer's and/or one source organization's rows. Rows are ordered by payer,
// source, account, service (then currency); total is the exact sum of their
// billed_cost (canonical; every currency the ledger bills today is USD, and the
// rows carry their currency for when that changes). Checkpoint is the usage
// projection's position, read in the same snapshot as the rows. A month that
// is not YYYY-MM or an account id that is not 12 digits returns an error
// wrapping ErrInvalidFilter.
func (db *DB) ReportBillable(ctx context.Context, month, payer, source string) (*billingv1.ReportBillableResponse, error) {
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	if payer != "" && !isAccountID(payer) {
		return nil, invalidFilter("payer_account_id %q is not a 12-digit account id", payer)
	}
	if source != "" && !isAccountID(source) {
		return nil, invalidFilter("source_account_id %q is not a 12-digit account id", source)
	}
	resp := &billingv1.ReportBillableResponse{}
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if resp.Rows, err = billableRows(ctx, tx, month, payer, source); err != nil {
			return err
		}
		resp.Checkpoint, err = readCheckpoint(ctx, tx, UsageProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	total, err := sumDecimals(len(resp.Rows), func(i int) string { return resp.Rows[i].GetBilledCost() })
	if err != nil {
		return nil, fmt.Errorf("readmodel: billable total of %s: %w", month, err)
	}
	resp.Total = total
	return resp, nil
}

// billableRows reads a month's rows in report order; "" filters match all.
func billableRows(ctx context.Context, q querier, month, payer, source string) ([]*billingv1.BillableRow, error) {
	query := `SELECT month, payer_account_id, source_account_id, account_id, service, currency,
		billed_cost, usage_quantity, record_count FROM billable WHERE month = $1`
	args := []any{month}
	if payer != "" {
		args = append(args, payer)
		query += ` AND payer_account_id = $` + strconv.Itoa(len(args))
	}
	if source != "" {
		args = append(args, source)
		query += ` AND source_account_id = $` + strconv.Itoa(len(args))
	}
	query += ` ORDER BY payer_account_id, source_account_id, account_id, service, currency`
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read billable %s: %w", month, err)
	}
	defer rows.Close()
	out := []*billingv1.BillableRow{}
	for rows.Next() {
		var (
			r     billingv1.BillableRow
			count int64
		)
		if err := rows.Scan(&r.Month, &r.PayerAccountId, &r.SourceAccountId, &r.AccountId, &r.Service, &r.Currency,
			&r.BilledCost, &r.UsageQuantity, &count); err != nil {
			return nil, fmt.Errorf("readmodel: read billable %s: %w", month, err)
		}
		if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read billable %s: %w", month, err)
	}
	return out, nil
}

// checkMonth validates a required YYYY-MM month filter.
func checkMonth(month string) error {
	if month == "" {
		return invalidFilter("month is required (YYYY-MM)")
	}
	if _, err := domain.ParseMonth(month); err != nil {
		return invalidFilter("%v", err)
	}
	return nil
}

// sumDecimals returns the exact, canonical sum of n decimal strings.
func sumDecimals(n int, at func(i int) string) (string, error) {
	sum, err := domain.ParseDecimal("0")
	if err != nil {
		return "", err
	}
	for i := 0; i < n; i++ {
		d, err := domain.ParseDecimal(at(i))
		if err != nil {
			return "", err
		}
		if sum, err = domain.AddDecimal(sum, d); err != nil {
			return "", err
		}
	}
	return domain.CanonicalDecimal(sum), nil
}
