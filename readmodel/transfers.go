package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TransferStatus is the status column of the transfers read model (DESIGN T3).
type TransferStatus string

// The transfer statuses, as stored and as shown by the API. Never rename one.
const (
	TransferRequested TransferStatus = "REQUESTED"
	TransferAccepted  TransferStatus = "ACCEPTED"
	TransferDeclined  TransferStatus = "DECLINED"
	TransferCanceled  TransferStatus = "CANCELED"
	TransferExpired   TransferStatus = "EXPIRED"
	TransferWithdrawn TransferStatus = "WITHDRAWN"
)

// TransferStatuses lists every status in lifecycle order.
var TransferStatuses = []TransferStatus{
	TransferRequested, TransferAccepted, TransferDeclined, TransferCanceled, TransferExpired, TransferWithdrawn,
}

// ParseTransferStatus parses a status name, ignoring case ("accepted" is ACCEPTED).
func ParseTransferStatus(s string) (TransferStatus, error) {
	u := TransferStatus(strings.ToUpper(strings.TrimSpace(s)))
	for _, st := range TransferStatuses {
		if u == st {
			return st, nil
		}
	}
	return "", fmt.Errorf("%q is not a transfer status (want REQUESTED, ACCEPTED, DECLINED, CANCELED, EXPIRED or WITHDRAWN)", s)
}

// TransferRow is one row of the transfers table: the current state of one
// transfer as the events of its stream (billing.transfer.<id>) describe it.
type TransferRow struct {
	// TransferID is the primary key.
	TransferID string
	// PayerAccountID is the bill transfer account.
	PayerAccountID string
	// SourceAccountID is the bill source organization's management account.
	SourceAccountID string
	// Status is the lifecycle state.
	Status TransferStatus
	// StartTime is 00:00:00 UTC on the first day of the start month.
	StartTime time.Time
	// EndTime is the last instant of a withdrawn transfer; zero (NULL) while open-ended.
	EndTime time.Time
	// PricingPlanID is the invitation's pricing plan; "" = base pricing.
	PricingPlanID string
	// ExpiresAt is the invitation deadline; zero (NULL) when the event carried none.
	ExpiresAt time.Time
	// Notes is the payer's free text.
	Notes string
	// EventCount is how many events have been applied to the row. Each event is
	// applied exactly once, so it equals the number of transfer events on the
	// stream up to UpdatedPosition; tests use it to prove nothing was applied twice.
	EventCount uint64
	// UpdatedPosition is the store position of the last event applied to the row.
	UpdatedPosition uint64
	// UpdatedAt is the recorded_at of that event.
	UpdatedAt time.Time
}

// Proto renders the row as the API's billingv1.Transfer (times in RFC 3339 UTC).
func (r *TransferRow) Proto() *billingv1.Transfer {
	return &billingv1.Transfer{
		TransferId:      r.TransferID,
		PayerAccountId:  r.PayerAccountID,
		SourceAccountId: r.SourceAccountID,
		Status:          string(r.Status),
		StartTime:       FormatAPITime(r.StartTime),
		EndTime:         FormatAPITime(r.EndTime),
		PricingPlanId:   r.PricingPlanID,
		ExpiresAt:       FormatAPITime(r.ExpiresAt),
		Position:        r.UpdatedPosition,
	}
}

const transferColumns = `transfer_id, payer_account_id, source_account_id, status, start_time, end_time,
	pricing_plan_id, expires_at, notes, event_count, updated_position, updated_at`

// GetTransfer reads one row inside tx; it returns nil and no error when the
// transfer has no row yet.
func GetTransfer(ctx context.Context, tx *sql.Tx, transferID string) (*TransferRow, error) {
	row := tx.QueryRowContext(ctx, `SELECT `+transferColumns+` FROM transfers WHERE transfer_id = $1`, transferID)
	r, err := scanTransfer(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: read transfer %q: %w", transferID, err)
	}
	return r, nil
}

// PutTransfer inserts or replaces r inside tx.
func PutTransfer(ctx context.Context, tx *sql.Tx, r *TransferRow) error {
	count, err := toDBInt("event_count", r.EventCount)
	if err != nil {
		return err
	}
	pos, err := toDBInt("updated_position", r.UpdatedPosition)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO transfers (`+transferColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (transfer_id) DO UPDATE SET
			payer_account_id = excluded.payer_account_id,
			source_account_id = excluded.source_account_id,
			status = excluded.status,
			start_time = excluded.start_time,
			end_time = excluded.end_time,
			pricing_plan_id = excluded.pricing_plan_id,
			expires_at = excluded.expires_at,
			notes = excluded.notes,
			event_count = excluded.event_count,
			updated_position = excluded.updated_position,
			updated_at = excluded.updated_at`,
		r.TransferID, r.PayerAccountID, r.SourceAccountID, string(r.Status),
		FormatStoredTime(r.StartTime), nullTime(r.EndTime), r.PricingPlanID, nullTime(r.ExpiresAt),
		r.Notes, count, pos, FormatStoredTime(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("readmodel: write transfer %q: %w", r.TransferID, err)
	}
	return nil
}

// TransferFilter selects transfers; an empty field matches every row.
type TransferFilter struct {
	// PayerAccountID keeps the transfers paid by this account (12 digits).
	PayerAccountID string
	// SourceAccountID keeps the transfers of this source organization (12 digits).
	SourceAccountID string
	// Status keeps the transfers in this status (see ParseTransferStatus).
	Status string
}

// ErrInvalidFilter is wrapped by every error about a bad query filter value. The
// same error also carries a domain.Error with code INVALID_ARGUMENT, so the API
// edge maps it like any other invalid argument.
var ErrInvalidFilter = errors.New("readmodel: invalid filter")

func invalidFilter(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInvalidFilter, domain.Reject(domain.CodeInvalidArgument, format, args...))
}

// ListTransfers returns the transfers matching f, ordered by transfer id. A bad
// filter value (an account id that is not 12 digits, an unknown status) returns an
// error wrapping ErrInvalidFilter that names the value.
func (db *DB) ListTransfers(ctx context.Context, f TransferFilter) ([]*billingv1.Transfer, error) {
	return listTransfers(ctx, db.sql, f)
}

// ListTransfersResponse answers the QueryService.ListTransfers call: the rows of
// ListTransfers and the transfers projection's checkpoint (checkpointName), read
// from one snapshot so that the checkpoint is exactly the position the rows
// reflect.
func (db *DB) ListTransfersResponse(ctx context.Context, checkpointName string, f TransferFilter) (*billingv1.ListTransfersResponse, error) {
	resp := &billingv1.ListTransfersResponse{}
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if resp.Transfers, err = listTransfers(ctx, tx, f); err != nil {
			return err
		}
		resp.Checkpoint, err = readCheckpoint(ctx, tx, checkpointName)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func listTransfers(ctx context.Context, q querier, f TransferFilter) ([]*billingv1.Transfer, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.PayerAccountID != "" {
		if !isAccountID(f.PayerAccountID) {
			return nil, invalidFilter("payer_account_id %q is not a 12-digit account id", f.PayerAccountID)
		}
		add("payer_account_id = $%d", f.PayerAccountID)
	}
	if f.SourceAccountID != "" {
		if !isAccountID(f.SourceAccountID) {
			return nil, invalidFilter("source_account_id %q is not a 12-digit account id", f.SourceAccountID)
		}
		add("source_account_id = $%d", f.SourceAccountID)
	}
	if f.Status != "" {
		st, err := ParseTransferStatus(f.Status)
		if err != nil {
			return nil, invalidFilter("status %s", err)
		}
		add("status = $%d", string(st))
	}
	query := `SELECT ` + transferColumns + ` FROM transfers`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY transfer_id`
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: list transfers: %w", err)
	}
	defer rows.Close()
	out := []*billingv1.Transfer{}
	for rows.Next() {
		r, err := scanTransfer(rows)
		if err != nil {
			return nil, fmt.Errorf("readmodel: list transfers: %w", err)
		}
		out = append(out, r.Proto())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: list transfers: %w", err)
	}
	return out, nil
}

// ExpiredInvitations returns the ids of the transfers still REQUESTED whose
// invitation deadline is at or before now, ordered by transfer id: the
// candidates of the expiry sweeper (T3), found by the index rather than by
// reading every transfer.
func (db *DB) ExpiredInvitations(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := db.sql.QueryContext(ctx,
		`SELECT transfer_id FROM transfers WHERE status = $1 AND expires_at <= $2 ORDER BY transfer_id`,
		string(TransferRequested), FormatStoredTime(now))
	if err != nil {
		return nil, fmt.Errorf("readmodel: read expired invitations: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("readmodel: read expired invitations: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read expired invitations: %w", err)
	}
	return out, nil
}

// TransferRows returns every row of the transfers table ordered by transfer id,
// with all columns (ListTransfers shows the API's subset). Replay verification
// and tests compare tables with it.
func (db *DB) TransferRows(ctx context.Context) ([]*TransferRow, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT `+transferColumns+` FROM transfers ORDER BY transfer_id`)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read transfers: %w", err)
	}
	defer rows.Close()
	var out []*TransferRow
	for rows.Next() {
		r, err := scanTransfer(rows)
		if err != nil {
			return nil, fmt.Errorf("readmodel: read transfers: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read transfers: %w", err)
	}
	return out, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanTransfer(s scanner) (*TransferRow, error) {
	var (
		r                        TransferRow
		status, start, updatedAt string
		end, expires             sql.NullString
		count, pos               int64
	)
	if err := s.Scan(&r.TransferID, &r.PayerAccountID, &r.SourceAccountID, &status, &start, &end,
		&r.PricingPlanID, &expires, &r.Notes, &count, &pos, &updatedAt); err != nil {
		return nil, err
	}
	r.Status = TransferStatus(status)
	var err error
	if r.StartTime, err = ParseStoredTime(start); err != nil {
		return nil, err
	}
	if end.Valid {
		if r.EndTime, err = ParseStoredTime(end.String); err != nil {
			return nil, err
		}
	}
	if expires.Valid {
		if r.ExpiresAt, err = ParseStoredTime(expires.String); err != nil {
			return nil, err
		}
	}
	if r.UpdatedAt, err = ParseStoredTime(updatedAt); err != nil {
		return nil, err
	}
	if r.EventCount, err = fromDBInt("event_count", count); err != nil {
		return nil, err
	}
	if r.UpdatedPosition, err = fromDBInt("updated_position", pos); err != nil {
		return nil, err
	}
	return &r, nil
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: FormatStoredTime(t), Valid: true}
}

// isAccountID reports whether s is a 12-digit account id.
func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
