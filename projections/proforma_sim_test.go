package projections_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// The simulation's organizations: payers P1 and P2; S1 and S2 pay through P1,
// S3 through P2, and S4 through S2 (a chain S4 → S2 → P1, T7/P7).
const (
	simP1, simP2                    = "100000000001", "100000000002"
	simS1, simS2, simS3, simS4      = "200000000001", "200000000002", "200000000003", "200000000004"
	simM1, simM2, simM3, simM4      = "200000000011", "200000000012", "200000000013", "200000000014"
	simCustomGroup                  = "bg-x"
	simTBG1, simTBG2, simTBG3, sim4 = "tbg-rt-1", "tbg-rt-2", "tbg-rt-3", "tbg-rt-4"
)

// simSetup: every scope and type of rule, managed and owned plans at both
// levels of the chain, flat and percentage items, a one-month credit.
var simSetup = []string{
	`{"command":"RegisterOrganization","management_account_id":"100000000001","name":"P1"}`,
	`{"command":"RegisterOrganization","management_account_id":"100000000002","name":"P2"}`,
	`{"command":"RegisterOrganization","management_account_id":"200000000001","name":"S1","member_account_ids":["200000000011"]}`,
	`{"command":"RegisterOrganization","management_account_id":"200000000002","name":"S2","member_account_ids":["200000000012"]}`,
	`{"command":"RegisterOrganization","management_account_id":"200000000003","name":"S3","member_account_ids":["200000000013"]}`,
	`{"command":"RegisterOrganization","management_account_id":"200000000004","name":"S4","member_account_ids":["200000000014"]}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r-g","owner_account_id":"100000000001","name":"g","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"10"}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r-ec2","owner_account_id":"100000000001","name":"ec2","type":"DISCOUNT","scope":"SERVICE","service":"AmazonEC2","modifier_percentage":"5"}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r-sku","owner_account_id":"100000000001","name":"sku","type":"MARKUP","scope":"SKU","service":"AmazonS3","usage_type":"TimedStorage-ByteHrs","modifier_percentage":"20"}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r-be","owner_account_id":"100000000001","name":"be","type":"DISCOUNT","scope":"BILLING_ENTITY","billing_entity":"AWS","modifier_percentage":"1.5"}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r-ft","owner_account_id":"100000000001","name":"ft","type":"TIERING","scope":"GLOBAL","free_tier_activated":true}`,
	`{"command":"CreatePricingPlan","pricing_plan_id":"pp-a","owner_account_id":"100000000001","name":"a","pricing_rule_ids":["r-g","r-ec2","r-ft"]}`,
	`{"command":"CreatePricingPlan","pricing_plan_id":"pp-b","owner_account_id":"100000000001","name":"b","pricing_rule_ids":["r-sku","r-be"]}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r2-g","owner_account_id":"200000000002","name":"g2","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"15"}`,
	`{"command":"CreatePricingPlan","pricing_plan_id":"pp-s2","owner_account_id":"200000000002","name":"s2","pricing_rule_ids":["r2-g"]}`,
	`{"command":"CreatePricingRule","pricing_rule_id":"r3-d","owner_account_id":"100000000002","name":"d3","type":"DISCOUNT","scope":"GLOBAL","modifier_percentage":"3"}`,
	`{"command":"CreatePricingPlan","pricing_plan_id":"pp-p2","owner_account_id":"100000000002","name":"p2","pricing_rule_ids":["r3-d"]}`,
	`{"command":"InviteBillSource","transfer_id":"rt-1","payer_account_id":"100000000001","source_account_id":"200000000001","start_month":"2026-09","pricing_plan_id":"pp-a"}`,
	`{"command":"AcceptTransfer","transfer_id":"rt-1"}`,
	`{"command":"InviteBillSource","transfer_id":"rt-2","payer_account_id":"100000000001","source_account_id":"200000000002","start_month":"2026-09","pricing_plan_id":"pp-b"}`,
	`{"command":"AcceptTransfer","transfer_id":"rt-2"}`,
	`{"command":"InviteBillSource","transfer_id":"rt-3","payer_account_id":"100000000002","source_account_id":"200000000003","start_month":"2026-09"}`,
	`{"command":"AcceptTransfer","transfer_id":"rt-3"}`,
	`{"command":"InviteBillSource","transfer_id":"rt-4","payer_account_id":"200000000002","source_account_id":"200000000004","start_month":"2026-09","pricing_plan_id":"pp-s2"}`,
	`{"command":"AcceptTransfer","transfer_id":"rt-4"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-fee","billing_group_id":"tbg-rt-1","name":"fee","charge_type":"FEE","flat_amount":"10","start_month":"2026-09"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-ec2","billing_group_id":"tbg-rt-2","name":"ec2-fee","charge_type":"FEE","percentage":"5","services":["AmazonEC2"],"start_month":"2026-10"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-promo","billing_group_id":"tbg-rt-3","name":"promo","charge_type":"CREDIT","flat_amount":"3","start_month":"2026-09","end_month":"2026-09"}`,
	`{"command":"CreateCustomLineItem","custom_line_item_id":"cli-chain","billing_group_id":"tbg-rt-4","name":"chain-fee","charge_type":"FEE","percentage":"1.25","start_month":"2026-09"}`,
}

// simSKUs are the usage types the simulation draws from.
var simSKUs = [][2]string{
	{"AmazonEC2", "BoxUsage:m6i.large"}, {"AmazonS3", "TimedStorage-ByteHrs"}, {"AmazonS3", "Requests-Tier1"}, {"AWSLambda", "Request"},
}

// simModel is what the simulation knows of the configuration, to send only
// commands the ledger accepts, and of the usage, for the conservation checks.
type simModel struct {
	plans     map[string][]string // plan → rules
	group     string              // P1's own group ("" = none now; ids are never reused)
	groups    int                 // groups created so far
	members   []string            // its accounts, primary first
	listTotal map[[2]string]*apd.Decimal
}

// addList adds a record's list cost to every level that prices it.
func (m *simModel) addList(t *testing.T, r *billingv1.UsageRecord, owners ...string) {
	t.Helper()
	c, err := domain.ChargeOf(r)
	if err != nil {
		t.Fatal(err)
	}
	month := r.GetChargePeriodStart().AsTime().Format("2006-01")
	for _, o := range owners {
		k := [2]string{month, o}
		prev := m.listTotal[k]
		if prev == nil {
			prev = apd.New(0, 0)
		}
		if m.listTotal[k], err = domain.AddDecimal(prev, c.ListCost); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProformaSimulation (R2, P4, P7) drives random configuration changes and
// usage through the real pipeline and usage writer, with a projection running
// all along, and checks every few steps that the live pro forma and cost
// digests equal a replay of the events (which applies the configuration first
// and never re-rates), and that the list cost of every payer's rows is the
// list cost of the usage it prices (nothing lost or counted twice by
// re-rates). At the end, projections run from scratch with other batch sizes
// reach the very same digests. The seed is logged and named on failure;
// PF_SEED=n runs another one.
func TestProformaSimulation(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		seed := uint64(20260901)
		if v := os.Getenv("PF_SEED"); v != "" {
			seed, _ = strconv.ParseUint(v, 10, 64)
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		t.Logf("seed %d", seed)
		w := newPricingWorld(t, s, "2026-08-10T12:00:00Z")
		w.apply(simSetup...)
		w.setClock("2026-10-20T00:00:00Z")
		m := &simModel{plans: map[string][]string{"pp-a": {"r-g", "r-ec2", "r-ft"}, "pp-b": {"r-sku", "r-be"}},
			listTotal: map[[2]string]*apd.Decimal{}}
		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Proforma{}, projections.RunnerConfig{BatchSize: 5, IdleInterval: 10 * time.Millisecond})

		accounts := map[string][]string{ // account → levels that price it
			simS1: {simP1}, simM1: {simP1}, simS2: {simP1}, simM2: {simP1}, simS3: {simP2}, simM3: {simP2},
			simS4: {simP1, simS2}, simM4: {simP1, simS2}, simP1: {simP1},
		}
		accountIDs := slices.Sorted(maps.Keys(accounts))
		n := 0
		verify := func(step int) {
			t.Helper()
			waitFor(t, rn, lastPosition(t, s))
			for _, month := range []string{"2026-09", "2026-10"} {
				assertReplayEqualsLive(t, s, db, month)
				report := reportProforma(t, db, month, "", "", "")
				got := map[string]*apd.Decimal{}
				for _, r := range report.GetRows() {
					if r.GetCustomLineItemId() != "" {
						continue
					}
					d, err := domain.ParseDecimal(r.GetListCost())
					if err != nil {
						t.Fatal(err)
					}
					prev := got[r.GetOwnerAccountId()]
					if prev == nil {
						prev = apd.New(0, 0)
					}
					if got[r.GetOwnerAccountId()], err = domain.AddDecimal(prev, d); err != nil {
						t.Fatal(err)
					}
				}
				for _, owner := range []string{simP1, simP2, simS2} {
					want, have := m.listTotal[[2]string{month, owner}], got[owner]
					if (want == nil) != (have == nil) || (want != nil && want.Cmp(have) != 0) {
						t.Fatalf("seed %d step %d: %s list cost of %s's rows = %v, usage = %v", seed, step, month, owner, have, want)
					}
				}
				assertMarginIsProformaMinusBillable(t, reportCost(t, db, month, ""))
			}
		}
		decimal := func(max int) string {
			return fmt.Sprintf("%d.%02d", rng.IntN(max), rng.IntN(100))
		}
		for step := 0; step < 60; step++ {
			switch op := rng.IntN(10); {
			case op < 4: // usage
				var recs []*billingv1.UsageRecord
				for range 1 + rng.IntN(6) {
					n++
					a := accountIDs[rng.IntN(len(accountIDs))]
					sku := simSKUs[rng.IntN(len(simSKUs))]
					day := fmt.Sprintf("2026-%02d-%02d", 9+rng.IntN(2), 1+rng.IntN(19))
					billed := decimal(50)
					if rng.IntN(10) == 0 {
						billed = "-" + billed
					}
					r := use(fmt.Sprintf("u-%d", n), a, day, sku[0], sku[1], fmt.Sprint(1+rng.IntN(100)), "0.0"+fmt.Sprint(1+rng.IntN(99)), billed)
					r.FreeTier = rng.IntN(5) == 0
					if rng.IntN(8) == 0 {
						r.ListUnitPrice = "" // list cost = billed cost
					}
					recs = append(recs, r)
					m.addList(t, r, accounts[a]...)
				}
				w.ingest(recs...)
			case op == 4: // a rule's value
				switch rule := []string{"r-g", "r-ec2", "r-sku", "r-be", "r2-g", "r3-d", "r-ft"}[rng.IntN(7)]; rule {
				case "r-ft":
					w.apply(fmt.Sprintf(`{"command":"UpdatePricingRule","pricing_rule_id":"r-ft","free_tier_activated":%t}`, rng.IntN(2) == 0))
				default:
					w.apply(fmt.Sprintf(`{"command":"UpdatePricingRule","pricing_rule_id":%q,"modifier_percentage":%q}`, rule, decimal(60)))
				}
			case op == 5: // a group's plan
				g := []string{simTBG1, simTBG2, simTBG3, sim4}[rng.IntN(4)]
				plans := map[string][]string{simTBG1: {"pp-a", "pp-b", "BASIC", "PASSTHROUGH"}, simTBG2: {"pp-a", "pp-b", "PASSTHROUGH"},
					simTBG3: {"pp-p2", "BASIC", "PASSTHROUGH"}, sim4: {"pp-s2", "BASIC", "PASSTHROUGH"}}[g]
				w.apply(fmt.Sprintf(`{"command":"UpdateBillingGroup","billing_group_id":%q,"pricing_plan_id":%q}`, g, plans[rng.IntN(len(plans))]))
			case op == 6: // a plan's rules
				plan := []string{"pp-a", "pp-b"}[rng.IntN(2)]
				have := m.plans[plan]
				var free []string
				for _, r := range []string{"r-g", "r-ec2", "r-sku", "r-be", "r-ft"} {
					if !slices.Contains(have, r) {
						free = append(free, r)
					}
				}
				if len(have) > 0 && (len(free) == 0 || rng.IntN(2) == 0) {
					r := have[rng.IntN(len(have))]
					w.apply(fmt.Sprintf(`{"command":"DisassociatePricingRules","pricing_plan_id":%q,"pricing_rule_ids":[%q]}`, plan, r))
					m.plans[plan] = slices.DeleteFunc(slices.Clone(have), func(x string) bool { return x == r })
				} else {
					r := free[rng.IntN(len(free))]
					w.apply(fmt.Sprintf(`{"command":"AssociatePricingRules","pricing_plan_id":%q,"pricing_rule_ids":[%q]}`, plan, r))
					m.plans[plan] = append(slices.Clone(have), r)
				}
			case op == 7: // P1's own group of accounts, overriding the transfer groups
				candidates := []string{simS1, simM1, simM2, simM4}
				switch {
				case m.group == "":
					a := candidates[rng.IntN(len(candidates))]
					m.groups++
					m.group, m.members = fmt.Sprintf("bg-x%d", m.groups), []string{a}
					w.apply(fmt.Sprintf(`{"command":"CreateBillingGroup","billing_group_id":%q,"owner_account_id":"100000000001","name":"x","primary_account_id":%q,"pricing_plan_id":%q}`,
						m.group, a, []string{"pp-a", "pp-b", "BASIC"}[rng.IntN(3)]))
				case len(m.members) > 1 && rng.IntN(3) == 0:
					a := m.members[1+rng.IntN(len(m.members)-1)]
					w.apply(fmt.Sprintf(`{"command":"DisassociateAccounts","billing_group_id":%q,"account_ids":[%q]}`, m.group, a))
					m.members = slices.DeleteFunc(slices.Clone(m.members), func(x string) bool { return x == a })
				case rng.IntN(4) == 0:
					w.apply(fmt.Sprintf(`{"command":"DeleteBillingGroup","billing_group_id":%q}`, m.group))
					m.group, m.members = "", nil
				default:
					var free []string
					for _, a := range candidates {
						if !slices.Contains(m.members, a) {
							free = append(free, a)
						}
					}
					if len(free) > 0 {
						a := free[rng.IntN(len(free))]
						w.apply(fmt.Sprintf(`{"command":"AssociateAccounts","billing_group_id":%q,"account_ids":[%q]}`, m.group, a))
						m.members = append(m.members, a)
					}
				}
			case op == 8: // a custom line item
				w.apply(fmt.Sprintf(`{"command":"UpdateCustomLineItem","custom_line_item_id":"cli-fee","flat_amount":%q}`, decimal(30)))
			default:
				verify(step)
			}
		}
		verify(60)
		rows := len(reportProforma(t, db, "2026-09", "", "", "").GetRows()) + len(reportProforma(t, db, "2026-10", "", "", "").GetRows())
		t.Logf("seed %d: %d usage records, %d pro forma rows, %d groups created", seed, n, rows, m.groups)

		// Projections from scratch, event by event and in other batches, reach
		// the same digests as the one that followed the whole history.
		want := map[string][]*billingv1.ReadModelDigest{}
		for _, month := range []string{"2026-09", "2026-10"} {
			d, err := db.ProformaDigests(context.Background(), month)
			if err != nil {
				t.Fatal(err)
			}
			want[month] = d
		}
		for _, batch := range []int{1, 3, projections.DefaultBatchSize} {
			other, _ := runProforma(t, s, rm, projections.Proforma{}, batch)
			for month, d := range want {
				got, err := other.ProformaDigests(context.Background(), month)
				if err != nil {
					t.Fatal(err)
				}
				for i := range d {
					assertProto(t, fmt.Sprintf("seed %d: batch %d %s %s", seed, batch, month, d[i].GetName()), got[i], d[i])
				}
			}
		}
	})
}
