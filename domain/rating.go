package domain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/apd/v3"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The rating engine (P2, P3, P5): pure functions from a plan's rules and usage to
// pro forma cost, in exact decimals with no rounding (M1 rounds once, on the
// invoice line). Pricing is linear in the list cost, so rating an aggregate of
// records that share every attribute a rule matches on (a ChargeKey) gives
// exactly the sum of rating each record: re-rating can keep one aggregate per
// SKU instead of re-reading every record (P4).

// DefaultBillingEntity is the billing entity of usage records, which carry none
// yet (U1 lists no such field): BILLING_ENTITY rules for "AWS" match all usage.
// A billing_entity field on UsageRecord would make Marketplace usage matchable.
const DefaultBillingEntity = "AWS"

// ChargeKey is every attribute of usage that rule matching reads.
type ChargeKey struct {
	// Service, e.g. "AmazonEC2".
	Service string
	// UsageType, e.g. "BoxUsage:m6i.large".
	UsageType string
	// Operation, e.g. "RunInstances".
	Operation string
	// BillingEntity, e.g. "AWS".
	BillingEntity string
	// FreeTier is the record's free tier flag (TIERING, P3).
	FreeTier bool
}

// Charge is usage as the rating engine prices it: one usage record, or the sum
// of records with the same key.
type Charge struct {
	ChargeKey
	// ListCost is quantity × public on-demand rate (list unit price).
	ListCost *apd.Decimal
	// BilledCost is what the provider charges (PASSTHROUGH prices at it).
	BilledCost *apd.Decimal
}

// ChargeOf builds the charge of a valid usage record (U1): list cost = quantity ×
// list_unit_price, exactly. A record without a list unit price has no public
// rate to start from, so its list cost is its billed cost.
func ChargeOf(r *billingv1.UsageRecord) (Charge, error) {
	billed, err := ParseDecimal(r.GetBilledCost())
	if err != nil {
		return Charge{}, fmt.Errorf("usage %s: billed_cost: %w", r.GetUsageId(), err)
	}
	c := Charge{
		ChargeKey: ChargeKey{Service: r.GetService(), UsageType: r.GetUsageType(), Operation: r.GetOperation(),
			BillingEntity: DefaultBillingEntity, FreeTier: r.GetFreeTier()},
		BilledCost: billed,
		ListCost:   new(apd.Decimal).Set(billed),
	}
	if r.GetListUnitPrice() != "" {
		if c.ListCost, err = ListCost(r.GetQuantity(), r.GetListUnitPrice()); err != nil {
			return Charge{}, fmt.Errorf("usage %s: %w", r.GetUsageId(), err)
		}
	}
	return c, nil
}

// ListCost returns quantity × unit price exactly (P3).
func ListCost(quantity, unitPrice string) (*apd.Decimal, error) {
	q, err := ParseDecimal(quantity)
	if err != nil {
		return nil, fmt.Errorf("quantity: %w", err)
	}
	p, err := ParseDecimal(unitPrice)
	if err != nil {
		return nil, fmt.Errorf("list_unit_price: %w", err)
	}
	return mulDecimal(q, p)
}

// Plus returns the sum of two charges with the same key (aggregation per SKU).
func (c Charge) Plus(o Charge) (Charge, error) {
	if c.ChargeKey != o.ChargeKey {
		return Charge{}, fmt.Errorf("charges of different keys cannot be added: %+v and %+v", c.ChargeKey, o.ChargeKey)
	}
	list, err := AddDecimal(c.ListCost, o.ListCost)
	if err != nil {
		return Charge{}, err
	}
	billed, err := AddDecimal(c.BilledCost, o.BilledCost)
	if err != nil {
		return Charge{}, err
	}
	return Charge{ChargeKey: c.ChargeKey, ListCost: list, BilledCost: billed}, nil
}

// Basis says which figure a pro forma cost is computed from.
type Basis string

// Bases of a pro forma cost.
const (
	// BasisList: the list cost, possibly changed by a rule.
	BasisList Basis = "LIST"
	// BasisBilled: the billed cost (managed plan PASSTHROUGH, P3).
	BasisBilled Basis = "BILLED"
)

// Rating is the pro forma price of a charge and what set it, so a person can
// explain every figure: the plan, the one rule that priced it (none: list
// price), and the basis.
type Rating struct {
	// PlanID is the plan that priced the charge.
	PlanID string
	// ProformaCost is the price, full precision.
	ProformaCost *apd.Decimal
	// Basis is the figure the price starts from.
	Basis Basis
	// RuleID is the rule that priced the charge ("" when none matched).
	RuleID string
	// RuleType is the type of that rule.
	RuleType RuleType
	// RuleScope is the scope of that rule.
	RuleScope RuleScope
	// Explanation says in words how the price came about.
	Explanation string
}

// ratedRule is a rule with its factor on the list cost worked out once.
type ratedRule struct {
	rule   PricingRule
	factor *apd.Decimal // MARKUP 1 + m/100, DISCOUNT 1 − m/100; nil for TIERING
}

// RatePlan is a pricing plan ready to price usage. It is read-only once built.
type RatePlan struct {
	id          string
	passthrough bool
	rules       map[ruleKey]ratedRule // MARKUP and DISCOUNT rules by key
	tiering     *ratedRule
}

// NewRatePlan builds the rating form of plan planID from its rules (the live
// rules the plan holds). The managed plans take no rules: BASIC prices at list,
// PASSTHROUGH at the billed cost. It fails on rules that break P1 or P2, which
// the commands never let through.
func NewRatePlan(planID string, rules []PricingRule) (RatePlan, error) {
	p := RatePlan{id: planID, rules: map[ruleKey]ratedRule{}}
	if IsManagedPlan(planID) {
		if len(rules) > 0 {
			return RatePlan{}, fmt.Errorf("managed plan %s has no rules (got %d)", planID, len(rules))
		}
		p.passthrough = planID == PlanPassthrough
		return p, nil
	}
	if len(rules) > MaxRulesPerPlan {
		return RatePlan{}, fmt.Errorf("plan %s has %d rules; at most %d (P2)", planID, len(rules), MaxRulesPerPlan)
	}
	for _, r := range rules {
		if r.typ == RuleTiering {
			if p.tiering != nil {
				return RatePlan{}, fmt.Errorf("plan %s: rules %s and %s are both TIERING (P2)", planID, p.tiering.rule.id, r.id)
			}
			p.tiering = &ratedRule{rule: r}
			continue
		}
		if other, dup := p.rules[r.key]; dup {
			return RatePlan{}, fmt.Errorf("plan %s: rules %s and %s both have scope and key %s (P2)", planID, other.rule.id, r.id, r.key)
		}
		m, err := ParseDecimal(r.modifier)
		if err != nil {
			return RatePlan{}, fmt.Errorf("plan %s: rule %s: modifier_percentage: %w", planID, r.id, err)
		}
		factor, err := ruleFactor(r.typ, m)
		if err != nil {
			return RatePlan{}, fmt.Errorf("plan %s: rule %s: %w", planID, r.id, err)
		}
		p.rules[r.key] = ratedRule{rule: r, factor: factor}
	}
	return p, nil
}

// ruleFactor is 1 + m/100 for MARKUP and 1 − m/100 for DISCOUNT (P3). Dividing by
// 100 only moves the exponent, so the factor is exact.
func ruleFactor(t RuleType, m *apd.Decimal) (*apd.Decimal, error) {
	var pct apd.Decimal
	pct.Set(m)
	pct.Exponent -= 2
	var f apd.Decimal
	var err error
	switch t {
	case RuleMarkup:
		_, err = decimalCtx.Add(&f, apd.New(1, 0), &pct)
	case RuleDiscount:
		_, err = decimalCtx.Sub(&f, apd.New(1, 0), &pct)
	default:
		return nil, fmt.Errorf("rule type %q has no factor", t)
	}
	return &f, err
}

// ID is the plan id.
func (p RatePlan) ID() string { return p.id }

// Match returns the one MARKUP or DISCOUNT rule that prices a charge: the most
// granular that matches, SKU (with the charge's operation, then any operation)
// > SERVICE > BILLING_ENTITY > GLOBAL (P2). Scopes never stack.
func (p RatePlan) Match(k ChargeKey) (PricingRule, bool) {
	r, ok := p.match(k)
	return r.rule, ok
}

func (p RatePlan) match(k ChargeKey) (ratedRule, bool) {
	for _, key := range []ruleKey{
		{scope: ScopeSKU, service: k.Service, usageType: k.UsageType, operation: k.Operation},
		{scope: ScopeSKU, service: k.Service, usageType: k.UsageType},
		{scope: ScopeService, service: k.Service},
		{scope: ScopeBillingEntity, billingEntity: k.BillingEntity},
		{scope: ScopeGlobal},
	} {
		if r, ok := p.rules[key]; ok {
			return r, true
		}
	}
	return ratedRule{}, false
}

// Rate prices a charge (P3): PASSTHROUGH at its billed cost; a free-tier charge
// under a TIERING rule at 0 (activated) or at list (deactivated); otherwise its
// list cost × the factor of the one matching rule, or the list cost when none
// matches (BASIC has no rules). A plan without a TIERING rule prices free-tier
// charges like any other.
func (p RatePlan) Rate(c Charge) (Rating, error) {
	if c.ListCost == nil || c.BilledCost == nil {
		return Rating{}, fmt.Errorf("charge %+v lacks a list or billed cost", c.ChargeKey)
	}
	out := Rating{PlanID: p.id, Basis: BasisList}
	switch {
	case p.passthrough:
		out.Basis = BasisBilled
		out.ProformaCost = new(apd.Decimal).Set(c.BilledCost)
		out.Explanation = fmt.Sprintf("billed cost %s (managed plan %s)", c.BilledCost.Text('f'), p.id)
	case c.FreeTier && p.tiering != nil:
		r := p.tiering.rule
		out.RuleID, out.RuleType, out.RuleScope = r.id, r.typ, r.key.scope
		if r.freeTier {
			out.ProformaCost = apd.New(0, 0)
			out.Explanation = fmt.Sprintf("free tier activated by rule %s of plan %s: 0", r.id, p.id)
		} else {
			out.ProformaCost = new(apd.Decimal).Set(c.ListCost)
			out.Explanation = fmt.Sprintf("free tier deactivated by rule %s of plan %s: list cost %s", r.id, p.id, c.ListCost.Text('f'))
		}
	default:
		r, ok := p.match(c.ChargeKey)
		if !ok {
			out.ProformaCost = new(apd.Decimal).Set(c.ListCost)
			out.Explanation = fmt.Sprintf("list cost %s (no rule of plan %s matches)", c.ListCost.Text('f'), p.id)
			break
		}
		cost, err := mulDecimal(c.ListCost, r.factor)
		if err != nil {
			return Rating{}, fmt.Errorf("rule %s: %w", r.rule.id, err)
		}
		out.ProformaCost = cost
		out.RuleID, out.RuleType, out.RuleScope = r.rule.id, r.rule.typ, r.rule.key.scope
		out.Explanation = fmt.Sprintf("list cost %s × %s by %s of plan %s", c.ListCost.Text('f'), r.factor.Text('f'), describeRule(r.rule), p.id)
	}
	return out, nil
}

// ServiceCosts is a billing group's pro forma usage cost of one month by service:
// the input of PERCENTAGE custom line items (P5).
type ServiceCosts map[string]*apd.Decimal

// Total is the sum over every service.
func (s ServiceCosts) Total() (*apd.Decimal, error) {
	return s.sum(nil)
}

// sum adds the costs of the given services (nil = all), in sorted order so the
// result's representation never depends on map order.
func (s ServiceCosts) sum(services []string) (*apd.Decimal, error) {
	if services == nil {
		for name := range s {
			services = append(services, name)
		}
	}
	services = slices.Sorted(slices.Values(services))
	total := apd.New(0, 0)
	for _, name := range services {
		c, ok := s[name]
		if !ok || c == nil {
			continue
		}
		var err error
		if total, err = AddDecimal(total, c); err != nil {
			return nil, err
		}
	}
	return total, nil
}

// ItemCharge is what one custom line item charges in a month (P5).
type ItemCharge struct {
	// ItemID is the custom line item.
	ItemID string
	// Name is the item's name (the service column of its pro forma row).
	Name string
	// AccountID is the account charged.
	AccountID string
	// ChargeType is FEE or CREDIT.
	ChargeType ChargeType
	// Amount is signed: positive for a FEE, negative for a CREDIT.
	Amount *apd.Decimal
	// Base is, for a PERCENTAGE item, the pro forma usage cost the percentage
	// applies to; nil for a FLAT item.
	Base *apd.Decimal
}

// Charges reports whether the item charges month m: m is within [start, end],
// end open when empty; a deleted item charges nothing.
func (i CustomLineItem) Charges(m Month) bool {
	if i.deleted {
		return false
	}
	start, err := ParseMonth(i.start)
	if err != nil || m.Before(start) {
		return false
	}
	if i.end == "" {
		return true
	}
	end, err := ParseMonth(i.end)
	return err == nil && !end.Before(m)
}

// ChargeIn computes what the item charges in month m given the group's pro forma
// usage cost of that month (flat items excluded, so percentages never compound):
// FLAT its amount; PERCENTAGE the percent of the cost of its services (all when
// none are listed). A CREDIT is negative. ok is false when m is outside the
// item's range.
func (i CustomLineItem) ChargeIn(m Month, usage ServiceCosts) (charge ItemCharge, ok bool, err error) {
	if !i.Charges(m) {
		return ItemCharge{}, false, nil
	}
	out := ItemCharge{ItemID: i.id, Name: i.name, AccountID: i.account, ChargeType: i.chargeType}
	if i.flat != "" {
		if out.Amount, err = ParseDecimal(i.flat); err != nil {
			return ItemCharge{}, false, fmt.Errorf("custom line item %s: flat_amount: %w", i.id, err)
		}
	} else {
		pct, err := ParseDecimal(i.percentage)
		if err != nil {
			return ItemCharge{}, false, fmt.Errorf("custom line item %s: percentage: %w", i.id, err)
		}
		var services []string
		if len(i.services) > 0 {
			services = i.services
		}
		if out.Base, err = usage.sum(services); err != nil {
			return ItemCharge{}, false, err
		}
		var rate apd.Decimal
		rate.Set(pct)
		rate.Exponent -= 2
		if out.Amount, err = mulDecimal(out.Base, &rate); err != nil {
			return ItemCharge{}, false, fmt.Errorf("custom line item %s: %w", i.id, err)
		}
	}
	if i.chargeType == ChargeCredit {
		out.Amount.Neg(out.Amount)
	}
	return out, true, nil
}

// GroupMonth is a billing group's pro forma of one month (P5, P6).
type GroupMonth struct {
	// Usage is the pro forma usage cost, every service.
	Usage *apd.Decimal
	// Items are the custom line items charged that month, by item id.
	Items []ItemCharge
	// Total is usage plus every item (credits negative).
	Total *apd.Decimal
}

// PriceGroupMonth totals a group's month: its pro forma usage cost by service,
// plus what each of its custom line items charges that month. Items outside
// their range or deleted are left out; percentages apply to usage only.
func PriceGroupMonth(m Month, usage ServiceCosts, items []CustomLineItem) (GroupMonth, error) {
	total, err := usage.Total()
	if err != nil {
		return GroupMonth{}, err
	}
	out := GroupMonth{Usage: total, Total: new(apd.Decimal).Set(total)}
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b CustomLineItem) int { return strings.Compare(a.id, b.id) })
	for _, it := range items {
		ch, ok, err := it.ChargeIn(m, usage)
		if err != nil {
			return GroupMonth{}, err
		}
		if !ok {
			continue
		}
		out.Items = append(out.Items, ch)
		if out.Total, err = AddDecimal(out.Total, ch.Amount); err != nil {
			return GroupMonth{}, err
		}
	}
	return out, nil
}

// describeRule renders a rule for explanations: "SKU markup 20% (pr-sku)".
func describeRule(r PricingRule) string {
	switch r.typ {
	case RuleTiering:
		state := "deactivated"
		if r.freeTier {
			state = "activated"
		}
		return fmt.Sprintf("free tier %s (%s)", state, r.id)
	default:
		return fmt.Sprintf("%s %s %s%% (%s)", r.key, strings.ToLower(string(r.typ)), r.modifier, r.id)
	}
}
