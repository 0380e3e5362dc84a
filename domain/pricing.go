package domain

import (
	"slices"
	"strings"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Pricing aggregates (DESIGN §3 P1–P5): rules, plans, billing groups and custom
// line items, each a stream "billing.pricing.<owner>.<kind>.<id>" whose state is a
// value folded from its events. Commands that name an aggregate by id alone find
// its owner through the id index (PricingIndexStream), or, for a transfer billing
// group, through its transfer (T8).

// PricingKind names a kind of pricing aggregate; it is a stream-name token.
type PricingKind string

// The pricing aggregate kinds.
const (
	KindRule  PricingKind = "rule"
	KindPlan  PricingKind = "plan"
	KindGroup PricingKind = "group"
	KindItem  PricingKind = "item"
)

// Managed pricing plans (issue #4): they exist from the start, are owned by
// nobody, have no rules, can be used by every payer and never change.
const (
	// PlanBasic prices every record at its list cost (public on-demand rate).
	PlanBasic = "BASIC"
	// PlanPassthrough prices every record at its billed cost (P3).
	PlanPassthrough = "PASSTHROUGH"
)

// IsManagedPlan reports whether id names a managed plan.
func IsManagedPlan(id string) bool { return id == PlanBasic || id == PlanPassthrough }

// Limits of DESIGN P2 and P4.
const (
	// MaxRulesPerPlan is the most rules a pricing plan holds (P2).
	MaxRulesPerPlan = 500
	// MaxAccountsPerGroup is the most accounts a billing group holds (P4).
	MaxAccountsPerGroup = 1000
	// MaxNameLength bounds rule, plan, group and item names (characters).
	MaxNameLength = 128
)

// TransferGroupPrefix starts the id of every transfer billing group (T8); other
// groups may not use it, so a transfer's acceptance never meets an existing group.
const TransferGroupPrefix = "tbg-"

// TransferGroupID is the id of the billing group a transfer's acceptance creates
// (T8): "tbg-" + the transfer id, cut to the 64 characters an id may have.
func TransferGroupID(transferID string) string {
	gid := TransferGroupPrefix + transferID
	if len(gid) > 64 {
		gid = gid[:64]
	}
	return gid
}

// PricingStream is the stream of a pricing aggregate of an owner.
func PricingStream(owner string, kind PricingKind, id string) string {
	return "billing.pricing." + owner + "." + string(kind) + "." + id
}

// PricingRuleStream is the stream of a pricing rule.
func PricingRuleStream(owner, id string) string { return PricingStream(owner, KindRule, id) }

// PricingPlanStream is the stream of a pricing plan.
func PricingPlanStream(owner, id string) string { return PricingStream(owner, KindPlan, id) }

// CustomLineItemStream is the stream of a custom line item.
func CustomLineItemStream(owner, id string) string { return PricingStream(owner, KindItem, id) }

// PricingIndexStream maps a pricing id to its owner: it holds one
// PricingIdReserved, written with expected version 0 together with the
// aggregate's creation, which also makes ids unique per kind for ever. The
// "index" token never clashes with an owner, which is always 12 digits.
func PricingIndexStream(kind PricingKind, id string) string {
	return "billing.pricing.index." + string(kind) + "." + id
}

// RuleType is a pricing rule's type (P1), by its stable name.
type RuleType string

// Rule types.
const (
	RuleMarkup   RuleType = "MARKUP"
	RuleDiscount RuleType = "DISCOUNT"
	RuleTiering  RuleType = "TIERING"
)

// RuleScope is what a pricing rule matches (P1), by its stable name.
type RuleScope string

// Rule scopes.
const (
	ScopeGlobal        RuleScope = "GLOBAL"
	ScopeService       RuleScope = "SERVICE"
	ScopeBillingEntity RuleScope = "BILLING_ENTITY"
	ScopeSKU           RuleScope = "SKU"
)

// ChargeType says whether a custom line item adds or subtracts (P5).
type ChargeType string

// Charge types.
const (
	ChargeFee    ChargeType = "FEE"
	ChargeCredit ChargeType = "CREDIT"
)

// The enum conversions go through the generated names, so a name in a command,
// an event and a report is the same word.

func ruleTypeOf(p billingv1.PricingRuleType) RuleType {
	if p == billingv1.PricingRuleType_PRICING_RULE_TYPE_UNSPECIFIED {
		return ""
	}
	return RuleType(strings.TrimPrefix(p.String(), "PRICING_RULE_TYPE_"))
}

func (t RuleType) proto() billingv1.PricingRuleType {
	return billingv1.PricingRuleType(billingv1.PricingRuleType_value["PRICING_RULE_TYPE_"+string(t)])
}

func ruleScopeOf(p billingv1.PricingRuleScope) RuleScope {
	if p == billingv1.PricingRuleScope_PRICING_RULE_SCOPE_UNSPECIFIED {
		return ""
	}
	return RuleScope(strings.TrimPrefix(p.String(), "PRICING_RULE_SCOPE_"))
}

func (s RuleScope) proto() billingv1.PricingRuleScope {
	return billingv1.PricingRuleScope(billingv1.PricingRuleScope_value["PRICING_RULE_SCOPE_"+string(s)])
}

func chargeTypeOf(p billingv1.CustomLineItemChargeType) ChargeType {
	if p == billingv1.CustomLineItemChargeType_CUSTOM_LINE_ITEM_CHARGE_TYPE_UNSPECIFIED {
		return ""
	}
	return ChargeType(strings.TrimPrefix(p.String(), "CUSTOM_LINE_ITEM_CHARGE_TYPE_"))
}

func (c ChargeType) proto() billingv1.CustomLineItemChargeType {
	return billingv1.CustomLineItemChargeType(billingv1.CustomLineItemChargeType_value["CUSTOM_LINE_ITEM_CHARGE_TYPE_"+string(c)])
}

// ruleKey is what makes two rules of one plan collide (P2). Free tier (TIERING)
// is a dimension of its own: a plan may hold a GLOBAL markup and a GLOBAL
// tiering rule, but not two of either.
type ruleKey struct {
	tiering       bool
	scope         RuleScope
	service       string
	usageType     string
	operation     string
	billingEntity string
}

// String names the key for messages: "SERVICE AmazonEC2", "SKU AmazonS3/TimedStorage-ByteHrs".
func (k ruleKey) String() string {
	var s string
	switch k.scope {
	case ScopeService:
		s = "SERVICE " + k.service
	case ScopeBillingEntity:
		s = "BILLING_ENTITY " + k.billingEntity
	case ScopeSKU:
		s = "SKU " + k.service + "/" + k.usageType
		if k.operation != "" {
			s += "/" + k.operation
		}
	default:
		s = string(k.scope)
	}
	if k.tiering {
		s = "TIERING " + s
	}
	return s
}

func (k ruleKey) proto(ruleID string) *billingv1.PricingRuleKey {
	return &billingv1.PricingRuleKey{PricingRuleId: ruleID, Tiering: k.tiering, Scope: k.scope.proto(),
		Service: k.service, UsageType: k.usageType, Operation: k.operation, BillingEntity: k.billingEntity}
}

func ruleKeyOf(p *billingv1.PricingRuleKey) ruleKey {
	return ruleKey{tiering: p.GetTiering(), scope: ruleScopeOf(p.GetScope()), service: p.GetService(),
		usageType: p.GetUsageType(), operation: p.GetOperation(), billingEntity: p.GetBillingEntity()}
}

// PricingRule is the state of a pricing rule (stream billing.pricing.<owner>.rule.<id>).
// It is a value: Evolve returns a new PricingRule.
type PricingRule struct {
	id       string
	owner    string
	name     string
	typ      RuleType
	key      ruleKey
	modifier string // canonical decimal; "" for TIERING
	freeTier bool
	plans    []string // plans holding the rule, sorted
	deleted  bool
}

// PricingRuleFromProto builds a rule from its event form (the read side builds
// rating plans from PricingRuleCreated/Updated without folding whole streams).
func PricingRuleFromProto(p *billingv1.PricingRule) PricingRule {
	typ := ruleTypeOf(p.GetType())
	return PricingRule{
		id:    p.GetPricingRuleId(),
		owner: p.GetOwnerAccountId(),
		name:  p.GetName(),
		typ:   typ,
		key: ruleKey{tiering: typ == RuleTiering, scope: ruleScopeOf(p.GetScope()), service: p.GetService(),
			usageType: p.GetUsageType(), operation: p.GetOperation(), billingEntity: p.GetBillingEntity()},
		modifier: p.GetModifierPercentage(),
		freeTier: p.GetFreeTierActivated(),
	}
}

// Proto renders the rule's definition as carried by its events.
func (r PricingRule) Proto() *billingv1.PricingRule {
	return &billingv1.PricingRule{
		PricingRuleId: r.id, OwnerAccountId: r.owner, Name: r.name, Type: r.typ.proto(), Scope: r.key.scope.proto(),
		Service: r.key.service, UsageType: r.key.usageType, Operation: r.key.operation, BillingEntity: r.key.billingEntity,
		ModifierPercentage: r.modifier, FreeTierActivated: r.freeTier,
	}
}

// Exists reports whether the rule was ever created (a deleted rule still exists).
func (r PricingRule) Exists() bool { return r.id != "" }

// Deleted reports whether the rule was deleted.
func (r PricingRule) Deleted() bool { return r.deleted }

// ID is the rule id.
func (r PricingRule) ID() string { return r.id }

// Owner is the payer that owns the rule.
func (r PricingRule) Owner() string { return r.owner }

// Name is the rule's name.
func (r PricingRule) Name() string { return r.name }

// Type is MARKUP, DISCOUNT or TIERING.
func (r PricingRule) Type() RuleType { return r.typ }

// Scope is GLOBAL, SERVICE, BILLING_ENTITY or SKU.
func (r PricingRule) Scope() RuleScope { return r.key.scope }

// Service is the service matched by SERVICE and SKU rules.
func (r PricingRule) Service() string { return r.key.service }

// UsageType is the usage type matched by SKU rules.
func (r PricingRule) UsageType() string { return r.key.usageType }

// Operation is the operation matched by SKU rules ("" = any).
func (r PricingRule) Operation() string { return r.key.operation }

// BillingEntity is the billing entity matched by BILLING_ENTITY rules.
func (r PricingRule) BillingEntity() string { return r.key.billingEntity }

// ModifierPercentage is the MARKUP/DISCOUNT percentage as a canonical decimal ("" for TIERING).
func (r PricingRule) ModifierPercentage() string { return r.modifier }

// FreeTierActivated is the setting of a TIERING rule.
func (r PricingRule) FreeTierActivated() bool { return r.freeTier }

// Plans lists the plans that hold the rule, sorted.
func (r PricingRule) Plans() []string { return slices.Clone(r.plans) }

// EvolvePricingRule folds one event into a rule's state.
func EvolvePricingRule(r PricingRule, ev *billingv1.Event) PricingRule {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_PricingRuleCreated:
		r = PricingRuleFromProto(p.PricingRuleCreated.GetRule())
	case *billingv1.Event_PricingRuleUpdated:
		plans := r.plans
		r = PricingRuleFromProto(p.PricingRuleUpdated.GetRule())
		r.plans = plans
	case *billingv1.Event_PricingRuleDeleted:
		r.deleted = true
	case *billingv1.Event_PricingRulePlanLinked:
		r.plans = withString(r.plans, p.PricingRulePlanLinked.GetPricingPlanId())
	case *billingv1.Event_PricingRulePlanUnlinked:
		r.plans = withoutString(r.plans, p.PricingRulePlanUnlinked.GetPricingPlanId())
	}
	return r
}

// FoldPricingRule folds a stream's events into a rule.
func FoldPricingRule(events []*billingv1.Event) PricingRule {
	var r PricingRule
	for _, ev := range events {
		r = EvolvePricingRule(r, ev)
	}
	return r
}

// planRule is a rule as its plan knows it: id and the key that must stay unique.
type planRule struct {
	id  string
	key ruleKey
}

// PricingPlan is the state of a pricing plan (stream billing.pricing.<owner>.plan.<id>).
type PricingPlan struct {
	id      string
	owner   string
	name    string
	rules   []planRule // in the order associated
	groups  []string   // billing groups using the plan, sorted
	deleted bool
}

// Exists reports whether the plan was ever created.
func (p PricingPlan) Exists() bool { return p.id != "" }

// Deleted reports whether the plan was deleted.
func (p PricingPlan) Deleted() bool { return p.deleted }

// ID is the plan id.
func (p PricingPlan) ID() string { return p.id }

// Owner is the payer that owns the plan.
func (p PricingPlan) Owner() string { return p.owner }

// Name is the plan's name.
func (p PricingPlan) Name() string { return p.name }

// RuleIDs lists the plan's rules in the order they were associated.
func (p PricingPlan) RuleIDs() []string {
	out := make([]string, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.id
	}
	return out
}

// HasRule reports whether the plan holds the rule.
func (p PricingPlan) HasRule(id string) bool {
	return slices.ContainsFunc(p.rules, func(r planRule) bool { return r.id == id })
}

// Groups lists the billing groups that use the plan, sorted.
func (p PricingPlan) Groups() []string { return slices.Clone(p.groups) }

// ruleWithKey returns the id of the plan's rule with key k, if any.
func (p PricingPlan) ruleWithKey(k ruleKey) (string, bool) {
	for _, r := range p.rules {
		if r.key == k {
			return r.id, true
		}
	}
	return "", false
}

// EvolvePricingPlan folds one event into a plan's state.
func EvolvePricingPlan(p PricingPlan, ev *billingv1.Event) PricingPlan {
	switch e := ev.GetPayload().(type) {
	case *billingv1.Event_PricingPlanCreated:
		c := e.PricingPlanCreated
		p = PricingPlan{id: c.GetPricingPlanId(), owner: c.GetOwnerAccountId(), name: c.GetName()}
		for _, k := range c.GetRules() {
			p.rules = append(p.rules, planRule{id: k.GetPricingRuleId(), key: ruleKeyOf(k)})
		}
	case *billingv1.Event_PricingPlanUpdated:
		p.name = e.PricingPlanUpdated.GetName()
	case *billingv1.Event_PricingRulesAssociated:
		rules := slices.Clone(p.rules)
		for _, k := range e.PricingRulesAssociated.GetRules() {
			rules = append(rules, planRule{id: k.GetPricingRuleId(), key: ruleKeyOf(k)})
		}
		p.rules = rules
	case *billingv1.Event_PricingRulesDisassociated:
		gone := e.PricingRulesDisassociated.GetPricingRuleIds()
		p.rules = slices.DeleteFunc(slices.Clone(p.rules), func(r planRule) bool { return slices.Contains(gone, r.id) })
	case *billingv1.Event_PricingPlanDeleted:
		p.deleted = true
	case *billingv1.Event_PricingPlanGroupLinked:
		p.groups = withString(p.groups, e.PricingPlanGroupLinked.GetBillingGroupId())
	case *billingv1.Event_PricingPlanGroupUnlinked:
		p.groups = withoutString(p.groups, e.PricingPlanGroupUnlinked.GetBillingGroupId())
	}
	return p
}

// FoldPricingPlan folds a stream's events into a plan.
func FoldPricingPlan(events []*billingv1.Event) PricingPlan {
	var p PricingPlan
	for _, ev := range events {
		p = EvolvePricingPlan(p, ev)
	}
	return p
}

// groupItem is a custom line item as its group knows it: the account it charges.
type groupItem struct {
	id      string
	account string
}

// BillingGroup is the state of a billing group (stream
// billing.pricing.<owner>.group.<id>), created by CreateBillingGroup or, for a
// transfer billing group, by a transfer's acceptance (T8).
type BillingGroup struct {
	id         string
	owner      string
	name       string
	primary    string
	accounts   []string // primary first, then in the order associated
	plan       string   // "" only for a transfer group created with base pricing
	transferID string
	startMonth string
	items      []groupItem // sorted by id
	deleted    bool
}

// Exists reports whether the group was ever created.
func (g BillingGroup) Exists() bool { return g.id != "" }

// Deleted reports whether the group was deleted.
func (g BillingGroup) Deleted() bool { return g.deleted }

// ID is the group id.
func (g BillingGroup) ID() string { return g.id }

// Owner is the payer that owns the group.
func (g BillingGroup) Owner() string { return g.owner }

// Name is the group's name (a transfer group's is its id until renamed).
func (g BillingGroup) Name() string { return g.name }

// PrimaryAccount is the group's primary account.
func (g BillingGroup) PrimaryAccount() string { return g.primary }

// Accounts lists the member accounts, primary first.
func (g BillingGroup) Accounts() []string { return slices.Clone(g.accounts) }

// Has reports whether the account is a member.
func (g BillingGroup) Has(account string) bool { return slices.Contains(g.accounts, account) }

// PricingPlanID is the group's one plan (P4). A transfer group invited without a
// plan has base pricing, which is the managed BASIC plan.
func (g BillingGroup) PricingPlanID() string {
	if g.plan == "" {
		return PlanBasic
	}
	return g.plan
}

// TransferID is the transfer that created a transfer billing group ("" otherwise).
func (g BillingGroup) TransferID() string { return g.transferID }

// StartMonth is a transfer billing group's first month ("" otherwise).
func (g BillingGroup) StartMonth() string { return g.startMonth }

// Items lists the group's custom line items, sorted.
func (g BillingGroup) Items() []string {
	out := make([]string, len(g.items))
	for i, it := range g.items {
		out[i] = it.id
	}
	return out
}

// itemsCharging lists the group's items that charge the account, sorted.
func (g BillingGroup) itemsCharging(account string) []string {
	var out []string
	for _, it := range g.items {
		if it.account == account {
			out = append(out, it.id)
		}
	}
	return out
}

// EvolveBillingGroup folds one event into a group's state.
func EvolveBillingGroup(g BillingGroup, ev *billingv1.Event) BillingGroup {
	switch e := ev.GetPayload().(type) {
	case *billingv1.Event_BillingGroupCreated:
		c := e.BillingGroupCreated
		g = BillingGroup{id: c.GetBillingGroupId(), owner: c.GetOwnerAccountId(), name: c.GetName(),
			primary: c.GetPrimaryAccountId(), accounts: slices.Clone(c.GetAccountIds()), plan: c.GetPricingPlanId()}
	case *billingv1.Event_TransferBillingGroupCreated:
		c := e.TransferBillingGroupCreated
		g = BillingGroup{id: c.GetBillingGroupId(), owner: c.GetOwnerAccountId(), name: c.GetBillingGroupId(),
			primary: c.GetPrimaryAccountId(), accounts: slices.Clone(c.GetAccountIds()), plan: c.GetPricingPlanId(),
			transferID: c.GetTransferId(), startMonth: c.GetStartMonth()}
	case *billingv1.Event_BillingGroupUpdated:
		g.name = e.BillingGroupUpdated.GetName()
		g.plan = e.BillingGroupUpdated.GetPricingPlanId()
	case *billingv1.Event_BillingGroupAccountsAssociated:
		g.accounts = append(slices.Clone(g.accounts), e.BillingGroupAccountsAssociated.GetAccountIds()...)
	case *billingv1.Event_BillingGroupAccountsDisassociated:
		gone := e.BillingGroupAccountsDisassociated.GetAccountIds()
		g.accounts = slices.DeleteFunc(slices.Clone(g.accounts), func(a string) bool { return slices.Contains(gone, a) })
	case *billingv1.Event_BillingGroupDeleted:
		g.deleted = true
	case *billingv1.Event_BillingGroupItemLinked:
		l := e.BillingGroupItemLinked
		items := slices.DeleteFunc(slices.Clone(g.items), func(it groupItem) bool { return it.id == l.GetCustomLineItemId() })
		items = append(items, groupItem{id: l.GetCustomLineItemId(), account: l.GetAccountId()})
		slices.SortFunc(items, func(a, b groupItem) int { return strings.Compare(a.id, b.id) })
		g.items = items
	case *billingv1.Event_BillingGroupItemUnlinked:
		id := e.BillingGroupItemUnlinked.GetCustomLineItemId()
		g.items = slices.DeleteFunc(slices.Clone(g.items), func(it groupItem) bool { return it.id == id })
	}
	return g
}

// FoldBillingGroup folds a stream's events into a group.
func FoldBillingGroup(events []*billingv1.Event) BillingGroup {
	var g BillingGroup
	for _, ev := range events {
		g = EvolveBillingGroup(g, ev)
	}
	return g
}

// CustomLineItem is the state of a custom line item (stream
// billing.pricing.<owner>.item.<id>), P5.
type CustomLineItem struct {
	id         string
	owner      string
	group      string
	name       string
	chargeType ChargeType
	flat       string // canonical decimal, FLAT items
	percentage string // canonical decimal, PERCENTAGE items
	services   []string
	start      string
	end        string
	account    string
	deleted    bool
}

// CustomLineItemFromProto builds an item from its event form.
func CustomLineItemFromProto(p *billingv1.CustomLineItem) CustomLineItem {
	return CustomLineItem{
		id: p.GetCustomLineItemId(), owner: p.GetOwnerAccountId(), group: p.GetBillingGroupId(), name: p.GetName(),
		chargeType: chargeTypeOf(p.GetChargeType()), flat: p.GetFlatAmount(), percentage: p.GetPercentage(),
		services: slices.Clone(p.GetServices()), start: p.GetStartMonth(), end: p.GetEndMonth(), account: p.GetAccountId(),
	}
}

// Proto renders the item as carried by its events.
func (i CustomLineItem) Proto() *billingv1.CustomLineItem {
	return &billingv1.CustomLineItem{
		CustomLineItemId: i.id, OwnerAccountId: i.owner, BillingGroupId: i.group, Name: i.name,
		ChargeType: i.chargeType.proto(), FlatAmount: i.flat, Percentage: i.percentage, Services: slices.Clone(i.services),
		StartMonth: i.start, EndMonth: i.end, AccountId: i.account,
	}
}

// Exists reports whether the item was ever created.
func (i CustomLineItem) Exists() bool { return i.id != "" }

// Deleted reports whether the item was deleted.
func (i CustomLineItem) Deleted() bool { return i.deleted }

// ID is the item id.
func (i CustomLineItem) ID() string { return i.id }

// Owner is the payer that owns the item (its group's owner).
func (i CustomLineItem) Owner() string { return i.owner }

// BillingGroupID is the group the item belongs to.
func (i CustomLineItem) BillingGroupID() string { return i.group }

// Name is the item's name.
func (i CustomLineItem) Name() string { return i.name }

// ChargeType is FEE or CREDIT.
func (i CustomLineItem) ChargeType() ChargeType { return i.chargeType }

// FlatAmount is the monthly amount of a FLAT item ("" for PERCENTAGE items).
func (i CustomLineItem) FlatAmount() string { return i.flat }

// Percentage is the percent of a PERCENTAGE item ("" for FLAT items).
func (i CustomLineItem) Percentage() string { return i.percentage }

// Services limits a PERCENTAGE item to these services (empty = all).
func (i CustomLineItem) Services() []string { return slices.Clone(i.services) }

// StartMonth is the first month charged.
func (i CustomLineItem) StartMonth() string { return i.start }

// EndMonth is the last month charged ("" = recurring).
func (i CustomLineItem) EndMonth() string { return i.end }

// AccountID is the account charged.
func (i CustomLineItem) AccountID() string { return i.account }

// EvolveCustomLineItem folds one event into an item's state.
func EvolveCustomLineItem(i CustomLineItem, ev *billingv1.Event) CustomLineItem {
	switch e := ev.GetPayload().(type) {
	case *billingv1.Event_CustomLineItemCreated:
		i = CustomLineItemFromProto(e.CustomLineItemCreated.GetItem())
	case *billingv1.Event_CustomLineItemUpdated:
		i = CustomLineItemFromProto(e.CustomLineItemUpdated.GetItem())
	case *billingv1.Event_CustomLineItemDeleted:
		i.deleted = true
	}
	return i
}

// FoldCustomLineItem folds a stream's events into an item.
func FoldCustomLineItem(events []*billingv1.Event) CustomLineItem {
	var i CustomLineItem
	for _, ev := range events {
		i = EvolveCustomLineItem(i, ev)
	}
	return i
}

// AccountGroup is one billing group membership recorded on an account's stream.
type AccountGroup struct {
	// Owner is the group's owner.
	Owner string
	// BillingGroupID is the group.
	BillingGroupID string
	// FromMonth is a transfer group's start month ("" for other groups).
	FromMonth string
}

// AccountGroups is the billing-group side of an account's stream
// (billing.account.<id>): the memberships recorded by AccountGroupAssigned and
// not yet released. It lists candidates, not the truth: a transfer group's
// initial members are only on the group's stream (T8), and a deleted group
// leaves its assignments behind, so a decision reads each group it finds.
type AccountGroups struct {
	groups []AccountGroup
}

// Groups lists the recorded memberships, in the order assigned.
func (a AccountGroups) Groups() []AccountGroup { return slices.Clone(a.groups) }

// EvolveAccountGroups folds one event of an account stream.
func EvolveAccountGroups(a AccountGroups, ev *billingv1.Event) AccountGroups {
	switch e := ev.GetPayload().(type) {
	case *billingv1.Event_AccountGroupAssigned:
		x := e.AccountGroupAssigned
		a.groups = append(slices.DeleteFunc(slices.Clone(a.groups), func(g AccountGroup) bool {
			return g.Owner == x.GetOwnerAccountId() && g.BillingGroupID == x.GetBillingGroupId()
		}), AccountGroup{Owner: x.GetOwnerAccountId(), BillingGroupID: x.GetBillingGroupId(), FromMonth: x.GetFromMonth()})
	case *billingv1.Event_AccountGroupReleased:
		x := e.AccountGroupReleased
		a.groups = slices.DeleteFunc(slices.Clone(a.groups), func(g AccountGroup) bool {
			return g.Owner == x.GetOwnerAccountId() && g.BillingGroupID == x.GetBillingGroupId()
		})
	}
	return a
}

// FoldAccountGroups folds an account stream's events.
func FoldAccountGroups(events []*billingv1.Event) AccountGroups {
	var a AccountGroups
	for _, ev := range events {
		a = EvolveAccountGroups(a, ev)
	}
	return a
}

// GroupForAccount returns the group that prices account a among the live groups
// of one owner (P4, T8), for a month in which covers reports whether a transfer
// is in force: the owner's group that is not a transfer billing group, when one
// holds the account; otherwise the transfer billing group holding it whose
// transfer covers the month. The commands keep this choice unique
// (checkAccountFree); ok is false when no group of the owner prices the account.
func GroupForAccount(groups []BillingGroup, a string, covers func(transferID string) bool) (BillingGroup, bool) {
	var fallback BillingGroup
	found := false
	for _, g := range groups {
		if !g.Exists() || g.Deleted() || !g.Has(a) {
			continue
		}
		if g.transferID == "" {
			return g, true
		}
		if !found && covers(g.transferID) {
			fallback, found = g, true
		}
	}
	return fallback, found
}

// indexOwner returns the owner recorded in an id index stream ("" when none).
func indexOwner(events []*billingv1.Event) string {
	for _, ev := range events {
		if r := ev.GetPricingIdReserved(); r != nil {
			return r.GetOwnerAccountId()
		}
	}
	return ""
}

// withString returns a sorted copy of set with s added.
func withString(set []string, s string) []string {
	i, found := slices.BinarySearch(set, s)
	if found {
		return set
	}
	return slices.Insert(slices.Clone(set), i, s)
}

// withoutString returns a copy of the sorted set without s.
func withoutString(set []string, s string) []string {
	i, found := slices.BinarySearch(set, s)
	if !found {
		return set
	}
	return slices.Delete(slices.Clone(set), i, i+1)
}

// pricingEvent wraps a pricing payload in an envelope (the pricing half of ev).
func pricingEvent(p any) (*billingv1.Event, bool) {
	e := &billingv1.Event{}
	switch x := p.(type) {
	case *billingv1.PricingRuleCreated:
		e.Payload = &billingv1.Event_PricingRuleCreated{PricingRuleCreated: x}
	case *billingv1.PricingRuleUpdated:
		e.Payload = &billingv1.Event_PricingRuleUpdated{PricingRuleUpdated: x}
	case *billingv1.PricingRuleDeleted:
		e.Payload = &billingv1.Event_PricingRuleDeleted{PricingRuleDeleted: x}
	case *billingv1.PricingRulePlanLinked:
		e.Payload = &billingv1.Event_PricingRulePlanLinked{PricingRulePlanLinked: x}
	case *billingv1.PricingRulePlanUnlinked:
		e.Payload = &billingv1.Event_PricingRulePlanUnlinked{PricingRulePlanUnlinked: x}
	case *billingv1.PricingPlanCreated:
		e.Payload = &billingv1.Event_PricingPlanCreated{PricingPlanCreated: x}
	case *billingv1.PricingPlanUpdated:
		e.Payload = &billingv1.Event_PricingPlanUpdated{PricingPlanUpdated: x}
	case *billingv1.PricingRulesAssociated:
		e.Payload = &billingv1.Event_PricingRulesAssociated{PricingRulesAssociated: x}
	case *billingv1.PricingRulesDisassociated:
		e.Payload = &billingv1.Event_PricingRulesDisassociated{PricingRulesDisassociated: x}
	case *billingv1.PricingPlanDeleted:
		e.Payload = &billingv1.Event_PricingPlanDeleted{PricingPlanDeleted: x}
	case *billingv1.PricingPlanGroupLinked:
		e.Payload = &billingv1.Event_PricingPlanGroupLinked{PricingPlanGroupLinked: x}
	case *billingv1.PricingPlanGroupUnlinked:
		e.Payload = &billingv1.Event_PricingPlanGroupUnlinked{PricingPlanGroupUnlinked: x}
	case *billingv1.BillingGroupCreated:
		e.Payload = &billingv1.Event_BillingGroupCreated{BillingGroupCreated: x}
	case *billingv1.BillingGroupUpdated:
		e.Payload = &billingv1.Event_BillingGroupUpdated{BillingGroupUpdated: x}
	case *billingv1.BillingGroupAccountsAssociated:
		e.Payload = &billingv1.Event_BillingGroupAccountsAssociated{BillingGroupAccountsAssociated: x}
	case *billingv1.BillingGroupAccountsDisassociated:
		e.Payload = &billingv1.Event_BillingGroupAccountsDisassociated{BillingGroupAccountsDisassociated: x}
	case *billingv1.BillingGroupDeleted:
		e.Payload = &billingv1.Event_BillingGroupDeleted{BillingGroupDeleted: x}
	case *billingv1.BillingGroupItemLinked:
		e.Payload = &billingv1.Event_BillingGroupItemLinked{BillingGroupItemLinked: x}
	case *billingv1.BillingGroupItemUnlinked:
		e.Payload = &billingv1.Event_BillingGroupItemUnlinked{BillingGroupItemUnlinked: x}
	case *billingv1.CustomLineItemCreated:
		e.Payload = &billingv1.Event_CustomLineItemCreated{CustomLineItemCreated: x}
	case *billingv1.CustomLineItemUpdated:
		e.Payload = &billingv1.Event_CustomLineItemUpdated{CustomLineItemUpdated: x}
	case *billingv1.CustomLineItemDeleted:
		e.Payload = &billingv1.Event_CustomLineItemDeleted{CustomLineItemDeleted: x}
	case *billingv1.AccountGroupAssigned:
		e.Payload = &billingv1.Event_AccountGroupAssigned{AccountGroupAssigned: x}
	case *billingv1.AccountGroupReleased:
		e.Payload = &billingv1.Event_AccountGroupReleased{AccountGroupReleased: x}
	case *billingv1.PricingIdReserved:
		e.Payload = &billingv1.Event_PricingIdReserved{PricingIdReserved: x}
	default:
		return nil, false
	}
	return e, true
}
