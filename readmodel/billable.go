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
// projector runner's) through prepared statements: the usage projection does
// one read-modify-write per touched row and batch, so the statements are
// parsed once per batch rather than once per row. Close it before the
// transaction ends.
type BillableWriter struct {
	get, put *sql.Stmt
}

// NewBillableWriter prepares the row statements on tx.
func NewBillableWriter(ctx context.Context, tx *sql.Tx) (*BillableWriter, error) {
	get, err := tx.PrepareContext(ctx, `SELECT billed_cost, usage_quantity, record_count, updated_position
		FROM billable WHERE `+billableKeyWhere)
	if err != nil {
		return nil, fmt.Errorf("readmodel: prepare billable read: %w", err)
	}
	put, err := tx.PrepareContext(ctx, `INSERT INTO billable (month, payer_account_id, source_account_id,
			account_id, service, currency, billed_cost, usage_quantity, record_count, updated_position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (month, payer_account_id, source_account_id, account_id, service, currency) DO UPDATE SET
			billed_cost = excluded.billed_cost,
			usage_quantity = excluded.usage_quantity,
			record_count = excluded.record_count,
			updated_position = excluded.updated_position`)
	if err != nil {
		_ = get.Close()
		return nil, fmt.Errorf("readmodel: prepare billable write: %w", err)
	}
	return &BillableWriter{get: get, put: put}, nil
}

// Close releases the prepared statements.
func (w *BillableWriter) Close() error {
	return errors.Join(w.get.Close(), w.put.Close())
}

// Get returns the row of k, or nil and no error when there is none yet.
func (w *BillableWriter) Get(ctx context.Context, k BillableKey) (*BillableRow, error) {
	r := BillableRow{BillableKey: k}
	var count, pos int64
	err := w.get.QueryRowContext(ctx, k.Month, k.PayerAccountID, k.SourceAccountID, k.AccountID, k.Service, k.Currency).
		Scan(&r.BilledCost, &r.UsageQuantity, &count, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: read billable row %+v: %w", k, err)
	}
	if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
		return nil, err
	}
	if r.UpdatedPosition, err = fromDBInt("updated_position", pos); err != nil {
		return nil, err
	}
	return &r, nil
}

// Put inserts or replaces r.
func (w *BillableWriter) Put(ctx context.Context, r *BillableRow) error {
	count, err := toDBInt("record_count", r.RecordCount)
	if err != nil {
		return err
	}
	pos, err := toDBInt("updated_position", r.UpdatedPosition)
	if err != nil {
		return err
	}
	if _, err := w.put.ExecContext(ctx, r.Month, r.PayerAccountID, r.SourceAccountID, r.AccountID, r.Service, r.Currency,
		r.BilledCost, r.UsageQuantity, count, pos); err != nil {
		return fmt.Errorf("readmodel: write billable row %+v: %w", r.BillableKey, err)
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
