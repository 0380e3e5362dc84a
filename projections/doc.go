// Package projections builds the read models from the event store (DESIGN §1
// "Read side", §4): pure reducers decide what each event does to a row, and a
// Runner feeds them the store's events in order and commits rows and checkpoint
// together.
//
// Map of the package:
//   - projection.go  the Projection interface every read model implements, and
//     BatchProjection for those that apply a run of events at once
//   - runner.go      Runner: checkpoint, subscription, batching, one transaction
//     per batch (rows + checkpoint), WaitFor for read-your-writes
//   - transfers.go   the transfers read model: EvolveTransfer (pure reducer,
//     row + event → row) and the Transfers projection that stores its rows
//   - usage.go       the Usage projection (billable view R1, usage dead letter
//     U4) and billableAggregate, the in-memory sum of booked usage per billable
//     row that the projection and the replay share
//   - proforma.go    the Proforma projection (pro forma view R1, inputs of the
//     cost report P6): a copy of the pricing configuration, per-SKU usage
//     aggregates, and pro forma rows priced with domain.RatePlan; a
//     configuration change re-rates every open month whole from the SKU
//     aggregates (P4), two-level chains are priced at both levels (P7)
//   - invoices.go    the Invoices projection (closes, invoices as issued,
//     lines, taxes; billing.month.>) and the Payments projection
//     (receivables, credit notes, payments, allocations, refunds, credit note
//     applications; billing.receivable.>), with their pure parts:
//     CheckInvoice, PostedReceivable, EvolveReceivable (paid, outstanding and
//     status follow each allocation's outstanding_after), EvolveCreditNote
//     (remaining credit and status follow each application's
//     remaining_credit), EvolvePaymentRefund
//   - rowcache.go    how the usage and proforma projections, behind a Runner,
//     keep the rows they have committed (and their row ids) in memory, so that
//     a row is read once, not once per batch, and written by row id; the cache
//     follows the Runner's transactions and is emptied when one fails
//   - replay.go      ReplayMonth (R2): a month's usage read models rebuilt from
//     its streams in memory, as digests comparable with the live tables
//     ((*readmodel.DB).MonthDigest); BillableDigest; with ReplayOptions.Proforma
//     also the pro forma and cost read models, rebuilt by the Proforma
//     projection in a scratch in-memory database ((*readmodel.DB).ProformaDigests);
//     with ReplayOptions.Invoices also the invoices, tax and payments read
//     models, rebuilt the same way ((*readmodel.DB).InvoiceDigests)
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
//
// Replay (R2): every read model of a month is a pure function of the events.
// For usage, the month's events are exactly those on billing.usage.<month>.>
// (the ingest books each record into its stream's month, and the projection
// refuses a record booked into another month), so ReplayMonth reads only those
// streams and sums them with the projection's own aggregation code; the digest
// functions are the ones MonthDigest applies to the live tables. Money is exact
// throughout: decimals are apd values (60 digits, failing rather than rounding,
// as domain.AddDecimal), stored and hashed in canonical form
// (domain.CanonicalDecimal), and never summed by SQL.
package projections
