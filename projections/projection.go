package projections

import (
	"context"
	"database/sql"

	"github.com/billtransfer/ledger/eventstore"
)

// Projection is one read model as the Runner drives it. Implementations keep
// their decision logic in a pure reducer and use Apply only to load the rows the
// reducer needs and store what it returns.
type Projection interface {
	// Name is the projection's stable id: its checkpoint key in the checkpoints
	// table. Renaming a projection makes it rebuild from the start.
	Name() string

	// Filter is the subject filter of the streams the projection reads (NATS
	// syntax, e.g. "billing.transfer.>"; "" = every stream). Events outside it are
	// never passed to Apply, but the checkpoint still moves past them.
	Filter() string

	// Apply applies one event inside tx, the runner's transaction that also
	// advances the checkpoint. Events the projection does not care about return
	// nil. An error rolls back the whole batch and stops the runner: an event is
	// never skipped.
	Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error
}

// BatchProjection is a Projection that applies a run of events at once. The
// Runner calls ApplyBatch instead of Apply for each of its batches (the events
// after the checkpoint, in position order, never empty), inside the same
// transaction that advances the checkpoint, so a projection can aggregate many
// events in memory and write each touched row once. The result must be the one
// Apply would give event by event.
//
// An error stops the runner as for Apply and commits nothing of the batch. To
// name the event at fault, return an *ApplyError; any other error is reported
// as an *ApplyError at the batch's first event, saying it is a batch.
type BatchProjection interface {
	Projection
	ApplyBatch(ctx context.Context, tx *sql.Tx, recs []eventstore.Record) error
}
