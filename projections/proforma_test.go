package projections_test

import (
	"fmt"
	"testing"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// Accounts of the pricing tests: payer P (Partner Co, member P2) pays for
// source S (Acme, members S3 and S4) from 2026-09 under transfer rt-acme,
// whose transfer billing group (T8) is tbg-rt-acme.
const (
	pfPayer   = "111111111111"
	pfPayer2  = "111111111112"
	pfSource  = "222222222222"
	pfSource3 = "222222222223"
	pfSource4 = "222222222224"
	tbgAcme   = "tbg-rt-acme"
)

// acmeSetup is issue #4's walk-through: three rules of three scopes in one
// plan, the transfer with that plan, a flat fee, a percentage fee and a
// one-month credit.
var acmeSetup = []string{
	`{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner","member_account_ids":["111111111112"]}`,
	`{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223","222222222224"]}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"pr-markup10","owner_account_id":"111111111111","name":"markup-10","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"10"}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"pr-ec2","owner_account_id":"111111111111","name":"ec2-discount","type":"DISCOUNT","scope":"SERVICE","service":"AmazonEC2","modifier_percentage":"5"}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"pr-sku","owner_account_id":"111111111111","name":"s3-std","type":"MARKUP","scope":"SKU","service":"AmazonS3","usage_type":"TimedStorage-ByteHrs","modifier_percentage":"20"}`,
	`{"command":"CreatePricingPlan","pricing_plan_id":"pp-std","owner_account_id":"111111111111","name":"standard","pricing_rule_ids":["pr-markup10","pr-ec2","pr-sku"]}`,
	`{"command":"InviteBillSource","transfer_id":"rt-acme","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09","pricing_plan_id":"pp-std"}`,
	`{"command":"AcceptTransfer","transfer_id":"rt-acme"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-support","billing_group_id":"tbg-rt-acme","name":"support","charge_type":"FEE","flat_amount":"100","start_month":"2026-09"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-mgmt","billing_group_id":"tbg-rt-acme","name":"managed-service","charge_type":"FEE","percentage":"2","start_month":"2026-09"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-credit","billing_group_id":"tbg-rt-acme","name":"promo","charge_type":"CREDIT","flat_amount":"50","start_month":"2026-09","end_month":"2026-09"}`,
}

// acmeSeptember is September's usage: every record matches exactly one rule
// of pp-std (or none), so each is priced by that one rule (P2: no stacking):
//
//	u-ec2-1  S3  AmazonEC2  10 × 0.096 = 0.96   SERVICE discount 5%  → 0.912
//	u-ec2-2  S4  AmazonEC2   5 × 0.096 = 0.48   SERVICE discount 5%  → 0.456
//	u-s3     S3  AmazonS3 TimedStorage  100 × 0.023 = 2.3  SKU markup 20% → 2.76
//	u-s3-req S3  AmazonS3 Requests   1000 × 0.000005 = 0.005  GLOBAL markup 10% → 0.0055
//	u-lambda S4  AWSLambda  50 × 0.2 = 10       GLOBAL markup 10%    → 11
//	u-own    P2  AmazonEC2   1 × 0.096 = 0.096  P's own usage: no group, list
//
// (a GLOBAL markup stacked on the EC2 discount would give 1.0032 and 0.5016).
var acmeSeptember = []*billingv1.UsageRecord{
	use("u-ec2-1", pfSource3, "2026-09-03", "AmazonEC2", "BoxUsage:m6i.large", "10", "0.096", "0.80"),
	use("u-ec2-2", pfSource4, "2026-09-04", "AmazonEC2", "BoxUsage:m6i.large", "5", "0.096", "0.40"),
	use("u-s3", pfSource3, "2026-09-05", "AmazonS3", "TimedStorage-ByteHrs", "100", "0.023", "2.10"),
	use("u-s3-req", pfSource3, "2026-09-06", "AmazonS3", "Requests-Tier1", "1000", "0.000005", "0.005"),
	use("u-lambda", pfSource4, "2026-09-07", "AWSLambda", "Request", "50", "0.2", "9"),
	use("u-own", pfPayer2, "2026-09-08", "AmazonEC2", "BoxUsage:t3.micro", "1", "0.096", "0.09"),
}

// acmeOctober is October's usage: 20 × 0.096 = 1.92, SERVICE discount 5% → 1.824.
var acmeOctober = []*billingv1.UsageRecord{
	use("u-oct-ec2", pfSource3, "2026-10-02", "AmazonEC2", "BoxUsage:m6i.large", "20", "0.096", "1.6"),
}

// acmeWorld applies acmeSetup on 2026-08-10 and books September's usage on
// 2026-09-15 and October's on 2026-10-05.
func acmeWorld(t *testing.T, s eventstore.Store) *pricingWorld {
	w := newPricingWorld(t, s, "2026-08-10T12:00:00Z")
	w.apply(acmeSetup...)
	w.setClock("2026-09-15T00:00:00Z")
	w.ingest(acmeSeptember...)
	w.setClock("2026-10-05T00:00:00Z")
	w.ingest(acmeOctober...)
	return w
}

// TestP2P3P5P6_PlanWithThreeScopesAndCustomLineItems is the issue's "done
// when": a plan holding a GLOBAL markup, a SERVICE discount and a SKU markup
// prices each record by exactly one rule, and the group's pro forma total
// equals the hand-computed figure with a flat fee, a percentage fee and a
// credit; the cost report's margin is pro forma − billable for every group.
// Through the real pipeline, usage writer, runner and SQLite file, on both
// stores, event by event and in batches.
func TestP2P3P5P6_PlanWithThreeScopesAndCustomLineItems(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		acmeWorld(t, s)
		for _, batch := range []int{1, projections.DefaultBatchSize} {
			t.Run(fmt.Sprintf("batch size %d", batch), func(t *testing.T) {
				db, _ := runProforma(t, s, rm, projections.Proforma{}, batch)
				sep, oct := "2026-09", "2026-10"
				// Usage 0.912 + 2.7655 + 11 + 0.456 = 15.1335; managed-service 2% of it
				// = 0.30267; support 100; promo −50: total 65.43617.
				acme := []*billingv1.ProformaRow{
					pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "0.96", "0.912", 1),
					pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonS3", "2.305", "2.7655", 2),
					pfRow(sep, pfPayer, tbgAcme, pfSource4, "AWSLambda", "10", "11", 1),
					pfRow(sep, pfPayer, tbgAcme, pfSource4, "AmazonEC2", "0.48", "0.456", 1),
					itemRow(sep, pfPayer, tbgAcme, pfSource, "managed-service", "cli-mgmt", "0.30267"),
					itemRow(sep, pfPayer, tbgAcme, pfSource, "promo", "cli-credit", "-50"),
					itemRow(sep, pfPayer, tbgAcme, pfSource, "support", "cli-support", "100"),
				}
				own := pfRow(sep, pfPayer, "", pfPayer2, "AmazonEC2", "0.096", "0.096", 1)
				assertProto(t, "September pro forma", reportProforma(t, db, sep, "", "", ""),
					&billingv1.ReportProformaResponse{Rows: append([]*billingv1.ProformaRow{own}, acme...), Total: "65.53217"})
				assertProto(t, "September pro forma of "+tbgAcme, reportProforma(t, db, sep, pfPayer, tbgAcme, ""),
					&billingv1.ReportProformaResponse{Rows: acme, Total: "65.43617"})
				// An account sees its usage and the items charged to it (the
				// percentage still priced on the whole group).
				assertProto(t, "September pro forma of "+pfSource4, reportProforma(t, db, sep, "", "", pfSource4),
					&billingv1.ReportProformaResponse{Rows: acme[2:4], Total: "11.456"})
				assertProto(t, "September pro forma of "+pfSource, reportProforma(t, db, sep, "", "", pfSource),
					&billingv1.ReportProformaResponse{Rows: acme[4:], Total: "50.30267"})
				// October: no credit; 2% of 1.824 = 0.03648.
				assertProto(t, "October pro forma", reportProforma(t, db, oct, "", "", ""), &billingv1.ReportProformaResponse{
					Rows: []*billingv1.ProformaRow{
						pfRow(oct, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "1.92", "1.824", 1),
						itemRow(oct, pfPayer, tbgAcme, pfSource, "managed-service", "cli-mgmt", "0.03648"),
						itemRow(oct, pfPayer, tbgAcme, pfSource, "support", "cli-support", "100"),
					},
					Total: "101.86048",
				})
				// A month without usage still carries the recurring flat fee.
				assertProto(t, "November pro forma", reportProforma(t, db, "2026-11", "", "", ""), &billingv1.ReportProformaResponse{
					Rows: []*billingv1.ProformaRow{
						itemRow("2026-11", pfPayer, tbgAcme, pfSource, "managed-service", "cli-mgmt", "0"),
						itemRow("2026-11", pfPayer, tbgAcme, pfSource, "support", "cli-support", "100"),
					},
					Total: "100",
				})

				// P6: billable 0.80 + 0.40 + 2.10 + 0.005 + 9 = 12.305; margin
				// 65.43617 − 12.305 = 53.13117 (81.20%); P's own usage at list:
				// 0.096 − 0.09 = 0.006 (6.25%).
				assertProto(t, "September cost", reportCost(t, db, sep, ""), &billingv1.ReportCostResponse{
					Rows: []*billingv1.CostRow{
						costRow(sep, pfPayer, "", "0.09", "0.096", "0.006", "6.25"),
						costRow(sep, pfPayer, tbgAcme, "12.305", "65.43617", "53.13117", "81.20"),
					},
					BillableTotal: "12.395", ProformaTotal: "65.53217", MarginTotal: "53.13717", MarginPercentage: "81.09",
				})
				assertProto(t, "November cost", reportCost(t, db, "2026-11", pfPayer), &billingv1.ReportCostResponse{
					Rows:          []*billingv1.CostRow{costRow("2026-11", pfPayer, tbgAcme, "0", "100", "100", "100.00")},
					BillableTotal: "0", ProformaTotal: "100", MarginTotal: "100", MarginPercentage: "100.00",
				})
				assertProto(t, "cost of another payer", reportCost(t, db, sep, pfSource), &billingv1.ReportCostResponse{
					Rows: []*billingv1.CostRow{}, BillableTotal: "0", ProformaTotal: "0", MarginTotal: "0",
				})
				for _, m := range []string{sep, oct, "2026-11"} {
					assertMarginIsProformaMinusBillable(t, reportCost(t, db, m, ""))
					assertReplayEqualsLive(t, s, db, m)
				}
			})
		}
	})
}

// assertMarginIsProformaMinusBillable checks P6 on every row and the totals.
func assertMarginIsProformaMinusBillable(t *testing.T, r *billingv1.ReportCostResponse) {
	t.Helper()
	check := func(what, billable, proforma, margin string) {
		b, err1 := domain.ParseDecimal(billable)
		p, err2 := domain.ParseDecimal(proforma)
		m, err3 := domain.ParseDecimal(margin)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("%s: %q %q %q do not parse", what, billable, proforma, margin)
		}
		sum, err := domain.AddDecimal(b, m)
		if err != nil || sum.Cmp(p) != 0 {
			t.Fatalf("%s: margin %s ≠ pro forma %s − billable %s", what, margin, proforma, billable)
		}
	}
	for _, row := range r.GetRows() {
		check("group "+row.GetBillingGroupId(), row.GetBillableCost(), row.GetProformaCost(), row.GetMargin())
	}
	check("totals", r.GetBillableTotal(), r.GetProformaTotal(), r.GetMarginTotal())
}

// TestP4_ChangingARuleThePlanOrTheAccountsReratesEveryOpenMonth: a rule
// change, a plan change and an account moving to another group each re-rate
// every record of every month not closed yet (usage already ingested
// included), and leave a closed month untouched. Two projections run side by
// side on the same events: one where no month is closed, one where the payer
// has closed September.
func TestP4_ChangingARuleThePlanOrTheAccountsReratesEveryOpenMonth(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		w := acmeWorld(t, s)
		sep, oct := "2026-09", "2026-10"
		closedSep := projections.Proforma{Closed: func(payer string, m domain.Month) bool {
			return payer == pfPayer && m.String() == sep
		}}
		open, openRn := runProforma(t, s, rm, projections.Proforma{}, projections.DefaultBatchSize)
		closed, closedRn := runProforma(t, s, rm, closedSep, 1)
		sync := func() {
			t.Helper()
			waitFor(t, openRn, lastPosition(t, s))
			waitFor(t, closedRn, lastPosition(t, s))
		}
		type want struct {
			rows  []*billingv1.ProformaRow // the usage rows of tbg-rt-acme
			total string                   // tbg-rt-acme's pro forma total, items included
		}
		check := func(what string, dbName string, month string, got *billingv1.ReportProformaResponse, w want) {
			t.Helper()
			var usageRows []*billingv1.ProformaRow
			for _, r := range got.GetRows() {
				if r.GetCustomLineItemId() == "" {
					usageRows = append(usageRows, r)
				}
			}
			assertProto(t, what+": "+dbName+" "+month+" usage rows",
				&billingv1.ReportProformaResponse{Rows: usageRows, Total: got.GetTotal()},
				&billingv1.ReportProformaResponse{Rows: w.rows, Total: w.total})
		}
		septBefore := want{[]*billingv1.ProformaRow{
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "0.96", "0.912", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonS3", "2.305", "2.7655", 2),
			pfRow(sep, pfPayer, tbgAcme, pfSource4, "AWSLambda", "10", "11", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource4, "AmazonEC2", "0.48", "0.456", 1),
		}, "65.43617"}
		phase := func(what string, septOpen, octAll want) {
			t.Helper()
			sync()
			check(what, "open", sep, reportProforma(t, open, sep, pfPayer, tbgAcme, ""), septOpen)
			check(what, "closed", sep, reportProforma(t, closed, sep, pfPayer, tbgAcme, ""), septBefore)
			check(what, "open", oct, reportProforma(t, open, oct, pfPayer, tbgAcme, ""), octAll)
			check(what, "closed", oct, reportProforma(t, closed, oct, pfPayer, tbgAcme, ""), octAll)
			for _, m := range []string{sep, oct} {
				assertMarginIsProformaMinusBillable(t, reportCost(t, open, m, ""))
				assertMarginIsProformaMinusBillable(t, reportCost(t, closed, m, ""))
				assertReplayEqualsLive(t, s, open, m) // a replay knows no closed month yet (issue #5)
			}
		}

		phase("before any change", septBefore, want{[]*billingv1.ProformaRow{
			pfRow(oct, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "1.92", "1.824", 1),
		}, "101.86048"})

		// The EC2 discount goes from 5% to 10%: 0.96 × 0.9 = 0.864, 0.48 × 0.9 =
		// 0.432, 1.92 × 0.9 = 1.728; the 2% fee follows (0.30123, 0.03456).
		w.apply(`{"command":"UpdatePricingRule","pricing_rule_id":"pr-ec2","modifier_percentage":"10"}`)
		phase("rule changed", want{[]*billingv1.ProformaRow{
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "0.96", "0.864", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonS3", "2.305", "2.7655", 2),
			pfRow(sep, pfPayer, tbgAcme, pfSource4, "AWSLambda", "10", "11", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource4, "AmazonEC2", "0.48", "0.432", 1),
		}, "65.36273"}, want{[]*billingv1.ProformaRow{
			pfRow(oct, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "1.92", "1.728", 1),
		}, "101.76256"})
		assertProto(t, "September cost after the rule change", reportCost(t, open, sep, pfPayer), &billingv1.ReportCostResponse{
			Rows: []*billingv1.CostRow{
				costRow(sep, pfPayer, "", "0.09", "0.096", "0.006", "6.25"),
				costRow(sep, pfPayer, tbgAcme, "12.305", "65.36273", "53.05773", "81.17"),
			},
			BillableTotal: "12.395", ProformaTotal: "65.45873", MarginTotal: "53.06373", MarginPercentage: "81.06",
		})

		// The group moves to PASSTHROUGH: every record at its billed cost.
		w.apply(`{"command":"UpdateBillingGroup","billing_group_id":"tbg-rt-acme","pricing_plan_id":"PASSTHROUGH"}`)
		phase("plan changed", want{[]*billingv1.ProformaRow{
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "0.96", "0.8", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonS3", "2.305", "2.105", 2),
			pfRow(sep, pfPayer, tbgAcme, pfSource4, "AWSLambda", "10", "9", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource4, "AmazonEC2", "0.48", "0.4", 1),
		}, "62.5511"}, want{[]*billingv1.ProformaRow{
			pfRow(oct, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "1.92", "1.6", 1),
		}, "101.632"})

		// Account S4 moves to its own group with pp-std (P4: it overrides the
		// transfer billing group): its usage leaves tbg-rt-acme.
		w.apply(`{"command":"CreateBillingGroup","billing_group_id":"bg-s4","owner_account_id":"111111111111","name":"s4","primary_account_id":"222222222224","pricing_plan_id":"pp-std"}`)
		phase("account moved", want{[]*billingv1.ProformaRow{
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "0.96", "0.8", 1),
			pfRow(sep, pfPayer, tbgAcme, pfSource3, "AmazonS3", "2.305", "2.105", 2),
		}, "52.9631"}, want{[]*billingv1.ProformaRow{
			pfRow(oct, pfPayer, tbgAcme, pfSource3, "AmazonEC2", "1.92", "1.6", 1),
		}, "101.632"})
		assertProto(t, "September cost after the move", reportCost(t, open, sep, pfPayer), &billingv1.ReportCostResponse{
			Rows: []*billingv1.CostRow{
				costRow(sep, pfPayer, "", "0.09", "0.096", "0.006", "6.25"),
				costRow(sep, pfPayer, "bg-s4", "9.4", "11.432", "2.032", "17.77"),
				costRow(sep, pfPayer, tbgAcme, "2.905", "52.9631", "50.0581", "94.52"),
			},
			BillableTotal: "12.395", ProformaTotal: "64.4911", MarginTotal: "52.0961", MarginPercentage: "80.78",
		})
		// The closed September still has the figures it had before any change.
		assertProto(t, "closed September cost", reportCost(t, closed, sep, pfPayer), &billingv1.ReportCostResponse{
			Rows: []*billingv1.CostRow{
				costRow(sep, pfPayer, "", "0.09", "0.096", "0.006", "6.25"),
				costRow(sep, pfPayer, tbgAcme, "12.305", "65.43617", "53.13117", "81.20"),
			},
			BillableTotal: "12.395", ProformaTotal: "65.53217", MarginTotal: "53.13717", MarginPercentage: "81.09",
		})

		// Usage arriving after the changes is priced with the configuration in force.
		w.ingest(use("u-oct-lambda", pfSource4, "2026-10-03", "AWSLambda", "Request", "10", "0.2", "1.8"))
		sync()
		assertProto(t, "October pro forma of bg-s4", reportProforma(t, open, oct, pfPayer, "bg-s4", ""), &billingv1.ReportProformaResponse{
			Rows: []*billingv1.ProformaRow{pfRow(oct, pfPayer, "bg-s4", pfSource4, "AWSLambda", "2", "2.2", 1)}, Total: "2.2",
		})
		assertProto(t, "October pro forma of bg-s4, closed September", reportProforma(t, closed, oct, pfPayer, "bg-s4", ""),
			&billingv1.ReportProformaResponse{Rows: []*billingv1.ProformaRow{pfRow(oct, pfPayer, "bg-s4", pfSource4, "AWSLambda", "2", "2.2", 1)}, Total: "2.2"})
		assertReplayEqualsLive(t, s, open, oct)
	})
}

// TestP7_TwoLevelChainPricesAtEachLevel: end customer C → reseller R →
// distributor D, with a different plan at each level. D prices C's usage
// (billable: the billed cost) through its transfer billing group of R, the
// transfer through which it receives C's bill; R prices it with its own plan,
// and R's billable cost is D's pro forma for it. A change at D's level
// re-rates R's figures too.
func TestP7_TwoLevelChainPricesAtEachLevel(t *testing.T) {
	t.Parallel()
	const (
		dist, reseller, resellerMember, customer, customerMember = "111111111111", "222222222222", "222222222223", "333333333333", "333333333334"
		tbgDR, tbgRC                                             = "tbg-rt-dr", "tbg-rt-rc"
		sep                                                      = "2026-09"
	)
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		w := newPricingWorld(t, s, "2026-08-10T12:00:00Z")
		w.apply(
			`{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Distributor"}`,
			`{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Reseller","member_account_ids":["222222222223"]}`,
			`{"command":"RegisterOrganization","management_account_id":"333333333333","name":"Customer","member_account_ids":["333333333334"]}`,
			`{"command":"CreatePricingRule","pricing_rule_id":"pr-d","owner_account_id":"111111111111","name":"d-markup","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"10"}`,
			`{"command":"CreatePricingPlan","pricing_plan_id":"pp-d","owner_account_id":"111111111111","name":"distributor","pricing_rule_ids":["pr-d"]}`,
			`{"command":"CreatePricingRule","pricing_rule_id":"pr-r","owner_account_id":"222222222222","name":"r-markup","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"30"}`,
			`{"command":"CreatePricingPlan","pricing_plan_id":"pp-r","owner_account_id":"222222222222","name":"reseller","pricing_rule_ids":["pr-r"]}`,
			`{"command":"InviteBillSource","transfer_id":"rt-dr","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09","pricing_plan_id":"pp-d"}`,
			`{"command":"AcceptTransfer","transfer_id":"rt-dr"}`,
			`{"command":"InviteBillSource","transfer_id":"rt-rc","payer_account_id":"222222222222","source_account_id":"333333333333","start_month":"2026-09","pricing_plan_id":"pp-r"}`,
			`{"command":"AcceptTransfer","transfer_id":"rt-rc"}`,
		)
		w.setClock("2026-09-15T00:00:00Z")
		w.ingest(
			use("u-c", customerMember, "2026-09-02", "AmazonEC2", "BoxUsage", "100", "1", "90"),
			use("u-r", resellerMember, "2026-09-03", "AmazonS3", "TimedStorage-ByteHrs", "10", "1", "8"),
		)
		db, rn := runProforma(t, s, rm, projections.Proforma{}, projections.DefaultBatchSize)
		check := func(what string, rows []*billingv1.ProformaRow, total string, costs []*billingv1.CostRow, costTotals [4]string) {
			t.Helper()
			waitFor(t, rn, lastPosition(t, s))
			assertProto(t, what+": pro forma", reportProforma(t, db, sep, "", "", ""), &billingv1.ReportProformaResponse{Rows: rows, Total: total})
			got := reportCost(t, db, sep, "")
			assertProto(t, what+": cost", got, &billingv1.ReportCostResponse{Rows: costs,
				BillableTotal: costTotals[0], ProformaTotal: costTotals[1], MarginTotal: costTotals[2], MarginPercentage: costTotals[3]})
			assertMarginIsProformaMinusBillable(t, got)
			assertReplayEqualsLive(t, s, db, sep)
		}

		// D: C's 100 × 1.1 = 110 (billed 90) and R's 10 × 1.1 = 11 (billed 8).
		// R: C's 100 × 1.3 = 130, billed by D 110.
		check("plans at both levels", []*billingv1.ProformaRow{
			pfRow(sep, dist, tbgDR, resellerMember, "AmazonS3", "10", "11", 1),
			pfRow(sep, dist, tbgDR, customerMember, "AmazonEC2", "100", "110", 1),
			pfRow(sep, reseller, tbgRC, customerMember, "AmazonEC2", "100", "130", 1),
		}, "251", []*billingv1.CostRow{
			costRow(sep, dist, tbgDR, "98", "121", "23", "19.01"),
			costRow(sep, reseller, tbgRC, "110", "130", "20", "15.38"),
		}, [4]string{"208", "251", "43", "17.13"})
		// The end customer sees its reseller's prices only (P7).
		assertProto(t, "customer's view", reportProforma(t, db, sep, reseller, "", customerMember), &billingv1.ReportProformaResponse{
			Rows: []*billingv1.ProformaRow{pfRow(sep, reseller, tbgRC, customerMember, "AmazonEC2", "100", "130", 1)}, Total: "130",
		})

		// R passes D's price through: R's pro forma is what D charges it.
		w.apply(`{"command":"UpdateBillingGroup","billing_group_id":"tbg-rt-rc","pricing_plan_id":"PASSTHROUGH"}`)
		check("reseller passes through", []*billingv1.ProformaRow{
			pfRow(sep, dist, tbgDR, resellerMember, "AmazonS3", "10", "11", 1),
			pfRow(sep, dist, tbgDR, customerMember, "AmazonEC2", "100", "110", 1),
			pfRow(sep, reseller, tbgRC, customerMember, "AmazonEC2", "100", "110", 1),
		}, "231", []*billingv1.CostRow{
			costRow(sep, dist, tbgDR, "98", "121", "23", "19.01"),
			costRow(sep, reseller, tbgRC, "110", "110", "0", "0.00"),
		}, [4]string{"208", "231", "23", "9.96"})

		// D's markup goes to 20%: D's figures and R's billable (and pass-through) follow.
		w.apply(`{"command":"UpdatePricingRule","pricing_rule_id":"pr-d","modifier_percentage":"20"}`)
		check("distributor re-rated", []*billingv1.ProformaRow{
			pfRow(sep, dist, tbgDR, resellerMember, "AmazonS3", "10", "12", 1),
			pfRow(sep, dist, tbgDR, customerMember, "AmazonEC2", "100", "120", 1),
			pfRow(sep, reseller, tbgRC, customerMember, "AmazonEC2", "100", "120", 1),
		}, "252", []*billingv1.CostRow{
			costRow(sep, dist, tbgDR, "98", "132", "34", "25.76"),
			costRow(sep, reseller, tbgRC, "120", "120", "0", "0.00"),
		}, [4]string{"218", "252", "34", "13.49"})

		// D groups the customer's account itself, at BASIC: that group wins over
		// the transfer billing group of R.
		w.apply(`{"command":"CreateBillingGroup","billing_group_id":"bg-cust","owner_account_id":"111111111111","name":"customer","primary_account_id":"333333333334","pricing_plan_id":"BASIC"}`)
		check("distributor groups the customer", []*billingv1.ProformaRow{
			pfRow(sep, dist, "bg-cust", customerMember, "AmazonEC2", "100", "100", 1),
			pfRow(sep, dist, tbgDR, resellerMember, "AmazonS3", "10", "12", 1),
			pfRow(sep, reseller, tbgRC, customerMember, "AmazonEC2", "100", "100", 1),
		}, "212", []*billingv1.CostRow{
			costRow(sep, dist, "bg-cust", "90", "100", "10", "10.00"),
			costRow(sep, dist, tbgDR, "8", "12", "4", "33.33"),
			costRow(sep, reseller, tbgRC, "100", "100", "0", "0.00"),
		}, [4]string{"198", "212", "14", "6.60"})
	})
}
