package readmodel

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// ErrUnknownDeadLetter is wrapped by the errors about a dead letter id that
// was never recorded: a redrive of it in the event stream (the events are out of
// order, so the projector stops), or an id asked for by DeadLetterRecords.
var ErrUnknownDeadLetter = errors.New("readmodel: unknown dead letter")

// ErrDeadLetterResolved is wrapped by the DeadLetterRecords error about a dead
// letter that a redrive has already resolved.
var ErrDeadLetterResolved = errors.New("readmodel: dead letter already resolved")

// DeadLetterRow is a rejected usage record as the usage projection records it
// (DESIGN U4).
type DeadLetterRow struct {
	// Rejected is the entry exactly as the UsageBatchRecorded event holds it.
	Rejected *billingv1.UsageRejected
	// Month is the booking month of the usage stream the event is on.
	Month string
	// Position is the event's store position.
	Position uint64
	// Index is the entry's index in the event's rejected list; with Position
	// it orders the dead letter oldest first.
	Index int
	// RecordedAt is the event's recorded_at.
	RecordedAt time.Time
}

// InsertDeadLetter records r inside tx. A dead letter id recorded before is an
// error: ids are unique (UUIDv7), so a second one means an event was applied
// twice or the ingest reused an id.
func InsertDeadLetter(ctx context.Context, tx *sql.Tx, r *DeadLetterRow) error {
	rej := r.Rejected
	id := rej.GetDeadLetterId()
	if id == "" || rej.GetReason() == "" {
		return fmt.Errorf("readmodel: dead letter at position %d index %d: dead_letter_id %q and reason %q must both be set",
			r.Position, r.Index, id, rej.GetReason())
	}
	entry, err := proto.MarshalOptions{Deterministic: true}.Marshal(rej)
	if err != nil {
		return fmt.Errorf("readmodel: encode dead letter %q: %w", id, err)
	}
	payload, err := deadLetterPayload(rej)
	if err != nil {
		return fmt.Errorf("readmodel: dead letter %q payload: %w", id, err)
	}
	pos, err := toDBInt("recorded_position", r.Position)
	if err != nil {
		return err
	}
	var prev int64
	err = tx.QueryRowContext(ctx, `SELECT recorded_position FROM dead_letters WHERE dead_letter_id = $1`, id).Scan(&prev)
	if err == nil {
		return fmt.Errorf("readmodel: dead letter %q recorded again at position %d (first at position %d)", id, r.Position, prev)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("readmodel: read dead letter %q: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO dead_letters (dead_letter_id, month, reason, message, usage_id,
			payload, origin, entry, recorded_position, recorded_index, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		id, r.Month, rej.GetReason(), rej.GetMessage(), rej.GetRecord().GetUsageId(),
		payload, rej.GetOrigin(), base64.StdEncoding.EncodeToString(entry), pos, int64(r.Index),
		FormatStoredTime(r.RecordedAt)); err != nil {
		return fmt.Errorf("readmodel: write dead letter %q: %w", id, err)
	}
	return nil
}

// deadLetterPayload is the human-readable form of a rejected entry: the record
// as JSON with proto field names, or the raw payload as text. Raw bytes that
// are not valid UTF-8, or hold NUL, get U+FFFD in their place, so that the
// column stays portable text; the exact bytes stay in the entry column.
func deadLetterPayload(rej *billingv1.UsageRejected) (string, error) {
	if rej.GetRecord() != nil {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(rej.GetRecord())
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	raw := string(rej.GetRaw())
	if !utf8.ValidString(raw) || strings.IndexByte(raw, 0) >= 0 {
		raw = strings.ReplaceAll(strings.ToValidUTF8(raw, "\uFFFD"), "\x00", "\uFFFD")
	}
	return raw, nil
}

// ResolveDeadLetter records that the event at position (on month's usage
// streams, recorded at at) resolved dead letter id by a redrive. The first
// resolution sets the dead letter's resolved_position and resolved_at; a
// later one (two redrives racing) leaves them alone. Each (month, id) is also
// recorded in dead_letter_resolutions, which the month digest reads (R2).
//
// An id that was never recorded, or recorded after position, is an error
// wrapping ErrUnknownDeadLetter: the events are out of order, and the projector
// must stop rather than lose the resolution.
func ResolveDeadLetter(ctx context.Context, tx *sql.Tx, id, month string, position uint64, at time.Time) error {
	pos, err := toDBInt("resolved_position", position)
	if err != nil {
		return err
	}
	var recorded int64
	err = tx.QueryRowContext(ctx, `SELECT recorded_position FROM dead_letters WHERE dead_letter_id = $1`, id).Scan(&recorded)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %q is redriven at position %d but was never recorded (events out of order?)",
			ErrUnknownDeadLetter, id, position)
	}
	if err != nil {
		return fmt.Errorf("readmodel: read dead letter %q: %w", id, err)
	}
	if recorded > pos {
		return fmt.Errorf("%w: %q is redriven at position %d but recorded only at position %d (events out of order?)",
			ErrUnknownDeadLetter, id, position, recorded)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE dead_letters SET resolved_position = $1, resolved_at = $2
		WHERE dead_letter_id = $3 AND resolved_position IS NULL`, pos, FormatStoredTime(at), id); err != nil {
		return fmt.Errorf("readmodel: resolve dead letter %q: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO dead_letter_resolutions (month, dead_letter_id, position)
		VALUES ($1, $2, $3) ON CONFLICT (month, dead_letter_id) DO NOTHING`, month, id, pos); err != nil {
		return fmt.Errorf("readmodel: resolve dead letter %q: %w", id, err)
	}
	return nil
}

// ListDeadLetters returns the unresolved dead letters, oldest first (in the
// order they were recorded), only those with reason when it is not "" (any
// case; it must be one of domain.UsageReasons, or the error wraps
// ErrInvalidFilter). ByReason counts every unresolved dead letter per reason,
// whatever the filter, so a filtered list still shows the whole backlog.
func (db *DB) ListDeadLetters(ctx context.Context, reason string) (*billingv1.ListDeadLettersResponse, error) {
	if reason != "" {
		r := strings.ToUpper(strings.TrimSpace(reason))
		if !slices.Contains(domain.UsageReasons, r) {
			return nil, invalidFilter("reason %q is not a dead-letter reason (want one of %s)", reason, strings.Join(domain.UsageReasons, ", "))
		}
		reason = r
	}
	resp := &billingv1.ListDeadLettersResponse{DeadLetters: []*billingv1.DeadLetter{}, ByReason: map[string]uint32{}}
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		query := `SELECT dead_letter_id, reason, message, usage_id, payload, origin, recorded_at
			FROM dead_letters WHERE resolved_position IS NULL`
		var args []any
		if reason != "" {
			query += ` AND reason = $1`
			args = append(args, reason)
		}
		query += ` ORDER BY recorded_position, recorded_index`
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d  billingv1.DeadLetter
				at string
			)
			if err := rows.Scan(&d.DeadLetterId, &d.Reason, &d.Message, &d.UsageId, &d.Payload, &d.Origin, &at); err != nil {
				return err
			}
			t, err := ParseStoredTime(at)
			if err != nil {
				return err
			}
			d.RecordedAt = FormatAPITime(t)
			resp.DeadLetters = append(resp.DeadLetters, &d)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		counts, err := tx.QueryContext(ctx, `SELECT reason, COUNT(*) FROM dead_letters
			WHERE resolved_position IS NULL GROUP BY reason`)
		if err != nil {
			return err
		}
		defer counts.Close()
		for counts.Next() {
			var (
				r string
				n uint32
			)
			if err := counts.Scan(&r, &n); err != nil {
				return err
			}
			resp.ByReason[r] = n
		}
		return counts.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: list dead letters: %w", err)
	}
	return resp, nil
}

// DeadLetterRecords returns the rejected entries of unresolved dead letters,
// exactly as recorded (id, reason, message, record or raw payload, origin),
// oldest first: those named by ids, or every unresolved one when ids is empty.
// A redrive re-ingests them. An id that does not exist returns an error
// wrapping ErrUnknownDeadLetter (code NOT_FOUND), one already resolved an error
// wrapping ErrDeadLetterResolved (code FAILED_PRECONDITION); both name the id,
// and the first such id in ids is the one reported. Repeated ids count once.
func (db *DB) DeadLetterRecords(ctx context.Context, ids []string) ([]*billingv1.UsageRejected, error) {
	type found struct {
		pos, index int64
		rej        *billingv1.UsageRejected
	}
	var out []found
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		decode := func(id, entry string) (*billingv1.UsageRejected, error) {
			b, err := base64.StdEncoding.DecodeString(entry)
			if err != nil {
				return nil, fmt.Errorf("dead letter %q: stored entry: %w", id, err)
			}
			var rej billingv1.UsageRejected
			if err := proto.Unmarshal(b, &rej); err != nil {
				return nil, fmt.Errorf("dead letter %q: stored entry: %w", id, err)
			}
			return &rej, nil
		}
		if len(ids) == 0 {
			rows, err := tx.QueryContext(ctx, `SELECT dead_letter_id, entry, recorded_position, recorded_index
				FROM dead_letters WHERE resolved_position IS NULL ORDER BY recorded_position, recorded_index`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var (
					f         found
					id, entry string
				)
				if err := rows.Scan(&id, &entry, &f.pos, &f.index); err != nil {
					return err
				}
				if f.rej, err = decode(id, entry); err != nil {
					return err
				}
				out = append(out, f)
			}
			return rows.Err()
		}
		stmt, err := tx.PrepareContext(ctx, `SELECT entry, recorded_position, recorded_index, resolved_position
			FROM dead_letters WHERE dead_letter_id = $1`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			var (
				f        found
				entry    string
				resolved sql.NullInt64
			)
			err := stmt.QueryRowContext(ctx, id).Scan(&entry, &f.pos, &f.index, &resolved)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %w", ErrUnknownDeadLetter, domain.Reject(domain.CodeNotFound, "dead letter %q does not exist", id))
			}
			if err != nil {
				return err
			}
			if resolved.Valid {
				return fmt.Errorf("%w: %w", ErrDeadLetterResolved, domain.Reject(domain.CodeFailedPrecondition,
					"dead letter %q was already resolved by a redrive (position %d)", id, resolved.Int64))
			}
			if f.rej, err = decode(id, entry); err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: dead letter records: %w", err)
	}
	slices.SortFunc(out, func(a, b found) int {
		return cmp.Or(cmp.Compare(a.pos, b.pos), cmp.Compare(a.index, b.index))
	})
	recs := make([]*billingv1.UsageRejected, len(out))
	for i, f := range out {
		recs[i] = f.rej
	}
	return recs, nil
}
