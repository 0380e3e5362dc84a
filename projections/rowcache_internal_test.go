package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// cacheWorld generates random batches for the row cache tests: usage of a few
// accounts under two payers, with list prices (so that BASIC and PASSTHROUGH
// price differently), and billing group changes of payer A, which re-rate.
type cacheWorld struct {
	rng     *rand.Rand
	pos     uint64
	groups  int
	current string // payer A's live group ("" = none)
	plan    string
}

const (
	cachePayerA, cachePayerB = "100000000001", "100000000002"
	cacheMonth               = "2026-09"
)

var cacheAccounts = []string{"200000000001", "200000000002", "200000000003", "200000000004"}

func (w *cacheWorld) usageEvent() eventstore.Record {
	batch := &billingv1.UsageBatchRecorded{Month: cacheMonth}
	for range 1 + w.rng.IntN(6) {
		payer := cachePayerA
		if w.rng.IntN(3) == 0 {
			payer = cachePayerB
		}
		r := &billingv1.UsageRecord{
			UsageId:    fmt.Sprintf("u-%d-%d", w.pos, len(batch.Records)),
			AccountId:  cacheAccounts[w.rng.IntN(len(cacheAccounts))],
			Service:    []string{"AmazonEC2", "AmazonS3"}[w.rng.IntN(2)],
			UsageType:  []string{"BoxUsage", "Requests"}[w.rng.IntN(2)],
			BilledCost: fmt.Sprintf("%d.%02d", w.rng.IntN(100), w.rng.IntN(100)),
			Quantity:   fmt.Sprintf("%d.%d", w.rng.IntN(10), w.rng.IntN(10)),
			Currency:   "USD",
		}
		if w.rng.IntN(2) == 0 {
			r.ListUnitPrice = fmt.Sprintf("0.%03d", w.rng.IntN(1000))
		}
		batch.Records = append(batch.Records, &billingv1.BookedUsage{Record: r, BookingMonth: cacheMonth,
			PayerAccountId: payer, SourceAccountId: r.AccountId})
	}
	w.pos++
	return eventstore.Record{Position: w.pos, Event: &billingv1.Event{
		EventId: fmt.Sprintf("e-%d", w.pos), Stream: domain.UsageStream(cacheMonth, uint32(w.rng.IntN(2))),
		RecordedAt: timestamppb.New(time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC)),
		Payload:    &billingv1.Event_UsageBatchRecorded{UsageBatchRecorded: batch}}}
}

// groupEvent creates, changes the plan of, or deletes payer A's group.
func (w *cacheWorld) groupEvent() eventstore.Record {
	var ev *billingv1.Event
	other := map[string]string{domain.PlanBasic: domain.PlanPassthrough, domain.PlanPassthrough: domain.PlanBasic}
	switch {
	case w.current == "":
		w.groups++
		w.current, w.plan = fmt.Sprintf("bg-%d", w.groups), domain.PlanPassthrough
		ev = domain.NewEvent(&billingv1.BillingGroupCreated{BillingGroupId: w.current, OwnerAccountId: cachePayerA,
			PrimaryAccountId: cacheAccounts[0], AccountIds: cacheAccounts[:1+w.rng.IntN(len(cacheAccounts))], PricingPlanId: w.plan})
	case w.rng.IntN(4) == 0:
		ev = domain.NewEvent(&billingv1.BillingGroupDeleted{BillingGroupId: w.current, OwnerAccountId: cachePayerA})
		w.current = ""
	case w.rng.IntN(2) == 0: // an account leaves or joins: its rows move between the group and ""
		acc := []string{cacheAccounts[1+w.rng.IntN(len(cacheAccounts)-1)]}
		if w.rng.IntN(2) == 0 {
			ev = domain.NewEvent(&billingv1.BillingGroupAccountsDisassociated{BillingGroupId: w.current, OwnerAccountId: cachePayerA, AccountIds: acc})
		} else {
			ev = domain.NewEvent(&billingv1.BillingGroupAccountsAssociated{BillingGroupId: w.current, OwnerAccountId: cachePayerA, AccountIds: acc})
		}
	default:
		w.plan = other[w.plan]
		ev = domain.NewEvent(&billingv1.BillingGroupUpdated{BillingGroupId: w.current, OwnerAccountId: cachePayerA, PricingPlanId: w.plan})
	}
	w.pos++
	ev.Stream = "billing.pricing.group." + w.current
	return eventstore.Record{Position: w.pos, Event: ev}
}

func (w *cacheWorld) batch(config bool) []eventstore.Record {
	var recs []eventstore.Record
	for range 1 + w.rng.IntN(4) {
		if config && w.rng.IntN(4) == 0 {
			recs = append(recs, w.groupEvent())
		} else {
			recs = append(recs, w.usageEvent())
		}
	}
	return recs
}

// dumpTables renders tables' rows in key order (row ids left out).
func dumpTables(t *testing.T, db *readmodel.DB, queries ...string) string {
	t.Helper()
	var b strings.Builder
	for _, q := range queries {
		rows, err := db.SQL().Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, vals...)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

var (
	billableDump = `SELECT month, payer_account_id, source_account_id, account_id, service, currency, billed_cost,
		usage_quantity, record_count, updated_position FROM billable ORDER BY 1, 2, 3, 4, 5, 6`
	proformaDumps = []string{
		`SELECT month, payer_account_id, direct_payer_account_id, account_id, service, usage_type, operation, free_tier,
			list_cost, billed_cost, usage_quantity, record_count FROM proforma_usage ORDER BY 1, 2, 3, 4, 5, 6, 7, 8`,
		`SELECT month, payer_account_id, owner_account_id, billing_group_id, account_id, service, list_cost,
			billable_cost, proforma_cost, record_count FROM proforma ORDER BY 1, 2, 3, 4, 5, 6`,
	}
)

var errRollback = errors.New("roll back")

// TestRowCacheFollowsTransactions: a projection with a Runner's cache, whose
// transactions randomly roll back (after writing their rows, or with a failing
// commit's outcome never reported), keeps exactly the tables of the same
// projection without a cache that applies only the committed batches; a schema
// change or a full cache empties the cache.
func TestRowCacheFollowsTransactions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		proj   BatchProjection
		dumps  []string
		config bool
	}{
		{"usage", Usage{}, []string{billableDump}, false},
		{"proforma", Proforma{}, proformaDumps, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			open := func(name string) *readmodel.DB {
				db, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), name))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				return db
			}
			db, ref := open("cached.db"), open("reference.db")
			cached := tc.proj.(runnerLocal).forRunner().(BatchProjection)
			ender := cached.(txEnder)
			w := &cacheWorld{rng: rand.New(rand.NewPCG(uint64(len(tc.name)), 3))}
			committed := 0
			for step := range 400 {
				recs := w.batch(tc.config)
				switch r := w.rng.IntN(10); {
				case r < 3: // rolled back after the rows were written
					err := db.WithTx(ctx, func(tx *sql.Tx) error {
						if err := cached.ApplyBatch(ctx, tx, recs); err != nil {
							t.Fatalf("step %d: %v", step, err)
						}
						return errRollback
					})
					if !errors.Is(err, errRollback) {
						t.Fatal(err)
					}
					ender.txEnded(false)
					w.pos -= uint64(len(recs)) // the events are applied again below
					continue
				case r == 3: // rolled back, its end never reported
					_ = db.WithTx(ctx, func(tx *sql.Tx) error {
						if err := cached.ApplyBatch(ctx, tx, recs); err != nil {
							t.Fatalf("step %d: %v", step, err)
						}
						return errRollback
					})
					w.pos -= uint64(len(recs))
					continue
				case r == 4 && step%7 == 0: // a schema change (as a migration or VACUUM makes)
					if _, err := db.SQL().Exec(fmt.Sprintf(`CREATE TABLE scratch_%d (x)`, step)); err != nil {
						t.Fatal(err)
					}
				}
				for _, x := range []struct {
					db *readmodel.DB
					p  BatchProjection
				}{{db, cached}, {ref, tc.proj}} {
					if err := x.db.WithTx(ctx, func(tx *sql.Tx) error { return x.p.ApplyBatch(ctx, tx, recs) }); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
				}
				ender.txEnded(true)
				committed++
				if got, want := dumpTables(t, db, tc.dumps...), dumpTables(t, ref, tc.dumps...); got != want {
					t.Fatalf("step %d: cached projection's tables\n%s\nwant\n%s", step, got, want)
				}
			}
			if committed < 100 {
				t.Fatalf("only %d batches committed", committed)
			}
		})
	}
}

// TestRowCacheResets: the cache empties on a schema change and after a
// transaction that was never reported ended, and loses half its rows when over
// its bound; each Runner gets its own.
func TestRowCacheResets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), "rm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	u := Usage{}.forRunner().(Usage)
	w := &cacheWorld{rng: rand.New(rand.NewPCG(1, 2))}
	apply := func() {
		t.Helper()
		if err := db.WithTx(ctx, func(tx *sql.Tx) error { return u.ApplyBatch(ctx, tx, w.batch(false)) }); err != nil {
			t.Fatal(err)
		}
	}
	// begin runs at the start of each transaction that writes rows.
	begin := func() int {
		t.Helper()
		if err := db.WithTx(ctx, func(tx *sql.Tx) error { return u.cache.begin(ctx, tx) }); err != nil {
			t.Fatal(err)
		}
		u.txEnded(true)
		return len(u.cache.rows)
	}
	apply()
	u.txEnded(true)
	if n := begin(); n == 0 {
		t.Fatal("nothing cached")
	}
	if _, err := db.SQL().Exec(`VACUUM`); err != nil {
		t.Fatal(err)
	}
	if n := begin(); n != 0 {
		t.Fatalf("%d rows cached after a VACUUM", n)
	}
	apply()
	u.txEnded(true)
	apply() // not reported
	if n := begin(); n != 0 {
		t.Fatalf("%d rows cached after a transaction of unknown outcome", n)
	}
	apply()
	u.txEnded(true)
	for i := range maxCachedRows + 1 {
		u.cache.rows[readmodel.BillableKey{Month: fmt.Sprint(i)}] = &billableEntry{}
	}
	if n := begin(); n != maxCachedRows/2 {
		t.Fatalf("%d rows cached over the bound, want %d", n, maxCachedRows/2)
	}

	store := sliceStoreForTest{}
	r1 := NewRunner(db, store, Usage{}, RunnerConfig{})
	r2 := NewRunner(db, store, Usage{}, RunnerConfig{})
	c1, c2 := r1.proj.(Usage).cache, r2.proj.(Usage).cache
	if c1 == nil || c2 == nil || c1 == c2 {
		t.Fatalf("runners' caches %p and %p", c1, c2)
	}
	p1, p2 := NewRunner(db, store, Proforma{}, RunnerConfig{}), NewRunner(db, store, Proforma{}, RunnerConfig{})
	if a, b := p1.proj.(Proforma).cache, p2.proj.(Proforma).cache; a == nil || b == nil || a == b {
		t.Fatalf("runners' caches %p and %p", a, b)
	}
	if (Usage{}).cache != nil || (Proforma{}).cache != nil {
		t.Fatal("zero values with a cache")
	}
}

// sliceStoreForTest is an empty store: NewRunner only keeps it.
type sliceStoreForTest struct{ eventstore.Store }
