package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrCheckpointMoved is returned by AdvanceCheckpoint when the stored checkpoint
// is not the one the caller started from: another runner applied events of the
// same projection in between. The caller's transaction must be rolled back (its
// rows would count those events twice).
var ErrCheckpointMoved = errors.New("readmodel: checkpoint moved")

// Checkpoint returns the store position projection name has applied up to
// (0 when it has applied nothing yet).
func (db *DB) Checkpoint(ctx context.Context, name string) (uint64, error) {
	return readCheckpoint(ctx, db.sql, name)
}

// CheckpointTx is Checkpoint inside tx, for reads that must be consistent with
// the rows read in the same transaction.
func CheckpointTx(ctx context.Context, tx *sql.Tx, name string) (uint64, error) {
	return readCheckpoint(ctx, tx, name)
}

func readCheckpoint(ctx context.Context, q querier, name string) (uint64, error) {
	var pos int64
	err := q.QueryRowContext(ctx, `SELECT position FROM checkpoints WHERE projection = $1`, name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("readmodel: read checkpoint %q: %w", name, err)
	}
	return fromDBInt("checkpoint "+name, pos)
}

// AdvanceCheckpoint moves projection name's checkpoint from `from` to `to`
// inside tx, the transaction that also holds the rows of the events in
// (from, to]. It is a compare-and-set: when the stored checkpoint is not `from`
// it returns an error wrapping ErrCheckpointMoved, so a second runner on the same
// database fails instead of applying events twice. `to` must be greater than `from`.
func AdvanceCheckpoint(ctx context.Context, tx *sql.Tx, name string, from, to uint64) error {
	if to <= from {
		return fmt.Errorf("readmodel: checkpoint %q: new position %d is not after %d", name, to, from)
	}
	f, err := toDBInt("checkpoint", from)
	if err != nil {
		return err
	}
	t, err := toDBInt("checkpoint", to)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx,
		`UPDATE checkpoints SET position = $1 WHERE projection = $2 AND position = $3`, t, name, f)
	if err != nil {
		return fmt.Errorf("readmodel: advance checkpoint %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("readmodel: advance checkpoint %q: %w", name, err)
	}
	if n == 1 {
		return nil
	}
	if from == 0 {
		// First commit of this projection: no row yet. A concurrent first commit
		// makes this INSERT fail on the primary key, which is the right outcome.
		var existing int64
		err := tx.QueryRowContext(ctx, `SELECT position FROM checkpoints WHERE projection = $1`, name).Scan(&existing)
		if errors.Is(err, sql.ErrNoRows) {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO checkpoints (projection, position) VALUES ($1, $2)`, name, t); err != nil {
				return fmt.Errorf("readmodel: create checkpoint %q: %w", name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("readmodel: advance checkpoint %q: %w", name, err)
		}
		return fmt.Errorf("%w: %q is at %d, expected %d (is another runner applying it?)", ErrCheckpointMoved, name, existing, from)
	}
	return fmt.Errorf("%w: %q is no longer at %d (is another runner applying it?)", ErrCheckpointMoved, name, from)
}
