package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// TestBackendsGiveIdenticalReadModels (R2): the same events projected into
// SQLite and into PostgreSQL give byte-identical digests of every read model
// of every month, and the very same answers to every report; a replay (which
// runs on a scratch SQLite database) verifies against the PostgreSQL tables.
// Three histories cover the read models: pricing and usage through the real
// command pipeline (transfers, billable, pro forma, cost), random usage with
// dead letters and redrives, and closes, invoices and payments.
func TestBackendsGiveIdenticalReadModels(t *testing.T) {
	t.Parallel()
	if reason := readmodeltest.SkipReason(); reason != "" {
		t.Skip(reason)
	}
	histories := map[string]func(t *testing.T, s eventstore.Store){
		"pricing": func(t *testing.T, s eventstore.Store) {
			w := newPricingWorld(t, s, "2026-08-10T12:00:00Z")
			w.apply(simSetup...)
			w.setClock("2026-10-20T00:00:00Z")
			accounts := []string{simS1, simM1, simS2, simM2, simS3, simM3, simS4, simM4, simP1}
			rng := rand.New(rand.NewPCG(20260901, 8))
			for i := range 40 {
				sku := simSKUs[rng.IntN(len(simSKUs))]
				r := use(fmt.Sprintf("u-%d", i), accounts[rng.IntN(len(accounts))], fmt.Sprintf("2026-%02d-%02d", 9+rng.IntN(2), 1+rng.IntN(19)),
					sku[0], sku[1], fmt.Sprint(1+rng.IntN(100)), "0.0"+fmt.Sprint(1+rng.IntN(99)), fmt.Sprintf("%d.%03d", rng.IntN(50), rng.IntN(1000)))
				r.FreeTier = rng.IntN(5) == 0
				w.ingest(r)
				if i == 20 {
					w.apply(`{"command":"UpdatePricingRule","pricing_rule_id":"r-g","modifier_percentage":"12.5"}`,
						`{"command":"UpdateCustomLineItem","custom_line_item_id":"cli-fee","flat_amount":"7.25"}`)
				}
			}
		},
		"usage": func(t *testing.T, s eventstore.Store) {
			rng := rand.New(rand.NewPCG(20260902, 0))
			var deadLetters []string
			m := &usageModel{cost: map[string]string{}, records: map[string]uint64{}}
			genUsage(t, s, rng, m, 40, &deadLetters, t0)
		},
		"invoices": func(t *testing.T, s eventstore.Store) { appendInvoiceScenario(t, s) },
	}
	months := []string{"2026-08", sep, oct, "2026-11"}
	for name, history := range histories {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := memstore.New()
			history(t, s)
			last := lastPosition(t, s)
			lite := projectAll(t, s, readmodeltest.SQLite, last)
			pg := projectAll(t, s, readmodeltest.Postgres, last)
			ctx := context.Background()
			var rows uint64 // of the digests, so that an empty comparison fails
			for _, month := range months {
				liteAll, pgAll := readAll(t, lite, month), readAll(t, pg, month)
				for _, a := range liteAll[:3] {
					for _, d := range a.msg.(*billingv1.MonthDigestResponse).GetDigests() {
						rows += d.GetRows()
					}
				}
				for i := range liteAll {
					assertProto(t, fmt.Sprintf("%s: %s on PostgreSQL vs SQLite", month, liteAll[i].what), pgAll[i].msg, liteAll[i].msg)
				}
				// `billctl replay --verify` against the PostgreSQL tables.
				live := pgAll[0].msg.(*billingv1.MonthDigestResponse)
				replay, err := projections.ReplayMonth(ctx, s, month, time.Time{}, nil)
				if err != nil {
					t.Fatalf("replay %s: %v", month, err)
				}
				assertProto(t, month+" replay vs PostgreSQL", replay, live)
				assertReplayEqualsLive(t, s, pg, month)
			}
			if rows == 0 {
				t.Fatal("the history left every read model empty: nothing was compared")
			}
			t.Logf("%d digest rows identical on both backends", rows)
		})
	}
}

// projectAll runs every projection over s into a new read model of rm and
// waits until each has applied pos.
func projectAll(t *testing.T, s eventstore.Store, rm readmodeltest.Backend, pos uint64) *readmodel.DB {
	t.Helper()
	db := openDB(t, rm.Target(t))
	for _, p := range []projections.Projection{projections.Transfers{}, projections.Usage{}, projections.Proforma{},
		projections.Invoices{}, projections.Payments{}} {
		waitFor(t, start(t, db, s, p, projections.RunnerConfig{BatchSize: 7, IdleInterval: time.Hour}), pos)
	}
	return db
}

// answer is one read of a read model.
type answer struct {
	what string
	msg  proto.Message
}

// readAll reads every digest and report of month, the month digest first.
func readAll(t *testing.T, db *readmodel.DB, month string) []answer {
	t.Helper()
	ctx := context.Background()
	var out []answer
	add := func(what string, msg proto.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s %s on %s: %v", what, month, db.Backend(), err)
		}
		out = append(out, answer{what, msg})
	}
	md, err := db.MonthDigest(ctx, month)
	add("MonthDigest", md, err)
	pd, err := db.ProformaDigests(ctx, month)
	add("ProformaDigests", &billingv1.MonthDigestResponse{Digests: pd}, err)
	id, err := db.InvoiceDigests(ctx, month)
	add("InvoiceDigests", &billingv1.MonthDigestResponse{Digests: id}, err)
	b, err := db.ReportBillable(ctx, month, "", "")
	add("ReportBillable", b, err)
	p, err := db.ReportProforma(ctx, month, "", "", "")
	add("ReportProforma", p, err)
	c, err := db.ReportCost(ctx, month, "")
	add("ReportCost", c, err)
	inv, err := db.ReportInvoices(ctx, &billingv1.ReportInvoicesRequest{Month: month})
	add("ReportInvoices", inv, err)
	tax, err := db.ReportTax(ctx, &billingv1.ReportTaxRequest{Month: month})
	add("ReportTax", tax, err)
	pay, err := db.ReportPayments(ctx, &billingv1.ReportPaymentsRequest{Month: month})
	add("ReportPayments", pay, err)
	all, err := db.ReportPayments(ctx, &billingv1.ReportPaymentsRequest{})
	add("ReportPayments (all months)", all, err)
	tr, err := db.ListTransfersResponse(ctx, projections.TransfersName, readmodel.TransferFilter{})
	add("ListTransfers", tr, err)
	dl, err := db.ListDeadLetters(ctx, "")
	add("ListDeadLetters", dl, err)
	return out
}
