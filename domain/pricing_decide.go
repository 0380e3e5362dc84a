package domain

import (
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The pricing decisions (P1–P5). Every cross-aggregate invariant is guarded by
// writing, in the same atomic append, to each stream whose state the decision
// relies on (DESIGN §2):
//   - a rule used by a plan carries PricingRulePlanLinked, so DeletePricingRule
//     and AssociatePricingRules write the same rule stream;
//   - a plan used by a group carries PricingPlanGroupLinked, likewise;
//   - a group carries BillingGroupItemLinked for each custom line item, so
//     removing the account an item charges or deleting the group conflicts with
//     creating or retargeting an item;
//   - an account's stream (billing.account.<id>) carries AccountGroupAssigned,
//     so two commands that would put one account into two groups of one payer
//     for the same month always write a common stream (P4).

// Upper bounds that keep every rating product within the exact decimal context
// (60 digits) whatever the usage amounts: they are far beyond any real price list.
const (
	maxPercentage = 1000000       // modifier_percentage and percentage, in percent
	maxFlatAmount = 1000000000000 // flat_amount per month
	maxFlatDigits = 6             // decimals of flat_amount
	maxKeyLength  = 256           // service, usage type, operation, billing entity
)

// maxAccountsPerCommand keeps a group command within one atomic append (the
// store's 1,000 events: one per account stream, plus the group, index, plan and
// request streams). Larger groups are built with several AssociateAccounts.
const maxAccountsPerCommand = 990

// decidePricing is Decide for the pricing commands.
func decidePricing(v View, cmd proto.Message, env Env) (Outcome, error) {
	switch c := cmd.(type) {
	case *billingv1.CreatePricingRule:
		return decideCreateRule(v, c)
	case *billingv1.UpdatePricingRule:
		return decideUpdateRule(v, c)
	case *billingv1.DeletePricingRule:
		return decideDeleteRule(v, c)
	case *billingv1.CreatePricingPlan:
		return decideCreatePlan(v, c)
	case *billingv1.UpdatePricingPlan:
		return decideUpdatePlan(v, c)
	case *billingv1.AssociatePricingRules:
		return decideAssociateRules(v, c)
	case *billingv1.DisassociatePricingRules:
		return decideDisassociateRules(v, c)
	case *billingv1.DeletePricingPlan:
		return decideDeletePlan(v, c)
	case *billingv1.CreateBillingGroup:
		return decideCreateGroup(v, c, env.Now)
	case *billingv1.UpdateBillingGroup:
		return decideUpdateGroup(v, c)
	case *billingv1.AssociateAccounts:
		return decideAssociateAccounts(v, c, env.Now)
	case *billingv1.DisassociateAccounts:
		return decideDisassociateAccounts(v, c)
	case *billingv1.DeleteBillingGroup:
		return decideDeleteGroup(v, c)
	case *billingv1.CreateCustomLineItem:
		return decideCreateItem(v, c)
	case *billingv1.UpdateCustomLineItem:
		return decideUpdateItem(v, c)
	case *billingv1.DeleteCustomLineItem:
		return decideDeleteItem(v, c)
	default:
		return Outcome{}, Reject(CodeInvalidArgument, "unknown command %T", cmd)
	}
}

// ---------------------------------------------------------------------------
// Validation helpers.

// checkName enforces the name rule shared by every pricing aggregate: 1..128
// characters, no spaces or control characters.
func checkName(field, s string) error {
	n := utf8.RuneCountInString(s)
	if n == 0 || n > MaxNameLength {
		return Reject(CodeInvalidArgument, "%s must be 1 to %d characters without spaces (got %d)", field, MaxNameLength, n)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return Reject(CodeInvalidArgument, "%s %q must be 1 to %d characters without spaces", field, s, MaxNameLength)
	}
	return nil
}

// checkKeyValue validates a value a rule matches on (service, usage type, ...):
// it must equal the usage record's field, so any printable text up to 256 bytes.
func checkKeyValue(field, s string) error {
	if len(s) > maxKeyLength {
		return Reject(CodeInvalidArgument, "%s is %d bytes long; at most %d", field, len(s), maxKeyLength)
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return Reject(CodeInvalidArgument, "%s %q contains non-printable characters", field, s)
	}
	return nil
}

// parsePercent parses a percentage: a decimal ≥ 0 with at most 2 decimals, at
// most maxPercentage (P1). It returns the canonical string.
func parsePercent(field, s string) (*apd.Decimal, string, error) {
	d, err := ParseDecimal(s)
	if err != nil {
		return nil, "", Reject(CodeInvalidArgument, "%s: %v", field, err)
	}
	if d.Negative && !d.IsZero() {
		return nil, "", Reject(CodeInvalidArgument, "%s %s must be ≥ 0 (P1)", field, s)
	}
	var r apd.Decimal
	r.Reduce(d)
	if r.Exponent < -2 {
		return nil, "", Reject(CodeInvalidArgument, "%s %s has more than 2 decimals; at most 2 are allowed (P1)", field, s)
	}
	if r.Cmp(apd.New(maxPercentage, 0)) > 0 {
		return nil, "", Reject(CodeInvalidArgument, "%s %s is above the limit of %d percent", field, s, maxPercentage)
	}
	return d, CanonicalDecimal(d), nil
}

// parseAmount parses a flat amount: a decimal ≥ 0 with at most 6 decimals, at
// most maxFlatAmount (P5).
func parseAmount(field, s string) (string, error) {
	d, err := ParseDecimal(s)
	if err != nil {
		return "", Reject(CodeInvalidArgument, "%s: %v", field, err)
	}
	if d.Negative && !d.IsZero() {
		return "", Reject(CodeInvalidArgument, "%s %s must be ≥ 0; use charge_type CREDIT to subtract (P5)", field, s)
	}
	var r apd.Decimal
	r.Reduce(d)
	if r.Exponent < -maxFlatDigits {
		return "", Reject(CodeInvalidArgument, "%s %s has more than %d decimals", field, s, maxFlatDigits)
	}
	if r.Cmp(apd.New(maxFlatAmount, 0)) > 0 {
		return "", Reject(CodeInvalidArgument, "%s %s is above the limit of %d", field, s, int64(maxFlatAmount))
	}
	return CanonicalDecimal(d), nil
}

// parseEnumArg accepts s when it is one of allowed, else rejects it naming the
// field, the allowed values and the rule.
func parseEnumArg[T ~string](field, rule, s string, allowed ...T) (T, error) {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if string(a) == s {
			return a, nil
		}
		names[i] = string(a)
	}
	if s == "" {
		return "", Reject(CodeInvalidArgument, "%s is required: one of %s (%s)", field, strings.Join(names, ", "), rule)
	}
	return "", Reject(CodeInvalidArgument, "%s %q is not one of %s (%s)", field, s, strings.Join(names, ", "), rule)
}

func parseRuleTypeArg(s string) (RuleType, error) {
	return parseEnumArg("type", "P1", s, RuleMarkup, RuleDiscount, RuleTiering)
}

func parseScopeArg(s string) (RuleScope, error) {
	return parseEnumArg("scope", "P1", s, ScopeGlobal, ScopeService, ScopeBillingEntity, ScopeSKU)
}

func parseChargeTypeArg(s string) (ChargeType, error) {
	return parseEnumArg("charge_type", "P5", s, ChargeFee, ChargeCredit)
}

// checkRuleValue enforces P1 on a rule's type, modifier and free tier setting,
// and returns the canonical modifier.
func checkRuleValue(typ RuleType, modifier string, freeTier bool) (string, error) {
	if typ == RuleTiering {
		if modifier != "" {
			return "", Reject(CodeInvalidArgument, "a TIERING rule takes no modifier_percentage (got %q); it only activates or deactivates the free tier (P1, P3)", modifier)
		}
		return "", nil
	}
	if freeTier {
		return "", Reject(CodeInvalidArgument, "free_tier_activated applies to TIERING rules only, not %s (P1)", typ)
	}
	if modifier == "" {
		return "", Reject(CodeInvalidArgument, "modifier_percentage is required for a %s rule (a decimal ≥ 0 with at most 2 decimals, P1)", typ)
	}
	d, canon, err := parsePercent("modifier_percentage", modifier)
	if err != nil {
		return "", err
	}
	if typ == RuleDiscount && d.Cmp(apd.New(100, 0)) > 0 {
		return "", Reject(CodeInvalidArgument, "modifier_percentage %s of a DISCOUNT rule is above the limit of 100 (P1)", modifier)
	}
	return canon, nil
}

// locate finds the owner of a pricing aggregate addressed by id alone: its id
// index, or for a transfer billing group ("tbg-" + transfer id) the transfer
// whose acceptance created it (T8; those groups are not in the index).
func locate(v View, kind PricingKind, field, id string) (string, error) {
	if err := checkID(field, id); err != nil {
		return "", err
	}
	evs, err := v.Events(PricingIndexStream(kind, id))
	if err != nil {
		return "", err
	}
	if owner := indexOwner(evs); owner != "" {
		return owner, nil
	}
	if tid, ok := strings.CutPrefix(id, TransferGroupPrefix); kind == KindGroup && ok && ValidID(tid) {
		t, err := v.Transfer(tid)
		if err != nil {
			return "", err
		}
		if t.Exists() && TransferGroupID(t.ID()) == id {
			return t.Payer(), nil
		}
	}
	return "", Reject(CodeNotFound, "%s %s does not exist", kindNoun(kind), id)
}

func kindNoun(k PricingKind) string {
	switch k {
	case KindRule:
		return "pricing rule"
	case KindPlan:
		return "pricing plan"
	case KindGroup:
		return "billing group"
	default:
		return "custom line item"
	}
}

// reserveID checks that an id was never used for its kind and returns the index
// change that reserves it for owner.
func reserveID(v View, kind PricingKind, field, id, owner string) (Change, error) {
	evs, err := v.Events(PricingIndexStream(kind, id))
	if err != nil {
		return Change{}, err
	}
	if prev := indexOwner(evs); prev != "" {
		return Change{}, Reject(CodeAlreadyExists, "%s %s is already used (owner %s); ids are never reused, even after deletion", field, id, prev)
	}
	return Change{Stream: PricingIndexStream(kind, id), Events: []*billingv1.Event{ev(&billingv1.PricingIdReserved{
		Kind: string(kind), Id: id, OwnerAccountId: owner,
	})}}, nil
}

func loadRule(v View, owner, id string) (PricingRule, error) {
	evs, err := v.Events(PricingRuleStream(owner, id))
	return FoldPricingRule(evs), err
}

func loadPlan(v View, owner, id string) (PricingPlan, error) {
	evs, err := v.Events(PricingPlanStream(owner, id))
	return FoldPricingPlan(evs), err
}

func loadGroup(v View, owner, id string) (BillingGroup, error) {
	evs, err := v.Events(BillingGroupStream(owner, id))
	return FoldBillingGroup(evs), err
}

func loadItem(v View, owner, id string) (CustomLineItem, error) {
	evs, err := v.Events(CustomLineItemStream(owner, id))
	return FoldCustomLineItem(evs), err
}

// liveAggregate loads a pricing aggregate by id through the id index; it must
// exist and not be deleted (what names the kind in the rejection).
func liveAggregate[T interface {
	Exists() bool
	Deleted() bool
}](v View, kind PricingKind, field, id, what string, load func(View, string, string) (T, error)) (T, error) {
	var zero T
	owner, err := locate(v, kind, field, id)
	if err != nil {
		return zero, err
	}
	a, err := load(v, owner, id)
	if err != nil {
		return zero, err
	}
	if !a.Exists() {
		return zero, Reject(CodeNotFound, "%s %s does not exist", what, id)
	}
	if a.Deleted() {
		return zero, Reject(CodeNotFound, "%s %s does not exist (deleted)", what, id)
	}
	return a, nil
}

// liveRule loads a rule by id that must exist and not be deleted.
func liveRule(v View, id string) (PricingRule, error) {
	return liveAggregate(v, KindRule, "pricing_rule_id", id, "pricing rule", loadRule)
}

// livePlan loads a payer's own plan by id that must exist, not be deleted and not be managed.
func livePlan(v View, id, command string) (PricingPlan, error) {
	if IsManagedPlan(id) {
		return PricingPlan{}, Reject(CodeFailedPrecondition, "%s: %s is a managed pricing plan; it has no rules and cannot be changed or deleted", command, id)
	}
	return liveAggregate(v, KindPlan, "pricing_plan_id", id, "pricing plan", loadPlan)
}

// liveGroup loads a group by id (a transfer billing group too) that must exist and not be deleted.
func liveGroup(v View, id string) (BillingGroup, error) {
	return liveAggregate(v, KindGroup, "billing_group_id", id, "billing group", loadGroup)
}

// liveItem loads a custom line item by id that must exist and not be deleted.
func liveItem(v View, id string) (CustomLineItem, error) {
	return liveAggregate(v, KindItem, "custom_line_item_id", id, "custom line item", loadItem)
}

// usablePlan checks that a group of owner may use plan id (P4): a managed plan,
// or a live plan of the same owner. It returns the plan (zero for managed ones).
func usablePlan(v View, owner, id string) (PricingPlan, error) {
	if id == "" {
		return PricingPlan{}, Reject(CodeInvalidArgument, "pricing_plan_id is required: a billing group has exactly one pricing plan (P4); use %s for public on-demand prices", PlanBasic)
	}
	if IsManagedPlan(id) {
		return PricingPlan{}, nil
	}
	planOwner, err := locate(v, KindPlan, "pricing_plan_id", id)
	if err != nil {
		return PricingPlan{}, err
	}
	if planOwner != owner {
		return PricingPlan{}, Reject(CodePermissionDenied, "pricing plan %s belongs to %s, not to the group's owner %s (P4)", id, planOwner, owner)
	}
	p, err := loadPlan(v, owner, id)
	if err != nil {
		return PricingPlan{}, err
	}
	if !p.Exists() || p.Deleted() {
		return PricingPlan{}, Reject(CodeNotFound, "pricing plan %s does not exist (deleted)", id)
	}
	return p, nil
}

// ownerOrg checks that the owner is a registered organization's management account.
func ownerOrg(v View, id string) error {
	if err := checkAccountID("owner_account_id", id); err != nil {
		return err
	}
	_, err := loadManagementOrg(v, "owner", id)
	return err
}

// uniqueIDs rejects a list with an empty or repeated entry.
func uniqueIDs(field string, ids []string, check func(string, string) error) error {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := check(field, id); err != nil {
			return err
		}
		if seen[id] {
			return Reject(CodeInvalidArgument, "%s lists %s twice", field, id)
		}
		seen[id] = true
	}
	return nil
}

func one(e *billingv1.Event) []*billingv1.Event { return []*billingv1.Event{e} }

// ---------------------------------------------------------------------------
// Pricing rules (P1).

func decideCreateRule(v View, c *billingv1.CreatePricingRule) (Outcome, error) {
	id, owner := c.GetPricingRuleId(), c.GetOwnerAccountId()
	if err := checkID("pricing_rule_id", id); err != nil {
		return Outcome{}, err
	}
	if err := checkName("name", c.GetName()); err != nil {
		return Outcome{}, err
	}
	typ, err := parseRuleTypeArg(c.GetType())
	if err != nil {
		return Outcome{}, err
	}
	scope, err := parseScopeArg(c.GetScope())
	if err != nil {
		return Outcome{}, err
	}
	key := ruleKey{tiering: typ == RuleTiering, scope: scope, service: c.GetService(), usageType: c.GetUsageType(),
		operation: c.GetOperation(), billingEntity: c.GetBillingEntity()}
	if err := checkRuleKey(key); err != nil {
		return Outcome{}, err
	}
	modifier, err := checkRuleValue(typ, c.GetModifierPercentage(), c.GetFreeTierActivated())
	if err != nil {
		return Outcome{}, err
	}
	if err := ownerOrg(v, owner); err != nil {
		return Outcome{}, err
	}
	idx, err := reserveID(v, KindRule, "pricing_rule_id", id, owner)
	if err != nil {
		return Outcome{}, err
	}
	rule := PricingRule{id: id, owner: owner, name: c.GetName(), typ: typ, key: key, modifier: modifier, freeTier: c.GetFreeTierActivated()}
	return Outcome{AggregateID: id, Changes: []Change{
		{Stream: PricingRuleStream(owner, id), Events: one(ev(&billingv1.PricingRuleCreated{Rule: rule.Proto()}))},
		idx,
	}}, nil
}

// checkRuleKey enforces which match fields each scope takes (P1): SERVICE a
// service; BILLING_ENTITY a billing entity; SKU a service and usage type and
// optionally an operation; GLOBAL none. TIERING rules are GLOBAL.
func checkRuleKey(k ruleKey) error {
	fields := []struct {
		name, value string
		wanted      bool
		required    bool
	}{
		{"service", k.service, k.scope == ScopeService || k.scope == ScopeSKU, true},
		{"usage_type", k.usageType, k.scope == ScopeSKU, true},
		{"operation", k.operation, k.scope == ScopeSKU, false},
		{"billing_entity", k.billingEntity, k.scope == ScopeBillingEntity, true},
	}
	for _, f := range fields {
		switch {
		case f.wanted && f.required && f.value == "":
			return Reject(CodeInvalidArgument, "%s is required for a %s rule (P1)", f.name, k.scope)
		case !f.wanted && f.value != "":
			return Reject(CodeInvalidArgument, "%s does not apply to a %s rule (got %q) (P1)", f.name, k.scope, f.value)
		}
		if err := checkKeyValue(f.name, f.value); err != nil {
			return err
		}
	}
	if k.tiering && k.scope != ScopeGlobal {
		return Reject(CodeInvalidArgument, "a TIERING rule has scope GLOBAL, not %s: the free tier is on or off for the whole plan (P1, P3)", k.scope)
	}
	return nil
}

func decideUpdateRule(v View, c *billingv1.UpdatePricingRule) (Outcome, error) {
	if c.GetName() == "" && c.GetType() == "" && c.GetModifierPercentage() == "" && c.FreeTierActivated == nil {
		return Outcome{}, Reject(CodeInvalidArgument, "nothing to update: give name, type, modifier_percentage or free_tier_activated")
	}
	r, err := liveRule(v, c.GetPricingRuleId())
	if err != nil {
		return Outcome{}, err
	}
	if c.GetName() != "" {
		if err := checkName("name", c.GetName()); err != nil {
			return Outcome{}, err
		}
		r.name = c.GetName()
	}
	if c.GetType() != "" {
		typ, err := parseRuleTypeArg(c.GetType())
		if err != nil {
			return Outcome{}, err
		}
		if (typ == RuleTiering) != (r.typ == RuleTiering) {
			return Outcome{}, Reject(CodeInvalidArgument, "type cannot change from %s to %s: only MARKUP and DISCOUNT change into each other; create a new rule instead (P1)", r.typ, typ)
		}
		r.typ = typ
	}
	if c.GetModifierPercentage() != "" {
		r.modifier = c.GetModifierPercentage()
	}
	if c.FreeTierActivated != nil {
		r.freeTier = c.GetFreeTierActivated()
	}
	if r.modifier, err = checkRuleValue(r.typ, r.modifier, r.freeTier); err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: r.id, Changes: []Change{
		{Stream: PricingRuleStream(r.owner, r.id), Events: one(ev(&billingv1.PricingRuleUpdated{Rule: r.Proto()}))},
	}}, nil
}

func decideDeleteRule(v View, c *billingv1.DeletePricingRule) (Outcome, error) {
	r, err := liveRule(v, c.GetPricingRuleId())
	if err != nil {
		return Outcome{}, err
	}
	if len(r.plans) > 0 {
		return Outcome{}, Reject(CodeFailedPrecondition, "pricing rule %s is used by pricing plans %s; disassociate it from them first", r.id, strings.Join(r.plans, ", "))
	}
	return Outcome{AggregateID: r.id, Changes: []Change{
		{Stream: PricingRuleStream(r.owner, r.id), Events: one(ev(&billingv1.PricingRuleDeleted{PricingRuleId: r.id, OwnerAccountId: r.owner}))},
	}}, nil
}

// ---------------------------------------------------------------------------
// Pricing plans (P2).

// addRules checks rules joining plan p (P2: they exist, belong to the plan's
// owner, are not in the plan yet, share no scope and key with each other or with
// the plan's rules, and the plan stays within 500 rules). It returns their keys
// and the PricingRulePlanLinked change of each rule.
func addRules(v View, p PricingPlan, ids []string) ([]*billingv1.PricingRuleKey, []Change, error) {
	if err := uniqueIDs("pricing_rule_ids", ids, checkID); err != nil {
		return nil, nil, err
	}
	if n := len(p.rules) + len(ids); n > MaxRulesPerPlan {
		return nil, nil, Reject(CodeQuotaExceeded, "pricing plan %s would hold %d rules; the limit is %d rules per pricing plan (P2)", p.id, n, MaxRulesPerPlan)
	}
	var keys []*billingv1.PricingRuleKey
	var changes []Change
	for _, id := range ids {
		if p.HasRule(id) {
			return nil, nil, Reject(CodeAlreadyExists, "pricing rule %s is already in pricing plan %s", id, p.id)
		}
		r, err := liveRule(v, id)
		if err != nil {
			return nil, nil, err
		}
		if r.owner != p.owner {
			return nil, nil, Reject(CodePermissionDenied, "pricing rule %s belongs to %s, not to the plan's owner %s (P2)", id, r.owner, p.owner)
		}
		if other, clash := p.ruleWithKey(r.key); clash {
			return nil, nil, Reject(CodeInvalidArgument, "pricing rules %s and %s both have scope and key %s; a plan holds one rule per scope and key (P2)", other, id, r.key)
		}
		p.rules = append(p.rules, planRule{id: id, key: r.key})
		keys = append(keys, r.key.proto(id))
		changes = append(changes, Change{Stream: PricingRuleStream(r.owner, id), Events: one(ev(&billingv1.PricingRulePlanLinked{PricingRuleId: id, PricingPlanId: p.id}))})
	}
	return keys, changes, nil
}

func decideCreatePlan(v View, c *billingv1.CreatePricingPlan) (Outcome, error) {
	id, owner := c.GetPricingPlanId(), c.GetOwnerAccountId()
	if err := checkID("pricing_plan_id", id); err != nil {
		return Outcome{}, err
	}
	for _, m := range []string{PlanBasic, PlanPassthrough} {
		if strings.EqualFold(id, m) {
			return Outcome{}, Reject(CodeAlreadyExists, "pricing_plan_id %s names the managed plan %s, which always exists", id, m)
		}
	}
	if err := checkName("name", c.GetName()); err != nil {
		return Outcome{}, err
	}
	if err := ownerOrg(v, owner); err != nil {
		return Outcome{}, err
	}
	idx, err := reserveID(v, KindPlan, "pricing_plan_id", id, owner)
	if err != nil {
		return Outcome{}, err
	}
	keys, links, err := addRules(v, PricingPlan{id: id, owner: owner}, c.GetPricingRuleIds())
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{
		{Stream: PricingPlanStream(owner, id), Events: one(ev(&billingv1.PricingPlanCreated{PricingPlanId: id, OwnerAccountId: owner, Name: c.GetName(), Rules: keys}))},
		idx,
	}
	return Outcome{AggregateID: id, Changes: append(changes, links...)}, nil
}

func decideUpdatePlan(v View, c *billingv1.UpdatePricingPlan) (Outcome, error) {
	p, err := livePlan(v, c.GetPricingPlanId(), "UpdatePricingPlan")
	if err != nil {
		return Outcome{}, err
	}
	if err := checkName("name", c.GetName()); err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: p.id, Changes: []Change{
		{Stream: PricingPlanStream(p.owner, p.id), Events: one(ev(&billingv1.PricingPlanUpdated{PricingPlanId: p.id, OwnerAccountId: p.owner, Name: c.GetName()}))},
	}}, nil
}

func decideAssociateRules(v View, c *billingv1.AssociatePricingRules) (Outcome, error) {
	p, err := livePlan(v, c.GetPricingPlanId(), "AssociatePricingRules")
	if err != nil {
		return Outcome{}, err
	}
	if len(c.GetPricingRuleIds()) == 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "pricing_rule_ids is required")
	}
	keys, links, err := addRules(v, p, c.GetPricingRuleIds())
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{{Stream: PricingPlanStream(p.owner, p.id), Events: one(ev(&billingv1.PricingRulesAssociated{PricingPlanId: p.id, OwnerAccountId: p.owner, Rules: keys}))}}
	return Outcome{AggregateID: p.id, Changes: append(changes, links...)}, nil
}

func decideDisassociateRules(v View, c *billingv1.DisassociatePricingRules) (Outcome, error) {
	p, err := livePlan(v, c.GetPricingPlanId(), "DisassociatePricingRules")
	if err != nil {
		return Outcome{}, err
	}
	ids := c.GetPricingRuleIds()
	if len(ids) == 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "pricing_rule_ids is required")
	}
	if err := uniqueIDs("pricing_rule_ids", ids, checkID); err != nil {
		return Outcome{}, err
	}
	changes := []Change{{Stream: PricingPlanStream(p.owner, p.id), Events: one(ev(&billingv1.PricingRulesDisassociated{PricingPlanId: p.id, OwnerAccountId: p.owner, PricingRuleIds: ids}))}}
	for _, id := range ids {
		if !p.HasRule(id) {
			return Outcome{}, Reject(CodeNotFound, "pricing rule %s is not in pricing plan %s", id, p.id)
		}
		changes = append(changes, Change{Stream: PricingRuleStream(p.owner, id), Events: one(ev(&billingv1.PricingRulePlanUnlinked{PricingRuleId: id, PricingPlanId: p.id}))})
	}
	return Outcome{AggregateID: p.id, Changes: changes}, nil
}

func decideDeletePlan(v View, c *billingv1.DeletePricingPlan) (Outcome, error) {
	p, err := livePlan(v, c.GetPricingPlanId(), "DeletePricingPlan")
	if err != nil {
		return Outcome{}, err
	}
	if len(p.groups) > 0 {
		return Outcome{}, Reject(CodeFailedPrecondition, "pricing plan %s is used by billing groups %s; give them another plan first", p.id, strings.Join(p.groups, ", "))
	}
	changes := []Change{{Stream: PricingPlanStream(p.owner, p.id), Events: one(ev(&billingv1.PricingPlanDeleted{PricingPlanId: p.id, OwnerAccountId: p.owner}))}}
	for _, r := range p.rules {
		changes = append(changes, Change{Stream: PricingRuleStream(p.owner, r.id), Events: one(ev(&billingv1.PricingRulePlanUnlinked{PricingRuleId: r.id, PricingPlanId: p.id}))})
	}
	return Outcome{AggregateID: p.id, Changes: changes}, nil
}

// ---------------------------------------------------------------------------
// Billing groups (P4).

// monthRange is the months a group prices its accounts in: a transfer billing
// group the months of its transfer (T6, T8); any other group every month its
// owner pays for the account (unbounded: P4 applies a change to every open month).
type monthRange struct {
	from, to       Month
	hasFrom, hasTo bool
}

func (r monthRange) overlaps(o monthRange) bool {
	if r.hasFrom && o.hasTo && o.to.Before(r.from) {
		return false
	}
	if o.hasFrom && r.hasTo && r.to.Before(o.from) {
		return false
	}
	return true
}

func (r monthRange) String() string {
	switch {
	case r.hasFrom && r.hasTo:
		return r.from.String() + " to " + r.to.String()
	case r.hasFrom:
		return "from " + r.from.String()
	default:
		return "every month"
	}
}

// groupMonths returns the months group g prices in.
func groupMonths(v View, g BillingGroup) (monthRange, error) {
	var r monthRange
	if g.transferID == "" {
		return r, nil
	}
	if m, err := ParseMonth(g.startMonth); err == nil {
		r.from, r.hasFrom = m, true
	}
	t, err := v.Transfer(g.transferID)
	if err != nil {
		return r, err
	}
	if !t.End().IsZero() {
		r.to, r.hasTo = MonthOf(t.End()), true
	}
	return r, nil
}

// inForce reports whether an accepted (or withdrawn, not yet ended) transfer link
// makes its payer pay for its source at now or later.
func (l Link) inForce(now time.Time) bool {
	switch l.state {
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED:
		return true
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN:
		return !now.After(l.end)
	}
	return false
}

// paysFor reports whether owner may group the accounts of organization org: it
// is the organization itself, its payer, or its payer's payer (top of a
// two-level chain, T7) under accepted transfers that have not ended. A pending
// invitation is not enough: its acceptance creates the transfer billing group
// (T8), which must find the accounts in no other group of the payer.
func paysFor(v View, owner string, org Org, now time.Time) (bool, error) {
	if org.id == owner {
		return true, nil
	}
	for _, id := range slices.Sorted(maps.Keys(org.outbound)) {
		l := org.outbound[id]
		if !l.inForce(now) {
			continue
		}
		if l.payer == owner {
			return true, nil
		}
		mid, err := v.Org(l.payer)
		if err != nil {
			return false, err
		}
		for _, l2 := range mid.outbound {
			if l2.payer == owner && l2.inForce(now) {
				return true, nil
			}
		}
	}
	return false, nil
}

// admitAccounts checks accounts joining group g (P4) and returns the
// AccountGroupAssigned change of each. An account must belong to a registered
// organization that the owner is or pays for, and must not already be priced by
// another group of the same owner in a month g prices in (checkAccountFree). The
// account stream written here is the guard: any concurrent command putting the
// account into a group writes it too, so exactly one of them wins.
//
// The check is per owner because a two-level chain prices one account at two
// levels: the reseller's plan for the end customer and the distributor's for the
// reseller (P7). A month has exactly one payer per level (T6), so each payer's
// pro forma prices an account by at most one group per month.
// paidForAccount returns the organization of account a, which must be owner's
// own or one owner pays for under an accepted transfer: what a billing group
// (P4) or an invoice unit (X3) of owner may hold. holder and rule name them in
// the rejection.
func paidForAccount(v View, owner, a string, now time.Time, holder, rule string) (Org, error) {
	orgID, err := v.AccountOwner(a)
	if err != nil {
		return Org{}, err
	}
	if orgID == "" {
		return Org{}, Reject(CodeNotFound, "account %s belongs to no registered organization", a)
	}
	org, err := v.Org(orgID)
	if err != nil {
		return Org{}, err
	}
	ok, err := paysFor(v, owner, org, now)
	if err != nil {
		return Org{}, err
	}
	if !ok {
		return Org{}, Reject(CodeFailedPrecondition, "account %s belongs to organization %s, which %s neither is nor pays for under an accepted transfer; %s holds accounts of its owner's own and paid-for organizations (%s)", a, orgID, owner, holder, rule)
	}
	return org, nil
}

func admitAccounts(v View, g BillingGroup, accounts []string, now time.Time) ([]Change, error) {
	months, err := groupMonths(v, g)
	if err != nil {
		return nil, err
	}
	var changes []Change
	for _, a := range accounts {
		org, err := paidForAccount(v, g.owner, a, now, "a billing group", "P4")
		if err != nil {
			return nil, err
		}
		if err := checkAccountFree(v, g, months, a, org); err != nil {
			return nil, err
		}
		changes = append(changes, Change{Stream: AccountStream(a), Events: one(ev(&billingv1.AccountGroupAssigned{
			AccountId: a, OwnerAccountId: g.owner, BillingGroupId: g.id, FromMonth: g.startMonth,
		}))})
	}
	return changes, nil
}

// checkAccountFree enforces "an account is in at most one billing group in a
// month" (P4) for the groups of g's owner, with the transfer billing group as
// the default group of its source's accounts (T8):
//   - among the owner's other groups, at most one holds the account; it prices
//     the account in every month, overriding the transfer billing group, so a
//     payer can regroup its sources' accounts (the primary account included)
//     without emptying the group the acceptance created;
//   - a transfer billing group prices the accounts it holds that no other group
//     of the owner holds, in the months of its transfer; two of them never
//     share an account for a month (T4 makes the transfers of one source
//     disjoint), and adding an account to one is rejected while another group
//     of the owner prices it in those months.
//
// The candidates are the groups recorded on the account's stream and the
// transfer billing groups of the account's organization (whose initial members
// are recorded only on the group, T8); each is read, so a deleted group or a
// released account does not count. GroupForAccount applies the same rule on the
// read side.
func checkAccountFree(v View, g BillingGroup, months monthRange, a string, org Org) error {
	evs, err := v.Events(AccountStream(a))
	if err != nil {
		return err
	}
	var candidates []string
	for _, m := range FoldAccountGroups(evs).groups {
		if m.Owner == g.owner {
			candidates = append(candidates, m.BillingGroupID)
		}
	}
	if g.transferID != "" {
		for _, id := range slices.Sorted(maps.Keys(org.outbound)) {
			if l := org.outbound[id]; l.payer == g.owner && (l.state == billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED || l.state == billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN) {
				candidates = append(candidates, TransferGroupID(l.transferID))
			}
		}
	}
	seen := map[string]bool{g.id: true}
	for _, id := range candidates {
		if seen[id] {
			continue
		}
		seen[id] = true
		h, err := loadGroup(v, g.owner, id)
		if err != nil {
			return err
		}
		if !h.Exists() || h.Deleted() || !h.Has(a) {
			continue
		}
		if g.transferID == "" && h.transferID != "" {
			continue // g overrides the transfer billing group for this account
		}
		hm, err := groupMonths(v, h)
		if err != nil {
			return err
		}
		if months.overlaps(hm) {
			return Reject(CodeFailedPrecondition, "account %s is already in billing group %s of %s (%s); an account is in at most one billing group of a payer in a month (P4): disassociate it there first", a, h.id, g.owner, hm)
		}
	}
	return nil
}

func decideCreateGroup(v View, c *billingv1.CreateBillingGroup, now time.Time) (Outcome, error) {
	id, owner, primary := c.GetBillingGroupId(), c.GetOwnerAccountId(), c.GetPrimaryAccountId()
	if err := checkID("billing_group_id", id); err != nil {
		return Outcome{}, err
	}
	if strings.HasPrefix(id, TransferGroupPrefix) {
		return Outcome{}, Reject(CodeInvalidArgument, "billing_group_id %s: the prefix %q is reserved for transfer billing groups (T8)", id, TransferGroupPrefix)
	}
	if err := checkName("name", c.GetName()); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("primary_account_id", primary); err != nil {
		return Outcome{}, err
	}
	if err := uniqueIDs("account_ids", c.GetAccountIds(), checkAccountID); err != nil {
		return Outcome{}, err
	}
	// The primary account is a member, listed first.
	accounts := append([]string{primary}, slices.DeleteFunc(slices.Clone(c.GetAccountIds()), func(a string) bool { return a == primary })...)
	if err := uniqueIDs("account_ids", accounts, checkAccountID); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountCount(id, 0, len(accounts)); err != nil {
		return Outcome{}, err
	}
	if err := ownerOrg(v, owner); err != nil {
		return Outcome{}, err
	}
	plan, err := usablePlan(v, owner, c.GetPricingPlanId())
	if err != nil {
		return Outcome{}, err
	}
	idx, err := reserveID(v, KindGroup, "billing_group_id", id, owner)
	if err != nil {
		return Outcome{}, err
	}
	g := BillingGroup{id: id, owner: owner, name: c.GetName(), primary: primary, plan: c.GetPricingPlanId()}
	assigned, err := admitAccounts(v, g, accounts, now)
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{
		{Stream: BillingGroupStream(owner, id), Events: one(ev(&billingv1.BillingGroupCreated{
			BillingGroupId: id, OwnerAccountId: owner, Name: c.GetName(), PrimaryAccountId: primary, AccountIds: accounts, PricingPlanId: c.GetPricingPlanId(),
		}))},
		idx,
	}
	if plan.Exists() {
		changes = append(changes, Change{Stream: PricingPlanStream(owner, plan.id), Events: one(ev(&billingv1.PricingPlanGroupLinked{PricingPlanId: plan.id, BillingGroupId: id}))})
	}
	return Outcome{AggregateID: id, Changes: append(changes, assigned...)}, nil
}

// checkAccountCount enforces the 1,000 accounts of a group (P4) and the size of
// one command (one atomic append).
func checkAccountCount(id string, have, adding int) error {
	if n := have + adding; n > MaxAccountsPerGroup {
		return Reject(CodeQuotaExceeded, "billing group %s would hold %d accounts; the limit is %d accounts per billing group (P4)", id, n, MaxAccountsPerGroup)
	}
	if adding > maxAccountsPerCommand {
		return Reject(CodeInvalidArgument, "at most %d accounts per command (got %d); add the rest with AssociateAccounts", maxAccountsPerCommand, adding)
	}
	return nil
}

// planSwitch returns the back-reference changes of group g moving from plan
// `from` to plan `to`: unlink the old plan when it recorded the group (a transfer
// group may name a plan that never did, T8) and link the new one.
func planSwitch(v View, g BillingGroup, from string, to PricingPlan) ([]Change, error) {
	var out []Change
	if from != "" && !IsManagedPlan(from) && ValidID(from) {
		old, err := loadPlan(v, g.owner, from)
		if err != nil {
			return nil, err
		}
		if slices.Contains(old.groups, g.id) {
			out = append(out, Change{Stream: PricingPlanStream(g.owner, from), Events: one(ev(&billingv1.PricingPlanGroupUnlinked{PricingPlanId: from, BillingGroupId: g.id}))})
		}
	}
	if to.Exists() {
		out = append(out, Change{Stream: PricingPlanStream(g.owner, to.id), Events: one(ev(&billingv1.PricingPlanGroupLinked{PricingPlanId: to.id, BillingGroupId: g.id}))})
	}
	return out, nil
}

func decideUpdateGroup(v View, c *billingv1.UpdateBillingGroup) (Outcome, error) {
	if c.GetName() == "" && c.GetPricingPlanId() == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "nothing to update: give name and/or pricing_plan_id")
	}
	g, err := liveGroup(v, c.GetBillingGroupId())
	if err != nil {
		return Outcome{}, err
	}
	name := g.name
	if c.GetName() != "" {
		if err := checkName("name", c.GetName()); err != nil {
			return Outcome{}, err
		}
		name = c.GetName()
	}
	plan := g.PricingPlanID()
	var links []Change
	if to := c.GetPricingPlanId(); to != "" && to != plan {
		p, err := usablePlan(v, g.owner, to)
		if err != nil {
			return Outcome{}, err
		}
		if links, err = planSwitch(v, g, g.plan, p); err != nil {
			return Outcome{}, err
		}
		plan = to
	}
	changes := []Change{{Stream: BillingGroupStream(g.owner, g.id), Events: one(ev(&billingv1.BillingGroupUpdated{
		BillingGroupId: g.id, OwnerAccountId: g.owner, Name: name, PricingPlanId: plan, PreviousPricingPlanId: g.PricingPlanID(),
	}))}}
	return Outcome{AggregateID: g.id, Changes: append(changes, links...)}, nil
}

func decideAssociateAccounts(v View, c *billingv1.AssociateAccounts, now time.Time) (Outcome, error) {
	g, err := liveGroup(v, c.GetBillingGroupId())
	if err != nil {
		return Outcome{}, err
	}
	accounts := c.GetAccountIds()
	if len(accounts) == 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "account_ids is required")
	}
	if err := uniqueIDs("account_ids", accounts, checkAccountID); err != nil {
		return Outcome{}, err
	}
	for _, a := range accounts {
		if g.Has(a) {
			return Outcome{}, Reject(CodeAlreadyExists, "account %s is already in billing group %s", a, g.id)
		}
	}
	if err := checkAccountCount(g.id, len(g.accounts), len(accounts)); err != nil {
		return Outcome{}, err
	}
	assigned, err := admitAccounts(v, g, accounts, now)
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{{Stream: BillingGroupStream(g.owner, g.id), Events: one(ev(&billingv1.BillingGroupAccountsAssociated{
		BillingGroupId: g.id, OwnerAccountId: g.owner, AccountIds: accounts,
	}))}}
	return Outcome{AggregateID: g.id, Changes: append(changes, assigned...)}, nil
}

func decideDisassociateAccounts(v View, c *billingv1.DisassociateAccounts) (Outcome, error) {
	g, err := liveGroup(v, c.GetBillingGroupId())
	if err != nil {
		return Outcome{}, err
	}
	accounts := c.GetAccountIds()
	if len(accounts) == 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "account_ids is required")
	}
	if err := uniqueIDs("account_ids", accounts, checkAccountID); err != nil {
		return Outcome{}, err
	}
	if len(accounts) > maxAccountsPerCommand {
		return Outcome{}, Reject(CodeInvalidArgument, "at most %d accounts per command (got %d)", maxAccountsPerCommand, len(accounts))
	}
	changes := []Change{{Stream: BillingGroupStream(g.owner, g.id), Events: one(ev(&billingv1.BillingGroupAccountsDisassociated{
		BillingGroupId: g.id, OwnerAccountId: g.owner, AccountIds: accounts,
	}))}}
	for _, a := range accounts {
		switch {
		case !g.Has(a):
			return Outcome{}, Reject(CodeNotFound, "account %s is not in billing group %s", a, g.id)
		case a == g.primary:
			return Outcome{}, Reject(CodeFailedPrecondition, "account %s is the primary account of billing group %s; a group keeps its primary account (P4)", a, g.id)
		}
		if items := g.itemsCharging(a); len(items) > 0 {
			return Outcome{}, Reject(CodeFailedPrecondition, "account %s is charged by custom line items %s of billing group %s; move or delete them first (P5)", a, strings.Join(items, ", "), g.id)
		}
		changes = append(changes, Change{Stream: AccountStream(a), Events: one(ev(&billingv1.AccountGroupReleased{AccountId: a, OwnerAccountId: g.owner, BillingGroupId: g.id}))})
	}
	return Outcome{AggregateID: g.id, Changes: changes}, nil
}

// decideDeleteGroup deletes a group without custom line items. Its accounts'
// streams are not written: a group holds up to 1,000 accounts, more than one
// atomic append can carry beside the group, and checkAccountFree reads every
// candidate group, so a deleted group holds no account.
func decideDeleteGroup(v View, c *billingv1.DeleteBillingGroup) (Outcome, error) {
	g, err := liveGroup(v, c.GetBillingGroupId())
	if err != nil {
		return Outcome{}, err
	}
	if items := g.Items(); len(items) > 0 {
		return Outcome{}, Reject(CodeFailedPrecondition, "billing group %s has custom line items %s; delete them first (P5)", g.id, strings.Join(items, ", "))
	}
	changes := []Change{{Stream: BillingGroupStream(g.owner, g.id), Events: one(ev(&billingv1.BillingGroupDeleted{BillingGroupId: g.id, OwnerAccountId: g.owner}))}}
	links, err := planSwitch(v, g, g.plan, PricingPlan{})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: g.id, Changes: append(changes, links...)}, nil
}

// transferGroupPlanLink records on the invitation's plan that the transfer
// billing group created by an acceptance uses it (T8), so the plan cannot be
// deleted under the group. A plan that does not exist (or belongs to another
// payer, or was deleted since the invitation) is not written: the group keeps
// the id it was invited with, and an UpdateBillingGroup gives it a usable plan.
func transferGroupPlanLink(v View, payer, groupID, planID string) ([]Change, error) {
	if planID == "" || IsManagedPlan(planID) || !ValidID(planID) {
		return nil, nil
	}
	p, err := loadPlan(v, payer, planID)
	if err != nil || !p.Exists() || p.Deleted() {
		return nil, err
	}
	return []Change{{Stream: PricingPlanStream(payer, planID), Events: one(ev(&billingv1.PricingPlanGroupLinked{PricingPlanId: planID, BillingGroupId: groupID}))}}, nil
}

// ---------------------------------------------------------------------------
// Custom line items (P5).

// itemCharge holds the validated charge fields of an item.
type itemCharge struct {
	chargeType ChargeType
	flat       string
	percentage string
	services   []string
}

func checkServices(services []string) error {
	seen := map[string]bool{}
	for _, s := range services {
		if s == "" {
			return Reject(CodeInvalidArgument, "services lists an empty service name")
		}
		if err := checkKeyValue("services", s); err != nil {
			return err
		}
		if seen[s] {
			return Reject(CodeInvalidArgument, "services lists %s twice", s)
		}
		seen[s] = true
	}
	return nil
}

// checkCharge enforces P5 on an item's charge: FLAT xor PERCENTAGE, amounts ≥ 0,
// services only with a percentage.
func checkCharge(typ ChargeType, flat, percentage string, services []string) (itemCharge, error) {
	switch {
	case flat != "" && percentage != "":
		return itemCharge{}, Reject(CodeInvalidArgument, "give flat_amount or percentage, not both: an item is FLAT or PERCENTAGE (P5)")
	case flat == "" && percentage == "":
		return itemCharge{}, Reject(CodeInvalidArgument, "flat_amount or percentage is required: an item is FLAT or PERCENTAGE (P5)")
	}
	out := itemCharge{chargeType: typ}
	if flat != "" {
		if len(services) > 0 {
			return itemCharge{}, Reject(CodeInvalidArgument, "services applies to PERCENTAGE items only (P5)")
		}
		amount, err := parseAmount("flat_amount", flat)
		if err != nil {
			return itemCharge{}, err
		}
		out.flat = amount
		return out, nil
	}
	_, pct, err := parsePercent("percentage", percentage)
	if err != nil {
		return itemCharge{}, err
	}
	if err := checkServices(services); err != nil {
		return itemCharge{}, err
	}
	out.percentage, out.services = pct, slices.Clone(services)
	return out, nil
}

// checkPeriod enforces a billing period range: a start month, and an end month
// (optional: recurring) not before it.
func checkPeriod(start, end string) error {
	if start == "" {
		return Reject(CodeInvalidArgument, "start_month is required (YYYY-MM)")
	}
	s, err := ParseMonth(start)
	if err != nil {
		return Reject(CodeInvalidArgument, "start_month: %v", err)
	}
	if end == "" {
		return nil
	}
	e, err := ParseMonth(end)
	if err != nil {
		return Reject(CodeInvalidArgument, "end_month: %v", err)
	}
	if e.Before(s) {
		return Reject(CodeInvalidArgument, "end_month %s is before start_month %s (P5)", end, start)
	}
	return nil
}

// itemAccount resolves the account an item of group g charges: a member, by default the primary.
func itemAccount(g BillingGroup, account string) (string, error) {
	if account == "" {
		return g.primary, nil
	}
	if err := checkAccountID("account_id", account); err != nil {
		return "", err
	}
	if !g.Has(account) {
		return "", Reject(CodeFailedPrecondition, "account %s is not in billing group %s; a custom line item charges a member of its group (P5)", account, g.id)
	}
	return account, nil
}

func decideCreateItem(v View, c *billingv1.CreateCustomLineItem) (Outcome, error) {
	id := c.GetCustomLineItemId()
	if err := checkID("custom_line_item_id", id); err != nil {
		return Outcome{}, err
	}
	if err := checkName("name", c.GetName()); err != nil {
		return Outcome{}, err
	}
	typ, err := parseChargeTypeArg(c.GetChargeType())
	if err != nil {
		return Outcome{}, err
	}
	charge, err := checkCharge(typ, c.GetFlatAmount(), c.GetPercentage(), c.GetServices())
	if err != nil {
		return Outcome{}, err
	}
	if err := checkPeriod(c.GetStartMonth(), c.GetEndMonth()); err != nil {
		return Outcome{}, err
	}
	g, err := liveGroup(v, c.GetBillingGroupId())
	if err != nil {
		return Outcome{}, err
	}
	account, err := itemAccount(g, c.GetAccountId())
	if err != nil {
		return Outcome{}, err
	}
	idx, err := reserveID(v, KindItem, "custom_line_item_id", id, g.owner)
	if err != nil {
		return Outcome{}, err
	}
	item := CustomLineItem{id: id, owner: g.owner, group: g.id, name: c.GetName(), chargeType: charge.chargeType, flat: charge.flat,
		percentage: charge.percentage, services: charge.services, start: c.GetStartMonth(), end: c.GetEndMonth(), account: account}
	return Outcome{AggregateID: id, Changes: []Change{
		{Stream: CustomLineItemStream(g.owner, id), Events: one(ev(&billingv1.CustomLineItemCreated{Item: item.Proto()}))},
		idx,
		{Stream: BillingGroupStream(g.owner, g.id), Events: one(ev(&billingv1.BillingGroupItemLinked{BillingGroupId: g.id, CustomLineItemId: id, AccountId: account}))},
	}}, nil
}

func decideUpdateItem(v View, c *billingv1.UpdateCustomLineItem) (Outcome, error) {
	i, err := liveItem(v, c.GetCustomLineItemId())
	if err != nil {
		return Outcome{}, err
	}
	if c.GetName() != "" {
		if err := checkName("name", c.GetName()); err != nil {
			return Outcome{}, err
		}
		i.name = c.GetName()
	}
	typ := i.chargeType
	if c.GetChargeType() != "" {
		if typ, err = parseChargeTypeArg(c.GetChargeType()); err != nil {
			return Outcome{}, err
		}
	}
	flat, pct, services := i.flat, i.percentage, i.services
	switch {
	case c.GetFlatAmount() != "" && c.GetPercentage() != "":
		return Outcome{}, Reject(CodeInvalidArgument, "give flat_amount or percentage, not both: an item is FLAT or PERCENTAGE (P5)")
	case c.GetFlatAmount() != "":
		flat, pct, services = c.GetFlatAmount(), "", nil
	case c.GetPercentage() != "":
		flat, pct, services = "", c.GetPercentage(), c.GetServices()
	case len(c.GetServices()) > 0:
		return Outcome{}, Reject(CodeInvalidArgument, "services is read only together with percentage (P5)")
	}
	charge, err := checkCharge(typ, flat, pct, services)
	if err != nil {
		return Outcome{}, err
	}
	i.chargeType, i.flat, i.percentage, i.services = charge.chargeType, charge.flat, charge.percentage, charge.services
	if c.GetStartMonth() != "" {
		i.start = c.GetStartMonth()
	}
	if c.EndMonth != nil {
		i.end = c.GetEndMonth()
	}
	if err := checkPeriod(i.start, i.end); err != nil {
		return Outcome{}, err
	}
	changes := []Change{{Stream: CustomLineItemStream(i.owner, i.id)}}
	if a := c.GetAccountId(); a != "" && a != i.account {
		g, err := liveGroup(v, i.group)
		if err != nil {
			return Outcome{}, err
		}
		if i.account, err = itemAccount(g, a); err != nil {
			return Outcome{}, err
		}
		changes = append(changes, Change{Stream: BillingGroupStream(g.owner, g.id), Events: one(ev(&billingv1.BillingGroupItemLinked{BillingGroupId: g.id, CustomLineItemId: i.id, AccountId: i.account}))})
	}
	changes[0].Events = one(ev(&billingv1.CustomLineItemUpdated{Item: i.Proto()}))
	return Outcome{AggregateID: i.id, Changes: changes}, nil
}

func decideDeleteItem(v View, c *billingv1.DeleteCustomLineItem) (Outcome, error) {
	i, err := liveItem(v, c.GetCustomLineItemId())
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: i.id, Changes: []Change{
		{Stream: CustomLineItemStream(i.owner, i.id), Events: one(ev(&billingv1.CustomLineItemDeleted{CustomLineItemId: i.id, OwnerAccountId: i.owner, BillingGroupId: i.group}))},
		{Stream: BillingGroupStream(i.owner, i.group), Events: one(ev(&billingv1.BillingGroupItemUnlinked{BillingGroupId: i.group, CustomLineItemId: i.id}))},
	}}, nil
}
