package projections

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// BillableDigest fingerprints billable rows for replay verification (R2): hex
// SHA-256 over the canonical rows sorted by key, the row count and the totals
// "billed_cost" (exact sum) and "records". It is readmodel.BillableDigest, the
// function (*readmodel.DB).MonthDigest applies to the live table, so a replay
// and the live table are compared by the same code.
func BillableDigest(rows []*billingv1.BillableRow) *billingv1.ReadModelDigest {
	return readmodel.BillableDigest(rows)
}

// ReplayOptions tunes ReplayMonthWith; the zero value replays everything.
type ReplayOptions struct {
	// AsOf keeps only the events recorded at or before it (`replay --as-of`);
	// zero = no limit.
	AsOf time.Time
	// UpTo keeps only the events at or before this store position, which the
	// result reports as its checkpoint; 0 = the store's last position when the
	// replay starts. Replaying up to the checkpoint of a live MonthDigest gives
	// a result comparable with it even while usage keeps arriving.
	UpTo uint64
	// Progress, when set, is called after each event read with the number of
	// events read so far and the usage records they hold (those left out by
	// AsOf included). It runs on the reading goroutine: keep it cheap.
	Progress func(events, records uint64)
	// Proforma also rebuilds the pro forma and cost read models (R1, P6) and
	// adds their digests ("proforma", "cost"), as billingd's MonthDigest does.
	// It reads the configuration streams (billing.pricing.>, withdrawals on
	// billing.transfer.>) besides the month's usage.
	Proforma bool
	// ProformaUpTo is UpTo for the pro forma and cost read models, whose
	// projection has its own checkpoint (ReadModelDigest.checkpoint of a live
	// "proforma" digest); 0 = UpTo.
	ProformaUpTo uint64
	// PlanOverrides prices the pro forma as if each billing group named
	// (billing group id → pricing plan id, "" = base pricing) had that plan,
	// after the configuration in force: a what-if (`billctl rerate
	// --dry-run`). Its digests then differ from the live ones by design.
	PlanOverrides map[string]string
	// Invoices also rebuilds the invoices, tax and payments read models (R1,
	// X5, Y3) and adds their digests ("invoices", "tax", "payments"), as
	// billingd's MonthDigest does. It reads the month's close streams
	// (billing.month.*.<M>) and every receivable stream (billing.receivable.>).
	Invoices bool
	// InvoicesUpTo is UpTo for the invoices and tax read models (the
	// checkpoint of a live "invoices" digest); 0 = UpTo.
	InvoicesUpTo uint64
	// PaymentsUpTo is UpTo for the payments read model (the checkpoint of a
	// live "payments" digest); 0 = UpTo.
	PaymentsUpTo uint64
}

// ReplayMonth rebuilds month's usage read models from the events (R2): every
// UsageBatchRecorded on billing.usage.<month>.>, recorded at or before asOf
// (zero = no limit), up to the store's last position when it starts. It
// returns the same digests as (*readmodel.DB).MonthDigest, so once the runner
// has caught up, a replay of everything equals the live digest. progress may be
// nil; see ReplayOptions.Progress.
func ReplayMonth(ctx context.Context, store eventstore.Store, month string, asOf time.Time,
	progress func(events, records uint64)) (*billingv1.MonthDigestResponse, error) {
	return ReplayMonthWith(ctx, store, month, ReplayOptions{AsOf: asOf, Progress: progress})
}

// errReplayDone stops a replay's ReadAll at ReplayOptions.UpTo.
var errReplayDone = errors.New("replay reached its last position")

// ReplayMonthWith is ReplayMonth with every option.
//
// It reads only the month's usage streams with one ReadAll and keeps no event:
// accepted records are summed per billable row as they stream by (the usage
// projection's own aggregation code), and dead letters are kept as id and reason.
// Memory is therefore bounded by the number of rows and dead letters of the
// month, however many events and records it has.
//
// With opts.Proforma, the pro forma and cost read models are rebuilt by the
// proforma projection itself (Proforma.ApplyBatch) in a scratch in-memory
// SQLite database, and fingerprinted by (*readmodel.DB).ProformaDigests, the
// code billingd's live digests use. The configuration is the one in force
// (R3): every configuration event recorded at or before AsOf, up to
// ProformaUpTo, and the month's MonthClosed events, each applied just before
// the first usage event after it, so the projection sees them in the live
// order: a closed month is not re-rated by later configuration (P4) and keeps
// the configuration of its close. Pricing is linear and re-rates recompute from
// SKU aggregates, so batch boundaries do not matter. Its memory is bounded by
// the configuration and the month's SKU aggregates and rows.
//
// With opts.Invoices, the invoices, tax and payments read models are rebuilt
// by the Invoices and Payments projections in another scratch database
// (replayInvoices) and fingerprinted by (*readmodel.DB).InvoiceDigests; their
// digests come last.
//
// The checks are the projection's where they depend on the month alone (stream
// and booking months, amounts, ids, recorded_at), so a history the runner would
// stop on fails the replay too. The one check it cannot make is that a redriven
// dead letter was recorded: that dead letter may be on another month's streams.
func ReplayMonthWith(ctx context.Context, store eventstore.Store, month string, opts ReplayOptions) (*billingv1.MonthDigestResponse, error) {
	if _, err := domain.ParseMonth(month); err != nil {
		return nil, fmt.Errorf("projections: replay: %w", err)
	}
	upTo := opts.UpTo
	if upTo == 0 {
		var err error
		if upTo, err = store.LastPosition(ctx); err != nil {
			return nil, fmt.Errorf("projections: replay %s: last position: %w", month, err)
		}
	}
	readTo := upTo
	var invoiceDigests []*billingv1.ReadModelDigest
	if opts.Invoices {
		// Rebuilt first and apart: the close and receivable streams are few
		// events, read with their own filters.
		var err error
		if invoiceDigests, err = replayInvoices(ctx, store, month, opts.AsOf,
			cmp.Or(opts.InvoicesUpTo, upTo), cmp.Or(opts.PaymentsUpTo, upTo)); err != nil {
			return nil, fmt.Errorf("projections: replay %s: %w", month, err)
		}
	}
	var pf *proformaReplay
	if opts.Proforma {
		pfUpTo := opts.ProformaUpTo
		if pfUpTo == 0 {
			pfUpTo = upTo
		}
		readTo = max(readTo, pfUpTo)
		var err error
		if pf, err = newProformaReplay(ctx, store, month, opts.AsOf, pfUpTo, opts.PlanOverrides); err != nil {
			return nil, fmt.Errorf("projections: replay %s: %w", month, err)
		}
		defer pf.close()
	}
	var (
		agg             = newBillableAggregate()
		deadLetters     = map[string]string{} // id → reason
		resolved        []string
		events, records uint64
	)
	err := store.ReadAll(ctx, 0, domain.UsageMonthFilter(month), func(rec eventstore.Record) error {
		if rec.Position > readTo {
			return errReplayDone
		}
		ev, ok, err := decodeUsageEvent(rec)
		if err != nil {
			return usageApplyError(rec, err)
		}
		if !ok {
			return nil
		}
		if ev.month != month {
			return usageApplyError(rec, fmt.Errorf("usage: event of month %s in the replay of %s", ev.month, month))
		}
		events++
		records += uint64(len(ev.batch.GetRecords()))
		if opts.AsOf.IsZero() || !ev.recordedAt.After(opts.AsOf) {
			if rec.Position <= upTo {
				if err := replayEvent(agg, deadLetters, &resolved, ev); err != nil {
					return usageApplyError(rec, err)
				}
			}
			if pf != nil {
				if err := pf.add(ctx, rec); err != nil {
					return err
				}
			}
		}
		if opts.Progress != nil {
			opts.Progress(events, records)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errReplayDone) {
		return nil, fmt.Errorf("projections: replay %s: %w", month, err)
	}
	recorded := make([]readmodel.DeadLetterEntry, 0, len(deadLetters))
	for id, reason := range deadLetters {
		recorded = append(recorded, readmodel.DeadLetterEntry{ID: id, Reason: reason})
	}
	out := &billingv1.MonthDigestResponse{
		Digests: []*billingv1.ReadModelDigest{
			BillableDigest(agg.protoRows()),
			readmodel.DeadLetterDigest(recorded, resolved),
		},
		Checkpoint: upTo,
	}
	if pf != nil {
		ds, err := pf.digests(ctx)
		if err != nil {
			return nil, fmt.Errorf("projections: replay %s: %w", month, err)
		}
		out.Digests = append(out.Digests, ds...)
	}
	out.Digests = append(out.Digests, invoiceDigests...)
	return out, nil
}

// replayInvoices rebuilds month's invoices, tax and payments read models with
// the Invoices and Payments projections in a scratch in-memory database and
// fingerprints them with (*readmodel.DB).InvoiceDigests, the code billingd's
// live digests use. The invoices and tax come from the month's close streams
// up to invUpTo; the payments from every receivable stream up to payUpTo (an
// allocation needs its invoice's InvoicesPosted, and a payment may pay
// invoices of several months), so its memory is bounded by the number of
// invoices and payments, not of usage. Only events recorded at or before
// asOf (zero = all) count: a payment recorded after it is left out.
func replayInvoices(ctx context.Context, store eventstore.Store, month string, asOf time.Time,
	invUpTo, payUpTo uint64) ([]*billingv1.ReadModelDigest, error) {
	db, err := readmodel.OpenSQLite(":memory:")
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	for _, part := range []struct {
		proj   Projection
		filter string
		upTo   uint64
	}{
		{Invoices{}, MonthCloseFilter(month), invUpTo},
		{Payments{}, PaymentsFilter, payUpTo},
	} {
		var batch []eventstore.Record
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := db.WithTx(ctx, func(tx *sql.Tx) error {
				for _, rec := range batch {
					if err := part.proj.Apply(ctx, tx, rec); err != nil {
						return &ApplyError{Projection: part.proj.Name(), Position: rec.Position,
							Stream: rec.Event.GetStream(), EventID: rec.Event.GetEventId(), Err: err}
					}
				}
				return nil
			})
			batch = batch[:0]
			return err
		}
		err := store.ReadAll(ctx, 0, part.filter, func(rec eventstore.Record) error {
			if rec.Position > part.upTo {
				return errReplayDone
			}
			at, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
			if err != nil {
				return &ApplyError{Projection: part.proj.Name(), Position: rec.Position,
					Stream: rec.Event.GetStream(), EventID: rec.Event.GetEventId(), Err: err}
			}
			if !asOf.IsZero() && at.After(asOf) {
				return nil
			}
			batch = append(batch, rec)
			if len(batch) < DefaultBatchSize {
				return nil
			}
			return flush()
		})
		if err != nil && !errors.Is(err, errReplayDone) {
			return nil, fmt.Errorf("read %s: %w", part.filter, err)
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	ds, err := db.InvoiceDigests(ctx, month)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		d.Checkpoint = invUpTo
		if d.GetName() == readmodel.DigestPayments {
			d.Checkpoint = payUpTo
		}
	}
	return ds, nil
}

// proformaReplayBatch is how many usage events the replay applies per
// transaction of its scratch database (the Runner's default batch).
const proformaReplayBatch = DefaultBatchSize

// proformaReplay rebuilds one month's pro forma with the proforma projection
// in a scratch in-memory database.
type proformaReplay struct {
	db    *readmodel.DB
	month string
	upTo  uint64
	proj  Proforma
	batch []eventstore.Record
	// pending are the configuration events and the month's closes not applied
	// yet, in position order: each goes in just before the first usage event
	// after it, so the projection sees everything in the live order and a
	// closed month keeps the configuration of its close (P4, R3).
	pending []eventstore.Record
}

// newProformaReplay opens the scratch database and reads the configuration
// in force: every configuration event up to upTo recorded at or before asOf
// (zero = all), with the month's MonthClosed events. With overrides (a
// what-if), the configuration is applied at once, then the overrides, and the
// closes are left out (the caller picks asOf).
func newProformaReplay(ctx context.Context, store eventstore.Store, month string, asOf time.Time, upTo uint64, overrides map[string]string) (*proformaReplay, error) {
	db, err := readmodel.OpenSQLite(":memory:")
	if err != nil {
		return nil, err
	}
	r := &proformaReplay{db: db, month: month, upTo: upTo}
	filters := []string{"billing.pricing.>", "billing.transfer.>"}
	if len(overrides) == 0 {
		filters = append(filters, "billing.month.*."+month)
	}
	for _, filter := range filters {
		err := store.ReadAll(ctx, 0, filter, func(rec eventstore.Record) error {
			if rec.Position > upTo {
				return errReplayDone
			}
			if !isProformaConfigEvent(rec.Event) && rec.Event.GetMonthClosed() == nil {
				return nil
			}
			at, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
			if err != nil {
				return proformaApplyError(rec, err)
			}
			if asOf.IsZero() || !at.After(asOf) {
				r.pending = append(r.pending, rec)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errReplayDone) {
			_ = db.Close()
			return nil, fmt.Errorf("read %s: %w", filter, err)
		}
	}
	slices.SortFunc(r.pending, func(a, b eventstore.Record) int { return cmp.Compare(a.Position, b.Position) })
	if len(overrides) > 0 {
		if err := r.applyPending(ctx, ^uint64(0)); err != nil {
			_ = db.Close()
			return nil, err
		}
		if err := r.flush(ctx); err != nil {
			_ = db.Close()
			return nil, err
		}
		if err := applyPlanOverrides(ctx, db, overrides); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return r, nil
}

// applyPending applies the pending events before position, in batches.
func (r *proformaReplay) applyPending(ctx context.Context, before uint64) error {
	for len(r.pending) > 0 && r.pending[0].Position < before {
		r.batch = append(r.batch, r.pending[0])
		r.pending = r.pending[1:]
		if len(r.batch) >= proformaReplayBatch {
			if err := r.flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// add applies a usage event of the month (in batches), after the pending
// events before it; events after upTo are left out.
func (r *proformaReplay) add(ctx context.Context, rec eventstore.Record) error {
	if rec.Position > r.upTo {
		return nil
	}
	if err := r.applyPending(ctx, rec.Position); err != nil {
		return err
	}
	r.batch = append(r.batch, rec)
	if len(r.batch) < proformaReplayBatch {
		return nil
	}
	return r.flush(ctx)
}

func (r *proformaReplay) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	err := r.db.WithTx(ctx, func(tx *sql.Tx) error { return r.proj.ApplyBatch(ctx, tx, r.batch) })
	r.batch = r.batch[:0]
	return err
}

// digests returns the "proforma" and "cost" digests, at the replay's position.
func (r *proformaReplay) digests(ctx context.Context) ([]*billingv1.ReadModelDigest, error) {
	if err := r.applyPending(ctx, ^uint64(0)); err != nil {
		return nil, err
	}
	if err := r.flush(ctx); err != nil {
		return nil, err
	}
	ds, err := r.db.ProformaDigests(ctx, r.month)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		d.Checkpoint = r.upTo
	}
	return ds, nil
}

func (r *proformaReplay) close() { _ = r.db.Close() }

// replayEvent applies one event to the replay's state, with the projection's checks.
func replayEvent(agg *billableAggregate, deadLetters map[string]string, resolved *[]string, ev usageEvent) error {
	if err := agg.addEvent(ev); err != nil {
		return err
	}
	for i, rj := range ev.batch.GetRejected() {
		id := rj.GetDeadLetterId()
		if id == "" || rj.GetReason() == "" {
			return fmt.Errorf("usage: rejected entry %d: dead_letter_id %q and reason %q must both be set", i, id, rj.GetReason())
		}
		if _, dup := deadLetters[id]; dup {
			return fmt.Errorf("usage: dead letter %q recorded twice", id)
		}
		deadLetters[id] = rj.GetReason()
	}
	for _, id := range ev.batch.GetRedrivenDeadLetterIds() {
		if id == "" {
			return fmt.Errorf("usage: empty id in redriven_dead_letter_ids")
		}
		*resolved = append(*resolved, id)
	}
	return nil
}
