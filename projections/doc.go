// Package projections builds the read models from the event store (DESIGN §1
// "Read side", §4): pure reducers decide what each event does to a row, and a
// Runner feeds them the store's events in order and commits rows and checkpoint
// together.
//
// Map of the package:
//   - projection.go  the Projection interface every read model implements
//   - runner.go      Runner: checkpoint, subscription, batching, one transaction
//     per batch (rows + checkpoint), WaitFor for read-your-writes
//   - transfers.go   the transfers read model: EvolveTransfer (pure reducer,
//     row + event → row) and the Transfers projection that stores its rows
//
// Storage (schema, SQL, queries) lives in package readmodel; this package decides
// what the rows are and when they are written.
//
// Exactly once: a Runner applies a batch of events and moves the checkpoint past
// them in one SQL transaction (Runner.apply). A crash before the commit loses the
// rows and the checkpoint together, so the events are re-applied on restart; a
// crash after it keeps both, so they are not. The checkpoint update is also a
// compare-and-set, so a second runner on the same database fails instead of
// applying the same events again.
package projections
