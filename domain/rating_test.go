package domain

import (
	"testing"

	"github.com/cockroachdb/apd/v3"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Every expected figure in this file is computed by hand in the comment beside it.

func ruleOf(id string, typ RuleType, scope RuleScope, pct string) PricingRule {
	return PricingRuleFromProto(&billingv1.PricingRule{PricingRuleId: id, OwnerAccountId: payerA, Name: id, Type: typ.proto(), Scope: scope.proto(), ModifierPercentage: pct})
}

func withKey(r PricingRule, service, usageType, operation, entity string) PricingRule {
	r.key.service, r.key.usageType, r.key.operation, r.key.billingEntity = service, usageType, operation, entity
	return r
}

func tiering(id string, on bool) PricingRule {
	return PricingRuleFromProto(&billingv1.PricingRule{PricingRuleId: id, OwnerAccountId: payerA, Name: id,
		Type: billingv1.PricingRuleType_PRICING_RULE_TYPE_TIERING, Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_GLOBAL, FreeTierActivated: on})
}

func dec(t *testing.T, s string) *apd.Decimal {
	t.Helper()
	d, err := ParseDecimal(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// usageOf builds the charge of a record: quantity × list unit price, and its billed cost.
func usageOf(t *testing.T, service, usageType, operation, quantity, price, billed string, freeTier bool) Charge {
	t.Helper()
	c, err := ChargeOf(&billingv1.UsageRecord{UsageId: "u", Service: service, UsageType: usageType, Operation: operation,
		Quantity: quantity, ListUnitPrice: price, BilledCost: billed, FreeTier: freeTier})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ec2(t *testing.T) Charge {
	return usageOf(t, "AmazonEC2", "BoxUsage:m6i.large", "RunInstances", "10", "0.096", "0.80", false)
}

func mustPlan(t *testing.T, id string, rules ...PricingRule) RatePlan {
	t.Helper()
	p, err := NewRatePlan(id, rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func equalDec(t *testing.T, what string, got *apd.Decimal, want string) {
	t.Helper()
	if got == nil || got.Cmp(dec(t, want)) != 0 {
		t.Errorf("%s = %v, want %s", what, got, want)
	}
}

func TestP3_ListCostIsQuantityTimesTheListUnitPrice(t *testing.T) {
	t.Parallel()
	equalDec(t, "EC2 list cost", ec2(t).ListCost, "0.96") // 10 × 0.096
	// 730 hours × 0.0000123 = 0.0089790: full precision, no rounding (M1).
	equalDec(t, "tiny list cost", usageOf(t, "AmazonS3", "Requests", "", "730", "0.0000123", "0", false).ListCost, "0.008979")
	// Without a list unit price, the billed cost is the only figure: list = billed.
	equalDec(t, "no list price", usageOf(t, "AmazonS3", "", "", "100", "", "0.096", false).ListCost, "0.096")
	if c := ec2(t); c.BillingEntity != DefaultBillingEntity {
		t.Errorf("billing entity %q", c.BillingEntity)
	}
}

func TestP3_RatingByRuleTypeAndManagedPlan(t *testing.T) {
	t.Parallel()
	ftOn, ftOff := tiering("pr-ft", true), tiering("pr-ft-off", false)
	markup10 := ruleOf("pr-markup10", RuleMarkup, ScopeGlobal, "10")
	free := usageOf(t, "AmazonEC2", "BoxUsage:t2.micro", "RunInstances", "750", "0.0116", "0", true) // list 750 × 0.0116 = 8.7
	for _, tc := range []struct {
		name   string
		plan   RatePlan
		charge Charge
		want   string
		rule   string
		basis  Basis
	}{
		// BASIC: the list cost, 10 × 0.096 = 0.96.
		{"basic", mustPlan(t, PlanBasic), ec2(t), "0.96", "", BasisList},
		// PASSTHROUGH: the billed cost, 0.80.
		{"passthrough", mustPlan(t, PlanPassthrough), ec2(t), "0.80", "", BasisBilled},
		// MARKUP 10%: 0.96 × 1.10 = 1.056.
		{"markup 10", mustPlan(t, "pp", markup10), ec2(t), "1.056", "pr-markup10", BasisList},
		// MARKUP 12.5%: 0.96 × 1.125 = 1.08.
		{"markup 12.5", mustPlan(t, "pp", ruleOf("m", RuleMarkup, ScopeGlobal, "12.5")), ec2(t), "1.08", "m", BasisList},
		// MARKUP 0.01%: 0.96 × 1.0001 = 0.960096.
		{"markup 0.01", mustPlan(t, "pp", ruleOf("m", RuleMarkup, ScopeGlobal, "0.01")), ec2(t), "0.960096", "m", BasisList},
		// DISCOUNT 5%: 0.96 × 0.95 = 0.912.
		{"discount 5", mustPlan(t, "pp", ruleOf("d", RuleDiscount, ScopeGlobal, "5")), ec2(t), "0.912", "d", BasisList},
		// DISCOUNT 100%: 0.96 × 0 = 0.
		{"discount 100", mustPlan(t, "pp", ruleOf("d", RuleDiscount, ScopeGlobal, "100")), ec2(t), "0", "d", BasisList},
		// No rule matches: the list cost, 0.96.
		{"no match", mustPlan(t, "pp", withKey(ruleOf("s3", RuleMarkup, ScopeService, "50"), "AmazonS3", "", "", "")), ec2(t), "0.96", "", BasisList},
		// TIERING activated: a free-tier record costs 0, whatever the markup.
		{"free tier on", mustPlan(t, "pp", markup10, ftOn), free, "0", "pr-ft", BasisList},
		// TIERING deactivated: a free-tier record costs its list 8.7, not marked up.
		{"free tier off", mustPlan(t, "pp", markup10, ftOff), free, "8.7", "pr-ft-off", BasisList},
		// A record outside the free tier ignores the tiering rule: 0.96 × 1.10 = 1.056.
		{"tiering, not free tier", mustPlan(t, "pp", markup10, ftOn), ec2(t), "1.056", "pr-markup10", BasisList},
		// No TIERING rule: a free-tier record is priced like any other, 8.7 × 1.10 = 9.57.
		{"free tier, no tiering rule", mustPlan(t, "pp", markup10), free, "9.57", "pr-markup10", BasisList},
		// PASSTHROUGH ignores the free tier flag: billed 0.
		{"passthrough free tier", mustPlan(t, PlanPassthrough), free, "0", "", BasisBilled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.plan.Rate(tc.charge)
			if err != nil {
				t.Fatal(err)
			}
			equalDec(t, "pro forma", got.ProformaCost, tc.want)
			if got.RuleID != tc.rule || got.Basis != tc.basis || got.Explanation == "" {
				t.Errorf("priced by %q basis %s (%s), want %q basis %s", got.RuleID, got.Basis, got.Explanation, tc.rule, tc.basis)
			}
		})
	}
}

func TestP2_TheMostGranularMatchingRuleWinsAndScopesNeverStack(t *testing.T) {
	t.Parallel()
	plan := mustPlan(t, "pp-std",
		ruleOf("g", RuleMarkup, ScopeGlobal, "10"),
		withKey(ruleOf("be", RuleMarkup, ScopeBillingEntity, "3"), "", "", "", "AWS"),
		withKey(ruleOf("svc", RuleDiscount, ScopeService, "5"), "AmazonEC2", "", "", ""),
		withKey(ruleOf("sku", RuleMarkup, ScopeSKU, "20"), "AmazonEC2", "BoxUsage:m6i.large", "", ""),
		withKey(ruleOf("sku-op", RuleMarkup, ScopeSKU, "30"), "AmazonEC2", "BoxUsage:m6i.large", "RunInstances", ""),
	)
	entityOnly := mustPlan(t, "pp-be", ruleOf("g", RuleMarkup, ScopeGlobal, "10"), withKey(ruleOf("be", RuleMarkup, ScopeBillingEntity, "3"), "", "", "", "AWS"))
	for _, tc := range []struct {
		name   string
		plan   RatePlan
		charge Charge
		rule   string
		scope  RuleScope
		want   string
	}{
		// SKU with its operation beats SKU without: 0.96 × 1.30 = 1.248 (not 1.30 × 1.20 × 0.95 × ...).
		{"sku with operation", plan, ec2(t), "sku-op", ScopeSKU, "1.248"},
		// Another operation of the SKU: the operation-less SKU rule, 0.96 × 1.20 = 1.152.
		{"sku any operation", plan, usageOf(t, "AmazonEC2", "BoxUsage:m6i.large", "RunSpot", "10", "0.096", "0", false), "sku", ScopeSKU, "1.152"},
		// Another usage type of EC2: SERVICE discount, 0.96 × 0.95 = 0.912.
		{"service", plan, usageOf(t, "AmazonEC2", "BoxUsage:c7g.xlarge", "RunInstances", "10", "0.096", "0", false), "svc", ScopeService, "0.912"},
		// Another service: BILLING_ENTITY "AWS" beats GLOBAL, 2.3 × 1.03 = 2.369 (100 × 0.023 = 2.3).
		{"billing entity", plan, usageOf(t, "AmazonS3", "TimedStorage-ByteHrs", "", "100", "0.023", "0", false), "be", ScopeBillingEntity, "2.369"},
		// Another billing entity: GLOBAL, 2.3 × 1.10 = 2.53.
		{"global", entityOnly, func() Charge {
			c := usageOf(t, "AmazonS3", "TimedStorage-ByteHrs", "", "100", "0.023", "0", false)
			c.BillingEntity = "AWS Marketplace"
			return c
		}(), "g", ScopeGlobal, "2.53"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.plan.Rate(tc.charge)
			if err != nil {
				t.Fatal(err)
			}
			if got.RuleID != tc.rule || got.RuleScope != tc.scope {
				t.Errorf("priced by %s (%s), want %s (%s)", got.RuleID, got.RuleScope, tc.rule, tc.scope)
			}
			equalDec(t, "pro forma", got.ProformaCost, tc.want)
		})
	}
}

func TestP2_ARatePlanRefusesRulesThatBreakTheLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		id    string
		rules []PricingRule
	}{
		{"rules on a managed plan", PlanBasic, []PricingRule{ruleOf("g", RuleMarkup, ScopeGlobal, "1")}},
		{"same key", "pp", []PricingRule{ruleOf("a", RuleMarkup, ScopeGlobal, "1"), ruleOf("b", RuleDiscount, ScopeGlobal, "1")}},
		{"two tiering", "pp", []PricingRule{tiering("a", true), tiering("b", false)}},
		{"bad modifier", "pp", []PricingRule{ruleOf("a", RuleMarkup, ScopeGlobal, "x")}},
	} {
		if _, err := NewRatePlan(tc.id, tc.rules); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestP5_CustomLineItemCharges(t *testing.T) {
	t.Parallel()
	usage := ServiceCosts{"AmazonEC2": dec(t, "0.912"), "AmazonS3": dec(t, "2.7655"), "AmazonRDS": dec(t, "0.4488")} // total 4.1263
	item := func(typ ChargeType, flat, pct string, services []string, start, end string) CustomLineItem {
		return CustomLineItemFromProto(&billingv1.CustomLineItem{CustomLineItemId: "cli", Name: "cli", ChargeType: typ.proto(),
			FlatAmount: flat, Percentage: pct, Services: services, StartMonth: start, EndMonth: end, AccountId: sourceB})
	}
	sep := mustMonth("2026-09")
	for _, tc := range []struct {
		name string
		item CustomLineItem
		m    Month
		want string // "" = not charged
	}{
		{"flat fee", item(ChargeFee, "100", "", nil, "2026-09", ""), sep, "100"},
		{"flat credit", item(ChargeCredit, "50", "", nil, "2026-09", "2026-09"), sep, "-50"},
		// 2% of 4.1263 = 0.082526.
		{"percentage fee of all services", item(ChargeFee, "", "2", nil, "2026-09", ""), sep, "0.082526"},
		// 10% of EC2 only, 0.912 → 0.0912.
		{"percentage of one service", item(ChargeFee, "", "10", []string{"AmazonEC2"}, "2026-09", ""), sep, "0.0912"},
		// 1.5% credit of S3 + a service without usage: 2.7655 × 0.015 = 0.0414825, negative.
		{"percentage credit", item(ChargeCredit, "", "1.5", []string{"AmazonS3", "AWSLambda"}, "2026-09", ""), sep, "-0.0414825"},
		{"recurring, later month", item(ChargeFee, "100", "", nil, "2026-09", ""), mustMonth("2027-03"), "100"},
		{"before the start", item(ChargeFee, "100", "", nil, "2026-10", ""), sep, ""},
		{"after the end", item(ChargeCredit, "50", "", nil, "2026-08", "2026-08"), sep, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := tc.item.ChargeIn(tc.m, usage)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.want != "") {
				t.Fatalf("charged %v, want %q", ok, tc.want)
			}
			if ok {
				equalDec(t, "amount", got.Amount, tc.want)
				if got.AccountID != sourceB {
					t.Errorf("account %s", got.AccountID)
				}
			}
		})
	}
}

// The acceptance example of issue #4: a plan with a GLOBAL markup, a SERVICE
// discount and a SKU markup prices each record by exactly one rule, and the
// group's month total is the hand-computed figure including a flat fee, a
// percentage fee and a credit. Everything goes through the real commands and
// events: the rules and items are folded from the streams the decisions wrote.
func TestP5_AcceptanceExamplePricesEachRecordByOneRuleAndTotalsTheMonth(t *testing.T) {
	s := pricingWorld(t)
	credit := newItem("cli-credit", "bg-acme", "CREDIT", "50", "")
	credit.EndMonth = "2026-09"
	ec2Care := newItem("cli-ec2-care", "bg-acme", "FEE", "", "10")
	ec2Care.Services = []string{"AmazonEC2"}
	s.Do(
		newRule("pr-markup10", "MARKUP", "GLOBAL", "10"),
		serviceRule("pr-ec2", "DISCOUNT", "AmazonEC2", "5"),
		skuRule("pr-sku", "MARKUP", "AmazonS3", "TimedStorage-ByteHrs", "", "20"),
		newPlan("pp-std", "pr-markup10", "pr-ec2", "pr-sku"),
		newGroup("bg-acme", "pp-std", sourceB, sourceB, acctB3),
		newItem("cli-support", "bg-acme", "FEE", "100", ""),
		newItem("cli-mgmt", "bg-acme", "FEE", "", "2"),
		credit, ec2Care,
	)
	g := s.group("bg-acme")
	var rules []PricingRule
	for _, id := range s.plan(g.PricingPlanID()).RuleIDs() {
		rules = append(rules, s.rule(id))
	}
	plan := mustPlan(t, g.PricingPlanID(), rules...)

	records := []struct {
		charge  Charge
		rule    string
		proform string
	}{
		// EC2: 10 × 0.096 = 0.96, SERVICE discount 5% → 0.96 × 0.95 = 0.912.
		{usageOf(t, "AmazonEC2", "BoxUsage:m6i.large", "RunInstances", "10", "0.096", "0.80", false), "pr-ec2", "0.912"},
		// S3 storage: 100 × 0.023 = 2.3, SKU markup 20% → 2.3 × 1.2 = 2.76.
		{usageOf(t, "AmazonS3", "TimedStorage-ByteHrs", "", "100", "0.023", "2.1", false), "pr-sku", "2.76"},
		// S3 requests: 1000 × 0.000005 = 0.005, GLOBAL markup 10% → 0.0055.
		{usageOf(t, "AmazonS3", "Requests-Tier1", "PutObject", "1000", "0.000005", "0.005", false), "pr-markup10", "0.0055"},
		// RDS: 24 × 0.017 = 0.408, GLOBAL markup 10% → 0.4488.
		{usageOf(t, "AmazonRDS", "InstanceUsage:db.t3.micro", "CreateDBInstance", "24", "0.017", "0.4", false), "pr-markup10", "0.4488"},
	}
	byService := ServiceCosts{}
	for _, r := range records {
		got, err := plan.Rate(r.charge)
		if err != nil {
			t.Fatal(err)
		}
		if got.RuleID != r.rule {
			t.Errorf("%s/%s priced by %q, want %s", r.charge.Service, r.charge.UsageType, got.RuleID, r.rule)
		}
		equalDec(t, r.charge.Service+"/"+r.charge.UsageType, got.ProformaCost, r.proform)
		prev := byService[r.charge.Service]
		if prev == nil {
			prev = apd.New(0, 0)
		}
		if byService[r.charge.Service], err = AddDecimal(prev, got.ProformaCost); err != nil {
			t.Fatal(err)
		}
	}
	var items []CustomLineItem
	for _, id := range g.Items() {
		items = append(items, FoldCustomLineItem(s.w[CustomLineItemStream(payerA, id)]))
	}

	// September. Usage: 0.912 + 2.76 + 0.0055 + 0.4488 = 4.1263.
	// Items: support +100; mgmt 2% of 4.1263 = +0.082526 (flat items excluded);
	// ec2-care 10% of EC2's 0.912 = +0.0912; credit −50.
	// Total: 4.1263 + 100 + 0.082526 + 0.0912 − 50 = 54.300026.
	sep, err := PriceGroupMonth(mustMonth("2026-09"), byService, items)
	if err != nil {
		t.Fatal(err)
	}
	equalDec(t, "September usage", sep.Usage, "4.1263")
	equalDec(t, "September total", sep.Total, "54.300026")
	want := map[string]string{"cli-credit": "-50", "cli-ec2-care": "0.0912", "cli-mgmt": "0.082526", "cli-support": "100"}
	if len(sep.Items) != len(want) {
		t.Fatalf("items %+v", sep.Items)
	}
	for _, it := range sep.Items {
		equalDec(t, it.ItemID, it.Amount, want[it.ItemID])
	}
	// October, same usage: the credit ended in September, 54.300026 + 50 = 104.300026.
	oct, err := PriceGroupMonth(mustMonth("2026-10"), byService, items)
	if err != nil {
		t.Fatal(err)
	}
	equalDec(t, "October total", oct.Total, "104.300026")
}

// Rating an aggregate equals the sum of rating its records: re-rating may keep
// one aggregate per SKU (P4).
func TestP4_RatingAnAggregateEqualsTheSumOfItsRecords(t *testing.T) {
	t.Parallel()
	plan := mustPlan(t, "pp", ruleOf("g", RuleMarkup, ScopeGlobal, "7.25"))
	a := usageOf(t, "AmazonEC2", "BoxUsage", "Run", "3", "0.0123", "0.03", false)
	b := usageOf(t, "AmazonEC2", "BoxUsage", "Run", "7.5", "0.0123", "0.09", false)
	sum, err := a.Plus(b)
	if err != nil {
		t.Fatal(err)
	}
	ra, _ := plan.Rate(a)
	rb, _ := plan.Rate(b)
	rs, err := plan.Rate(sum)
	if err != nil {
		t.Fatal(err)
	}
	// 3 × 0.0123 = 0.0369 → × 1.0725 = 0.03957525; 7.5 × 0.0123 = 0.09225 → 0.098938125; sum 0.138513375.
	both, _ := AddDecimal(ra.ProformaCost, rb.ProformaCost)
	equalDec(t, "sum of records", both, "0.138513375")
	equalDec(t, "aggregate", rs.ProformaCost, "0.138513375")
	if _, err := a.Plus(usageOf(t, "AmazonS3", "BoxUsage", "Run", "1", "1", "1", false)); err == nil {
		t.Error("charges of different keys added")
	}
}
