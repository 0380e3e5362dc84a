package projections

import (
	"context"
	"errors"
	"fmt"
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
	var (
		agg             = newBillableAggregate()
		deadLetters     = map[string]string{} // id → reason
		resolved        []string
		events, records uint64
	)
	err := store.ReadAll(ctx, 0, domain.UsageMonthFilter(month), func(rec eventstore.Record) error {
		if rec.Position > upTo {
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
			if err := replayEvent(agg, deadLetters, &resolved, ev); err != nil {
				return usageApplyError(rec, err)
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
	return &billingv1.MonthDigestResponse{
		Digests: []*billingv1.ReadModelDigest{
			BillableDigest(agg.protoRows()),
			readmodel.DeadLetterDigest(recorded, resolved),
		},
		Checkpoint: upTo,
	}, nil
}

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
