package projections

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// ProformaName is the proforma projection's checkpoint key.
const ProformaName = readmodel.ProformaProjection

// ProformaFilter selects every stream: the projection reads usage
// (billing.usage.>), the pricing aggregates (billing.pricing.>) and transfer
// withdrawals (billing.transfer.>), and a Runner takes one subject filter.
const ProformaFilter = "billing.>"

// Proforma is the proforma projection: the pro forma view (DESIGN R1,
// showback/chargeback) and the inputs of the cost report (P6), from the usage
// events and the pricing configuration (P1–P5, T8) as it evolves. The zero
// value is ready to use.
//
// What it keeps (package readmodel, tables proforma_*):
//   - a copy of the pricing configuration: rules, plans and their rules,
//     billing groups with their plan and accounts (a transfer billing group
//     from its start month to its transfer's end), custom line items;
//   - per-SKU usage aggregates (readmodel.SKUKey: month × bill receiver ×
//     direct payer × account × service × usage type × operation × free tier →
//     list cost, billed cost, quantity, records);
//   - the pro forma rows: month × bill receiver × owner (pricing payer) ×
//     billing group × account × service → list cost, billable cost, pro forma
//     cost, records.
//
// How a SKU is priced (priceSKU): the group of an account for an owner and a
// month is domain.GroupForAccount (a group of the owner holding the account
// wins over the transfer billing group, which prices the months of its
// transfer). Usage is priced at one level, by its bill receiver, or at two in
// a chain end customer → reseller → distributor (P7): the distributor prices it
// first (an end customer's account that no distributor group holds is priced by
// the distributor's transfer billing group of the reseller: the transfer through
// which the distributor receives that bill), with the billed cost as its
// billable cost; then the reseller prices it with the distributor's pro forma
// as its billable cost (what PASSTHROUGH passes through). Usage that no group
// of the owner prices gets billing group "" at list cost (BASIC), so that the
// pro forma of a payer accounts for all of its usage. A group whose plan does
// not exist (a transfer billing group invited with a plan deleted since, T8)
// prices at list cost too.
//
// On a batch of events it applies the configuration events in order, adds the
// usage records to the SKU aggregates, then:
//   - re-rates (P4) every universe (a booking month of a bill receiver,
//     readmodel.Universe) whose pricing the batch's configuration changed and
//     whose month is not closed: its rows are deleted and recomputed from its
//     SKU aggregates, so a re-rate costs O(distinct SKUs), never O(events);
//   - prices the other universes' new usage increment by increment: pricing
//     is linear (domain.RatePlan.Rate), so rows built from increments equal rows
//     built from the sums, exactly.
//
// Custom line items (P5) and the cost report (P6) are computed when queried
// (readmodel.ReportProforma, ReportCost), from these rows and the items table,
// so they follow every re-rate.
type Proforma struct {
	// Closed tells whether a bill receiver has closed a month (P4: a closed
	// month never changes). nil = no month is closed (CloseMonth comes with
	// issue #5).
	Closed domain.MonthClosed
}

var _ BatchProjection = Proforma{}

// Name implements Projection.
func (Proforma) Name() string { return ProformaName }

// Filter implements Projection.
func (Proforma) Filter() string { return ProformaFilter }

// Apply implements Projection: ApplyBatch of one event.
func (p Proforma) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error {
	return p.ApplyBatch(ctx, tx, []eventstore.Record{rec})
}

// ApplyBatch implements BatchProjection. Errors about one event name it
// (*ApplyError); a failure while pricing belongs to the whole batch.
func (p Proforma) ApplyBatch(ctx context.Context, tx *sql.Tx, recs []eventstore.Record) error {
	st := readmodel.NewProformaStore(tx)
	defer func() { _ = st.Close() }() // before the runner commits tx
	agg := newSKUAggregate()
	dirty := map[string]bool{}
	for _, rec := range recs {
		ev, ok, err := decodeUsageEvent(rec)
		if err == nil && ok {
			err = agg.addEvent(ev)
		}
		if err != nil {
			return proformaApplyError(rec, err)
		}
		if ok {
			continue
		}
		owner, err := applyPricingEvent(ctx, st, rec.Event)
		if err != nil {
			return proformaApplyError(rec, err)
		}
		if owner != "" {
			dirty[owner] = true
		}
	}
	return p.settle(ctx, st, agg, dirty)
}

// proformaApplyError names the event a proforma error belongs to.
func proformaApplyError(rec eventstore.Record, err error) *ApplyError {
	return &ApplyError{
		Projection: ProformaName,
		Position:   rec.Position,
		Stream:     rec.Event.GetStream(),
		EventID:    rec.Event.GetEventId(),
		Err:        err,
	}
}

// closed reports whether universe u's month is closed by its bill receiver.
func (p Proforma) closed(u readmodel.Universe) bool {
	if p.Closed == nil {
		return false
	}
	m, err := domain.ParseMonth(u.Month)
	return err == nil && p.Closed(u.PayerAccountID, m)
}

// settle stores a batch's usage and prices it: SKU aggregates first, then the
// re-rates of the universes whose configuration changed (which include their
// new usage), then the new usage of the others.
func (p Proforma) settle(ctx context.Context, st *readmodel.ProformaStore, agg *skuAggregate, dirty map[string]bool) error {
	keys := agg.sortedKeys()
	for _, k := range keys {
		prev, err := st.GetSKU(ctx, k)
		if err != nil {
			return err
		}
		next, err := agg.rows[k].addTo(k, prev)
		if err != nil {
			return err
		}
		if err := st.PutSKU(ctx, next); err != nil {
			return err
		}
	}

	rerate := map[readmodel.Universe]bool{}
	for _, owner := range slices.Sorted(mapKeys(dirty)) {
		us, err := st.UniversesOf(ctx, owner)
		if err != nil {
			return err
		}
		for _, u := range us {
			if !p.closed(u) {
				rerate[u] = true
			}
		}
	}
	pr := newPricer(ctx, st)
	for _, u := range slices.SortedFunc(mapKeys(rerate), compareUniverses) {
		if err := rerateUniverse(ctx, st, pr, u); err != nil {
			return err
		}
	}

	rows := newRowSums()
	for _, k := range keys {
		if rerate[readmodel.Universe{Month: k.Month, PayerAccountID: k.PayerAccountID}] {
			continue // the re-rate priced it with the rest of its universe
		}
		s := agg.rows[k]
		if err := pr.priceSKU(rows, k, &s.list, &s.billed, s.records); err != nil {
			return err
		}
	}
	for _, k := range rows.sortedKeys() {
		prev, err := st.GetRow(ctx, k)
		if err != nil {
			return err
		}
		next, err := rows.sums[k].addTo(k, prev)
		if err != nil {
			return err
		}
		if err := st.PutRow(ctx, next); err != nil {
			return err
		}
	}
	return nil
}

// rerateUniverse recomputes universe u's rows from its SKU aggregates (P4).
func rerateUniverse(ctx context.Context, st *readmodel.ProformaStore, pr *pricer, u readmodel.Universe) error {
	var skus []readmodel.SKURow
	if err := st.EachSKU(ctx, u, func(r *readmodel.SKURow) error {
		skus = append(skus, *r)
		return nil
	}); err != nil {
		return err
	}
	rows := newRowSums()
	for i := range skus {
		r := &skus[i]
		list, err := domain.ParseDecimal(r.ListCost)
		if err != nil {
			return fmt.Errorf("proforma: stored list_cost of %+v: %w", r.SKUKey, err)
		}
		billed, err := domain.ParseDecimal(r.BilledCost)
		if err != nil {
			return fmt.Errorf("proforma: stored billed_cost of %+v: %w", r.SKUKey, err)
		}
		if err := pr.priceSKU(rows, r.SKUKey, list, billed, r.RecordCount); err != nil {
			return err
		}
	}
	if err := st.DeleteRows(ctx, u); err != nil {
		return err
	}
	for _, k := range rows.sortedKeys() {
		if err := st.PutRow(ctx, rows.sums[k].row(k)); err != nil {
			return err
		}
	}
	return nil
}

func compareUniverses(a, b readmodel.Universe) int {
	return cmp.Or(cmp.Compare(a.Month, b.Month), cmp.Compare(a.PayerAccountID, b.PayerAccountID))
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The pricing configuration.

// applyPricingEvent applies one configuration event to the stored copy and
// returns the owner whose pricing it changed ("" when it changes no price):
// a change that can move an account to another group or give a group other
// prices. Custom line items are priced at query time, so they change no
// stored price. Events the projection does not use are ignored.
func applyPricingEvent(ctx context.Context, st *readmodel.ProformaStore, ev *billingv1.Event) (string, error) {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_PricingRuleCreated:
		// No plan holds a new rule.
		return "", st.PutRule(ctx, p.PricingRuleCreated.GetRule())
	case *billingv1.Event_PricingRuleUpdated:
		r := p.PricingRuleUpdated.GetRule()
		if err := st.PutRule(ctx, r); err != nil {
			return "", err
		}
		used, err := st.RuleInUse(ctx, r.GetPricingRuleId())
		return ownerIf(used, r.GetOwnerAccountId()), err
	case *billingv1.Event_PricingRuleDeleted:
		// A rule is deleted only when no plan holds it.
		return "", st.DeleteRule(ctx, p.PricingRuleDeleted.GetPricingRuleId())
	case *billingv1.Event_PricingPlanCreated:
		c := p.PricingPlanCreated
		ids := make([]string, len(c.GetRules()))
		for i, k := range c.GetRules() {
			ids[i] = k.GetPricingRuleId()
		}
		if err := st.PutPlan(ctx, c.GetPricingPlanId(), c.GetOwnerAccountId(), ids); err != nil {
			return "", err
		}
		// A transfer billing group may name a plan before it exists (T8).
		return planOwnerIfUsed(ctx, st, c.GetPricingPlanId(), c.GetOwnerAccountId())
	case *billingv1.Event_PricingRulesAssociated:
		c := p.PricingRulesAssociated
		ids := make([]string, len(c.GetRules()))
		for i, k := range c.GetRules() {
			ids[i] = k.GetPricingRuleId()
		}
		if err := st.AddPlanRules(ctx, c.GetPricingPlanId(), ids); err != nil {
			return "", err
		}
		return planOwnerIfUsed(ctx, st, c.GetPricingPlanId(), c.GetOwnerAccountId())
	case *billingv1.Event_PricingRulesDisassociated:
		c := p.PricingRulesDisassociated
		if err := st.RemovePlanRules(ctx, c.GetPricingPlanId(), c.GetPricingRuleIds()); err != nil {
			return "", err
		}
		return planOwnerIfUsed(ctx, st, c.GetPricingPlanId(), c.GetOwnerAccountId())
	case *billingv1.Event_PricingPlanDeleted:
		c := p.PricingPlanDeleted
		if err := st.DeletePlan(ctx, c.GetPricingPlanId()); err != nil {
			return "", err
		}
		return planOwnerIfUsed(ctx, st, c.GetPricingPlanId(), c.GetOwnerAccountId())
	case *billingv1.Event_BillingGroupCreated:
		c := p.BillingGroupCreated
		g := readmodel.PricingGroup{ID: c.GetBillingGroupId(), Owner: c.GetOwnerAccountId(), Primary: c.GetPrimaryAccountId(),
			PlanID: c.GetPricingPlanId()}
		return g.Owner, st.PutGroup(ctx, g, c.GetAccountIds())
	case *billingv1.Event_TransferBillingGroupCreated:
		c := p.TransferBillingGroupCreated
		g := readmodel.PricingGroup{ID: c.GetBillingGroupId(), Owner: c.GetOwnerAccountId(), Primary: c.GetPrimaryAccountId(),
			PlanID: c.GetPricingPlanId(), TransferID: c.GetTransferId(), StartMonth: c.GetStartMonth()}
		return g.Owner, st.PutGroup(ctx, g, c.GetAccountIds())
	case *billingv1.Event_BillingGroupUpdated:
		c := p.BillingGroupUpdated
		g, ok, err := st.Group(ctx, c.GetBillingGroupId())
		if err != nil || !ok || g.PlanID == c.GetPricingPlanId() {
			return "", err // a rename changes no price
		}
		return c.GetOwnerAccountId(), st.SetGroupPlan(ctx, g.ID, c.GetPricingPlanId())
	case *billingv1.Event_BillingGroupAccountsAssociated:
		c := p.BillingGroupAccountsAssociated
		return c.GetOwnerAccountId(), st.AddGroupAccounts(ctx, c.GetBillingGroupId(), c.GetOwnerAccountId(), c.GetAccountIds())
	case *billingv1.Event_BillingGroupAccountsDisassociated:
		c := p.BillingGroupAccountsDisassociated
		return c.GetOwnerAccountId(), st.RemoveGroupAccounts(ctx, c.GetBillingGroupId(), c.GetAccountIds())
	case *billingv1.Event_BillingGroupDeleted:
		c := p.BillingGroupDeleted
		return c.GetOwnerAccountId(), st.DeleteGroup(ctx, c.GetBillingGroupId())
	case *billingv1.Event_CustomLineItemCreated:
		return "", st.PutItem(ctx, p.CustomLineItemCreated.GetItem())
	case *billingv1.Event_CustomLineItemUpdated:
		return "", st.PutItem(ctx, p.CustomLineItemUpdated.GetItem())
	case *billingv1.Event_CustomLineItemDeleted:
		return "", st.DeleteItem(ctx, p.CustomLineItemDeleted.GetCustomLineItemId())
	case *billingv1.Event_TransferWithdrawn:
		w := p.TransferWithdrawn
		end := w.GetEndMonth()
		if end == "" && w.GetEndTime() != nil {
			end = domain.MonthOf(w.GetEndTime().AsTime()).String()
		}
		if _, err := domain.ParseMonth(end); err != nil {
			return "", fmt.Errorf("proforma: TransferWithdrawn %s: end month: %w", w.GetTransferId(), err)
		}
		if err := st.SetTransferEnd(ctx, w.GetTransferId(), end); err != nil {
			return "", err
		}
		// The months after the end leave the transfer billing group (T5, T6).
		g, ok, err := st.GroupOfTransfer(ctx, w.GetTransferId())
		return ownerIf(ok, g.Owner), err
	}
	return "", nil
}

// isProformaConfigEvent reports whether applyPricingEvent uses ev: the replay
// keeps only these of the configuration streams.
func isProformaConfigEvent(ev *billingv1.Event) bool {
	switch ev.GetPayload().(type) {
	case *billingv1.Event_PricingRuleCreated, *billingv1.Event_PricingRuleUpdated, *billingv1.Event_PricingRuleDeleted,
		*billingv1.Event_PricingPlanCreated, *billingv1.Event_PricingRulesAssociated, *billingv1.Event_PricingRulesDisassociated,
		*billingv1.Event_PricingPlanDeleted, *billingv1.Event_BillingGroupCreated, *billingv1.Event_TransferBillingGroupCreated,
		*billingv1.Event_BillingGroupUpdated, *billingv1.Event_BillingGroupAccountsAssociated,
		*billingv1.Event_BillingGroupAccountsDisassociated, *billingv1.Event_BillingGroupDeleted,
		*billingv1.Event_CustomLineItemCreated, *billingv1.Event_CustomLineItemUpdated, *billingv1.Event_CustomLineItemDeleted,
		*billingv1.Event_TransferWithdrawn:
		return true
	}
	return false
}

func ownerIf(ok bool, owner string) string {
	if ok {
		return owner
	}
	return ""
}

// planOwnerIfUsed returns owner when a billing group names plan id.
func planOwnerIfUsed(ctx context.Context, st *readmodel.ProformaStore, id, owner string) (string, error) {
	used, err := st.PlanInUse(ctx, id)
	return ownerIf(used, owner), err
}

// ---------------------------------------------------------------------------
// Pricing.

// choiceKey is what decides which group prices an account.
type choiceKey struct{ owner, account, month, via string }

// groupChoice is the group that prices an account for an owner and month, and
// its plan ready to rate.
type groupChoice struct {
	group string
	plan  domain.RatePlan
}

// pricer prices SKUs with the stored configuration. It remembers every group
// choice and plan it has looked up, so it must only live while the
// configuration does not change (one settle of one batch).
type pricer struct {
	ctx     context.Context
	st      *readmodel.ProformaStore
	choices map[choiceKey]groupChoice
	plans   map[string]domain.RatePlan
	ends    map[string]string // transfer id → end month ("" = open-ended)
}

func newPricer(ctx context.Context, st *readmodel.ProformaStore) *pricer {
	return &pricer{ctx: ctx, st: st, choices: map[choiceKey]groupChoice{}, plans: map[string]domain.RatePlan{}, ends: map[string]string{}}
}

// priceSKU adds the rows of one SKU aggregate (or increment) to rows: its
// bill receiver's, and in a two-level chain its direct payer's (P7).
func (p *pricer) priceSKU(rows *rowSums, k readmodel.SKUKey, list, billed *apd.Decimal, records uint64) error {
	charge := domain.Charge{
		ChargeKey: domain.ChargeKey{Service: k.Service, UsageType: k.UsageType, Operation: k.Operation,
			BillingEntity: domain.DefaultBillingEntity, FreeTier: k.FreeTier},
		ListCost: list, BilledCost: billed,
	}
	via := ""
	if k.DirectPayerAccountID != k.PayerAccountID {
		via = k.DirectPayerAccountID
	}
	top, err := p.choose(k.PayerAccountID, k.AccountID, k.Month, via)
	if err != nil {
		return err
	}
	rt, err := top.plan.Rate(charge)
	if err != nil {
		return fmt.Errorf("proforma: price %+v with plan %s: %w", k, top.plan.ID(), err)
	}
	if err := rows.add(readmodel.ProformaKey{Month: k.Month, PayerAccountID: k.PayerAccountID, OwnerAccountID: k.PayerAccountID,
		BillingGroupID: top.group, AccountID: k.AccountID, Service: k.Service}, list, billed, rt.ProformaCost, records); err != nil {
		return err
	}
	if via == "" {
		return nil
	}
	// The reseller is billed the distributor's pro forma (P7).
	mid, err := p.choose(via, k.AccountID, k.Month, "")
	if err != nil {
		return err
	}
	charge.BilledCost = rt.ProformaCost
	rm, err := mid.plan.Rate(charge)
	if err != nil {
		return fmt.Errorf("proforma: price %+v with plan %s: %w", k, mid.plan.ID(), err)
	}
	return rows.add(readmodel.ProformaKey{Month: k.Month, PayerAccountID: k.PayerAccountID, OwnerAccountID: via,
		BillingGroupID: mid.group, AccountID: k.AccountID, Service: k.Service}, list, rt.ProformaCost, rm.ProformaCost, records)
}

// choose returns the group of owner that prices account in month (P4, T8),
// falling back, at the top of a chain (via = the reseller), to owner's transfer
// billing group of via; no group = "" at list cost.
func (p *pricer) choose(owner, account, month, via string) (groupChoice, error) {
	key := choiceKey{owner, account, month, via}
	if c, ok := p.choices[key]; ok {
		return c, nil
	}
	cands, err := p.st.GroupsHolding(p.ctx, owner, account)
	if err != nil {
		return groupChoice{}, err
	}
	byTransfer := map[string]readmodel.PricingGroup{}
	bgs := make([]domain.BillingGroup, len(cands))
	for i, g := range cands {
		bgs[i] = domainGroup(g, account)
		if g.TransferID != "" {
			byTransfer[g.TransferID] = g
		}
	}
	var coverErr error
	covers := func(g readmodel.PricingGroup) bool {
		ok, err := p.covers(g, month)
		if err != nil && coverErr == nil {
			coverErr = err
		}
		return ok
	}
	chosen := readmodel.PricingGroup{PlanID: domain.PlanBasic}
	if bg, ok := domain.GroupForAccount(bgs, account, func(tid string) bool { return covers(byTransfer[tid]) }); ok {
		for _, g := range cands {
			if g.ID == bg.ID() {
				chosen = g
			}
		}
	} else if via != "" {
		tgs, err := p.st.TransferGroupsOf(p.ctx, owner, via)
		if err != nil {
			return groupChoice{}, err
		}
		for _, g := range tgs {
			if covers(g) {
				chosen = g
				break
			}
		}
	}
	if coverErr != nil {
		return groupChoice{}, coverErr
	}
	plan, err := p.plan(chosen.PlanID)
	if err != nil {
		return groupChoice{}, fmt.Errorf("proforma: billing group %s: %w", chosen.ID, err)
	}
	c := groupChoice{group: chosen.ID, plan: plan}
	p.choices[key] = c
	return c, nil
}

// covers reports whether transfer billing group g prices month: from its start
// month to its transfer's end month (T6, T8).
func (p *pricer) covers(g readmodel.PricingGroup, month string) (bool, error) {
	if g.TransferID == "" || month < g.StartMonth {
		return false, nil
	}
	end, ok := p.ends[g.TransferID]
	if !ok {
		var err error
		if end, err = p.st.TransferEnd(p.ctx, g.TransferID); err != nil {
			return false, err
		}
		p.ends[g.TransferID] = end
	}
	return end == "" || month <= end, nil
}

// plan returns the rating form of a plan: BASIC for "" (base pricing) and for
// a plan that does not exist (any more), the managed plans as they are, and
// the plan's stored rules otherwise.
func (p *pricer) plan(id string) (domain.RatePlan, error) {
	if id == "" {
		id = domain.PlanBasic
	}
	if rp, ok := p.plans[id]; ok {
		return rp, nil
	}
	var rules []domain.PricingRule
	planID := id
	if !domain.IsManagedPlan(id) {
		_, exists, err := p.st.PlanOwner(p.ctx, id)
		if err != nil {
			return domain.RatePlan{}, err
		}
		if !exists {
			planID = domain.PlanBasic
		} else {
			stored, err := p.st.PlanRules(p.ctx, id)
			if err != nil {
				return domain.RatePlan{}, err
			}
			for _, r := range stored {
				rules = append(rules, domain.PricingRuleFromProto(r))
			}
		}
	}
	rp, err := domain.NewRatePlan(planID, rules)
	if err != nil {
		return domain.RatePlan{}, err
	}
	p.plans[id] = rp
	return rp, nil
}

// domainGroup is the domain form of a stored group holding account, enough
// for domain.GroupForAccount (which reads id, transfer and membership).
func domainGroup(g readmodel.PricingGroup, account string) domain.BillingGroup {
	var ev *billingv1.Event
	if g.TransferID != "" {
		ev = domain.NewEvent(&billingv1.TransferBillingGroupCreated{BillingGroupId: g.ID, OwnerAccountId: g.Owner, TransferId: g.TransferID,
			PrimaryAccountId: g.Primary, AccountIds: []string{account}, PricingPlanId: g.PlanID, StartMonth: g.StartMonth})
	} else {
		ev = domain.NewEvent(&billingv1.BillingGroupCreated{BillingGroupId: g.ID, OwnerAccountId: g.Owner, PrimaryAccountId: g.Primary,
			AccountIds: []string{account}, PricingPlanId: g.PlanID})
	}
	return domain.EvolveBillingGroup(domain.BillingGroup{}, ev)
}

// ---------------------------------------------------------------------------
// Sums.

// skuSum is the in-memory sum of the records of one SKU aggregate.
type skuSum struct {
	list, billed, qty apd.Decimal
	records           uint64
}

// skuAggregate sums a batch's booked usage per SKU (readmodel.SKUKey).
type skuAggregate struct {
	rows map[readmodel.SKUKey]*skuSum
}

func newSKUAggregate() *skuAggregate {
	return &skuAggregate{rows: map[readmodel.SKUKey]*skuSum{}}
}

// addEvent adds every accepted record of ev, with the checks of the billable
// aggregate (billableAggregate.add) and list cost = domain.ChargeOf.
func (a *skuAggregate) addEvent(ev usageEvent) error {
	for i, b := range ev.batch.GetRecords() {
		if err := a.add(ev.month, b); err != nil {
			return fmt.Errorf("proforma: record %d (usage_id %q): %w", i, b.GetRecord().GetUsageId(), err)
		}
	}
	return nil
}

func (a *skuAggregate) add(month string, b *billingv1.BookedUsage) error {
	r := b.GetRecord()
	if r == nil {
		return fmt.Errorf("booked usage without its record")
	}
	if b.GetBookingMonth() != month {
		return fmt.Errorf("booking_month %q on a stream of month %q", b.GetBookingMonth(), month)
	}
	key := readmodel.SKUKey{
		Month:                month,
		PayerAccountID:       b.GetPayerAccountId(),
		DirectPayerAccountID: b.GetDirectPayerAccountId(),
		AccountID:            r.GetAccountId(),
		Service:              r.GetService(),
		UsageType:            r.GetUsageType(),
		Operation:            r.GetOperation(),
		FreeTier:             r.GetFreeTier(),
	}
	if key.DirectPayerAccountID == "" {
		key.DirectPayerAccountID = key.PayerAccountID // booked before chains were recorded: one level
	}
	if key.PayerAccountID == "" || key.AccountID == "" || key.Service == "" {
		return fmt.Errorf("payer %q, account %q and service %q must all be set", key.PayerAccountID, key.AccountID, key.Service)
	}
	c, err := domain.ChargeOf(r)
	if err != nil {
		return err
	}
	q, err := domain.ParseDecimal(r.GetQuantity())
	if err != nil {
		return fmt.Errorf("quantity: %w", err)
	}
	s := a.rows[key]
	if s == nil {
		s = new(skuSum)
		a.rows[key] = s
	}
	for _, x := range []struct {
		acc *apd.Decimal
		v   *apd.Decimal
	}{{&s.list, c.ListCost}, {&s.billed, c.BilledCost}, {&s.qty, q}} {
		if err := addExact(x.acc, x.v); err != nil {
			return err
		}
	}
	s.records++
	return nil
}

func (a *skuAggregate) sortedKeys() []readmodel.SKUKey {
	return slices.SortedFunc(mapKeys(a.rows), func(x, y readmodel.SKUKey) int {
		return cmp.Or(cmp.Compare(x.Month, y.Month), cmp.Compare(x.PayerAccountID, y.PayerAccountID),
			cmp.Compare(x.DirectPayerAccountID, y.DirectPayerAccountID), cmp.Compare(x.AccountID, y.AccountID),
			cmp.Compare(x.Service, y.Service), cmp.Compare(x.UsageType, y.UsageType), cmp.Compare(x.Operation, y.Operation),
			cmpBool(x.FreeTier, y.FreeTier))
	})
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

// addTo returns the aggregate after adding s to prev (nil = none yet).
func (s *skuSum) addTo(k readmodel.SKUKey, prev *readmodel.SKURow) (*readmodel.SKURow, error) {
	out := &readmodel.SKURow{SKUKey: k, RecordCount: s.records}
	sums := [3]apd.Decimal{}
	sums[0].Set(&s.list)
	sums[1].Set(&s.billed)
	sums[2].Set(&s.qty)
	if prev != nil {
		for i, v := range []string{prev.ListCost, prev.BilledCost, prev.UsageQuantity} {
			d, err := domain.ParseDecimal(v)
			if err != nil {
				return nil, fmt.Errorf("proforma: stored usage aggregate %+v: %w", k, err)
			}
			if err := addExact(&sums[i], d); err != nil {
				return nil, fmt.Errorf("proforma: usage aggregate %+v: %w", k, err)
			}
		}
		out.RecordCount += prev.RecordCount
	}
	out.ListCost = domain.CanonicalDecimal(&sums[0])
	out.BilledCost = domain.CanonicalDecimal(&sums[1])
	out.UsageQuantity = domain.CanonicalDecimal(&sums[2])
	return out, nil
}

// rowSum is the in-memory sum of what some SKUs add to one pro forma row.
type rowSum struct {
	list, billable, proforma apd.Decimal
	records                  uint64
}

// rowSums sums priced SKUs per pro forma row.
type rowSums struct {
	sums map[readmodel.ProformaKey]*rowSum
}

func newRowSums() *rowSums { return &rowSums{sums: map[readmodel.ProformaKey]*rowSum{}} }

func (r *rowSums) add(k readmodel.ProformaKey, list, billable, proforma *apd.Decimal, records uint64) error {
	s := r.sums[k]
	if s == nil {
		s = new(rowSum)
		r.sums[k] = s
	}
	for _, x := range []struct{ acc, v *apd.Decimal }{{&s.list, list}, {&s.billable, billable}, {&s.proforma, proforma}} {
		if err := addExact(x.acc, x.v); err != nil {
			return fmt.Errorf("proforma: row %+v: %w", k, err)
		}
	}
	s.records += records
	return nil
}

func (r *rowSums) sortedKeys() []readmodel.ProformaKey {
	return slices.SortedFunc(mapKeys(r.sums), func(x, y readmodel.ProformaKey) int {
		return cmp.Or(cmp.Compare(x.Month, y.Month), cmp.Compare(x.PayerAccountID, y.PayerAccountID),
			cmp.Compare(x.OwnerAccountID, y.OwnerAccountID), cmp.Compare(x.BillingGroupID, y.BillingGroupID),
			cmp.Compare(x.AccountID, y.AccountID), cmp.Compare(x.Service, y.Service))
	})
}

// row is the stored row of s alone.
func (s *rowSum) row(k readmodel.ProformaKey) *readmodel.ProformaRowData {
	return &readmodel.ProformaRowData{ProformaKey: k, ListCost: domain.CanonicalDecimal(&s.list),
		BillableCost: domain.CanonicalDecimal(&s.billable), ProformaCost: domain.CanonicalDecimal(&s.proforma), RecordCount: s.records}
}

// addTo returns the row after adding s to prev (nil = no row yet).
func (s *rowSum) addTo(k readmodel.ProformaKey, prev *readmodel.ProformaRowData) (*readmodel.ProformaRowData, error) {
	if prev == nil {
		return s.row(k), nil
	}
	var sums [3]apd.Decimal
	sums[0].Set(&s.list)
	sums[1].Set(&s.billable)
	sums[2].Set(&s.proforma)
	for i, v := range []string{prev.ListCost, prev.BillableCost, prev.ProformaCost} {
		d, err := domain.ParseDecimal(v)
		if err != nil {
			return nil, fmt.Errorf("proforma: stored row %+v: %w", k, err)
		}
		if err := addExact(&sums[i], d); err != nil {
			return nil, fmt.Errorf("proforma: row %+v: %w", k, err)
		}
	}
	return &readmodel.ProformaRowData{ProformaKey: k, ListCost: domain.CanonicalDecimal(&sums[0]),
		BillableCost: domain.CanonicalDecimal(&sums[1]), ProformaCost: domain.CanonicalDecimal(&sums[2]),
		RecordCount: prev.RecordCount + s.records}, nil
}
