package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// Re-rating what-ifs (P4; issue #6 item 4): the pro forma of a month as it
// would be if billing groups had other plans, computed by replaying the month
// into a scratch database — nothing is written to the store or the live read
// models.

// applyPlanOverrides sets the plan of each named billing group in the
// replay's scratch database, after the configuration in force.
func applyPlanOverrides(ctx context.Context, db *readmodel.DB, overrides map[string]string) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		st := readmodel.NewProformaStore(tx)
		defer func() { _ = st.Close() }()
		for _, g := range slices.Sorted(maps.Keys(overrides)) {
			plan := overrides[g]
			if _, ok, err := st.Group(ctx, g); err != nil {
				return err
			} else if !ok {
				return domain.Reject(domain.CodeNotFound, "billing group %s does not exist in the configuration replayed", g)
			}
			if plan != "" && !domain.IsManagedPlan(plan) {
				if _, ok, err := st.PlanOwner(ctx, plan); err != nil {
					return err
				} else if !ok {
					return domain.Reject(domain.CodeNotFound, "pricing plan %s does not exist in the configuration replayed", plan)
				}
			}
			if err := st.SetGroupPlan(ctx, g, plan); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReplayProforma rebuilds a month's pro forma like ReplayMonthWith with
// opts.Proforma (the configuration in force, opts.AsOf, opts.PlanOverrides)
// and returns its report for payer ("" = every payer).
func ReplayProforma(ctx context.Context, store eventstore.Store, month, payer string, opts ReplayOptions) (*billingv1.ReportProformaResponse, error) {
	if _, err := domain.ParseMonth(month); err != nil {
		return nil, domain.Reject(domain.CodeInvalidArgument, "month: %v", err)
	}
	upTo := opts.UpTo
	if upTo == 0 {
		var err error
		if upTo, err = store.LastPosition(ctx); err != nil {
			return nil, err
		}
	}
	pf, err := newProformaReplay(ctx, store, month, opts.AsOf, upTo, opts.PlanOverrides)
	if err != nil {
		return nil, err
	}
	defer pf.close()
	err = store.ReadAll(ctx, 0, domain.UsageMonthFilter(month), func(rec eventstore.Record) error {
		if rec.Position > upTo {
			return errReplayDone
		}
		if opts.AsOf.IsZero() || !rec.Event.GetRecordedAt().AsTime().After(opts.AsOf) {
			return pf.add(ctx, rec)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errReplayDone) {
		return nil, fmt.Errorf("replay pro forma of %s: %w", month, err)
	}
	if err := pf.applyPending(ctx, ^uint64(0)); err != nil {
		return nil, err
	}
	if err := pf.flush(ctx); err != nil {
		return nil, err
	}
	return pf.db.ReportProforma(ctx, month, payer, "", "")
}
