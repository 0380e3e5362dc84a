package projections

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"

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
//
// Behind a Runner it keeps the SKU aggregates and pro forma rows it has
// committed in memory (rowcache.go), so a row is read from the database only
// the first time it is touched, and written by its row id.
type Proforma struct {
	// Closed tells whether a bill receiver has closed a month (P4: a closed
	// month never changes), besides the MonthClosed events the projection
	// records itself (optional).
	Closed domain.MonthClosed

	cache *proformaCache // nil: a cache for one batch (rowcache.go)
}

var (
	_ BatchProjection = Proforma{}
	_ runnerLocal     = Proforma{}
	_ txEnder         = Proforma{}
)

func (p Proforma) forRunner() Projection {
	p.cache = newProformaCache(true)
	return p
}

func (p Proforma) txEnded(committed bool) {
	if p.cache != nil {
		p.cache.end(committed, p.cache.reset)
	}
}

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
	c := p.cache
	if c == nil {
		c = newProformaCache(false)
	}
	if err := c.begin(ctx, tx); err != nil {
		return err
	}
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
		if mc := rec.Event.GetMonthClosed(); mc != nil {
			// Settle what came before the close with the configuration of
			// before it, then freeze the universe (P4, R3).
			if err := p.settle(ctx, st, c, agg, dirty); err != nil {
				return err
			}
			agg, dirty = newSKUAggregate(), map[string]bool{}
			u := readmodel.Universe{Month: mc.GetMonth(), PayerAccountID: mc.GetPayerAccountId()}
			if err := st.MarkClosed(ctx, u, rec.Position); err != nil {
				return proformaApplyError(rec, err)
			}
			continue
		}
		// The configuration may change: price with what it becomes.
		c.memo = newPricerMemo()
		owner, err := applyPricingEvent(ctx, st, rec.Event)
		if err != nil {
			return proformaApplyError(rec, err)
		}
		if owner != "" {
			dirty[owner] = true
		}
	}
	return p.settle(ctx, st, c, agg, dirty)
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

// closed reports whether universe u's month is closed by its bill receiver:
// the projection saw its MonthClosed, or the Closed hook says so.
func (p Proforma) closed(ctx context.Context, st *readmodel.ProformaStore, u readmodel.Universe) (bool, error) {
	if ok, err := st.Closed(ctx, u); ok || err != nil {
		return ok, err
	}
	if p.Closed == nil {
		return false, nil
	}
	m, err := domain.ParseMonth(u.Month)
	return err == nil && p.Closed(u.PayerAccountID, m), nil
}

// settle stores a batch's usage and prices it: SKU aggregates first, then the
// re-rates of the universes whose configuration changed (which include their
// new usage), then the new usage of the others.
func (p Proforma) settle(ctx context.Context, st *readmodel.ProformaStore, c *proformaCache, agg *skuAggregate,
	dirty map[string]bool) error {
	skus := agg.sorted()
	var sku readmodel.SKURow
	for _, s := range skus {
		k := s.key
		e := c.skus[k]
		if e == nil {
			prev, id, err := st.LookupSKU(ctx, k)
			if err != nil {
				return err
			}
			if prev == nil {
				s.rowInto(&sku)
				id, err := st.InsertSKU(ctx, &sku)
				if err != nil {
					return err
				}
				e := &skuEntry{id: id}
				c.skus[k] = e
				c.storeSKU(e, &sku)
				continue
			}
			if e, err = loadSKU(k, id, prev); err != nil {
				return err
			}
			c.skus[k] = e
		}
		if err := s.addTo(&sku, e); err != nil {
			return err
		}
		if err := st.UpdateSKU(ctx, e.id, &sku); err != nil {
			return err
		}
		c.storeSKU(e, &sku)
	}

	rerate := map[readmodel.Universe]bool{}
	for _, owner := range slices.Sorted(mapKeys(dirty)) {
		us, err := st.UniversesOf(ctx, owner)
		if err != nil {
			return err
		}
		for _, u := range us {
			closed, err := p.closed(ctx, st, u)
			if err != nil {
				return err
			}
			if !closed {
				rerate[u] = true
			}
		}
	}
	pr := newPricer(ctx, st, c.memo)
	for _, u := range slices.SortedFunc(mapKeys(rerate), compareUniverses) {
		if err := rerateUniverse(ctx, st, c, pr, u); err != nil {
			return err
		}
	}

	rows := newRowSums()
	for _, s := range skus {
		k := s.key
		if rerate[readmodel.Universe{Month: k.Month, PayerAccountID: k.PayerAccountID}] {
			continue // the re-rate priced it with the rest of its universe
		}
		if err := pr.priceSKU(rows, k, &s.list, &s.billed, s.records); err != nil {
			return err
		}
	}
	var row readmodel.ProformaRowData
	for _, s := range rows.sorted() {
		k := s.key
		e := c.rows[k]
		if e == nil {
			prev, id, err := st.LookupRow(ctx, k)
			if err != nil {
				return err
			}
			if prev == nil {
				s.rowInto(&row)
				id, err := st.InsertRow(ctx, &row)
				if err != nil {
					return err
				}
				e := &rowEntry{id: id}
				c.rows[k] = e
				c.storeRow(e, &row)
				continue
			}
			if e, err = loadRow(k, id, prev); err != nil {
				return err
			}
			c.rows[k] = e
		}
		if err := s.addTo(&row, e); err != nil {
			return err
		}
		if err := st.UpdateRow(ctx, e.id, &row); err != nil {
			return err
		}
		c.storeRow(e, &row)
	}
	return nil
}

// rerateUniverse recomputes universe u's rows from its SKU aggregates (P4).
func rerateUniverse(ctx context.Context, st *readmodel.ProformaStore, c *proformaCache, pr *pricer, u readmodel.Universe) error {
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
	c.dropUniverse(u)
	if err := st.DeleteRows(ctx, u); err != nil {
		return err
	}
	var row readmodel.ProformaRowData
	for _, s := range rows.sorted() {
		s.rowInto(&row)
		id, err := st.InsertRow(ctx, &row)
		if err != nil {
			return err
		}
		e := &rowEntry{id: id}
		c.rows[s.key] = e
		c.storeRow(e, &row)
	}
	return nil
}

// skuEntry is a stored SKU aggregate as the cache keeps it: its row id and
// the values reading it back would give.
type skuEntry struct {
	id                int64
	list, billed, qty apd.Decimal
	records           uint64
}

// rowEntry is a stored pro forma row as the cache keeps it.
type rowEntry struct {
	id                       int64
	list, billable, proforma apd.Decimal
	records                  uint64
}

// proformaCache is the proforma projection's cache of SKU aggregates and pro
// forma rows (rowcache.go), and of what its pricer has looked up in the
// configuration since the last configuration event (memo).
type proformaCache struct {
	cacheTx
	persistent bool // kept across transactions (a Runner's), else for one batch
	skus       map[readmodel.SKUKey]*skuEntry
	rows       map[readmodel.ProformaKey]*rowEntry
	memo       *pricerMemo
}

func newProformaCache(persistent bool) *proformaCache {
	return &proformaCache{persistent: persistent, skus: map[readmodel.SKUKey]*skuEntry{},
		rows: map[readmodel.ProformaKey]*rowEntry{}, memo: newPricerMemo()}
}

func (c *proformaCache) reset() {
	clear(c.skus)
	clear(c.rows)
	c.memo = newPricerMemo()
}

func (c *proformaCache) begin(ctx context.Context, tx *sql.Tx) error {
	if !c.persistent {
		return nil
	}
	if err := c.cacheTx.begin(ctx, tx, c.reset); err != nil {
		return err
	}
	trim(c.skus)
	trim(c.rows)
	if len(c.memo.choices) > maxCachedRows {
		c.memo = newPricerMemo()
	}
	return nil
}

// storeSKU records that e's row, in the cache, now holds r.
func (c *proformaCache) storeSKU(e *skuEntry, r *readmodel.SKURow) {
	if !setStored(&e.list, r.ListCost) || !setStored(&e.billed, r.BilledCost) || !setStored(&e.qty, r.UsageQuantity) {
		delete(c.skus, r.SKUKey) // not a decimal: the next batch reads it, and fails as it would have
		return
	}
	e.records = r.RecordCount
}

// storeRow records that e's row, in the cache, now holds r.
func (c *proformaCache) storeRow(e *rowEntry, r *readmodel.ProformaRowData) {
	if !setStored(&e.list, r.ListCost) || !setStored(&e.billable, r.BillableCost) || !setStored(&e.proforma, r.ProformaCost) {
		delete(c.rows, r.ProformaKey) // not a decimal: the next batch reads it, and fails as it would have
		return
	}
	e.records = r.RecordCount
}

// dropUniverse forgets the rows of u, which a re-rate deletes and writes again.
func (c *proformaCache) dropUniverse(u readmodel.Universe) {
	for k := range c.rows {
		if k.Month == u.Month && k.PayerAccountID == u.PayerAccountID {
			delete(c.rows, k)
		}
	}
}

// loadSKU is the entry of an aggregate read from the database.
func loadSKU(k readmodel.SKUKey, id int64, r *readmodel.SKURow) (*skuEntry, error) {
	e := &skuEntry{id: id, records: r.RecordCount}
	for _, x := range []struct {
		d *apd.Decimal
		v string
	}{{&e.list, r.ListCost}, {&e.billed, r.BilledCost}, {&e.qty, r.UsageQuantity}} {
		if !setStored(x.d, x.v) {
			_, err := domain.ParseDecimal(x.v)
			return nil, fmt.Errorf("proforma: stored usage aggregate %+v: %w", k, err)
		}
	}
	return e, nil
}

// loadRow is the entry of a pro forma row read from the database.
func loadRow(k readmodel.ProformaKey, id int64, r *readmodel.ProformaRowData) (*rowEntry, error) {
	e := &rowEntry{id: id, records: r.RecordCount}
	for _, x := range []struct {
		d *apd.Decimal
		v string
	}{{&e.list, r.ListCost}, {&e.billable, r.BillableCost}, {&e.proforma, r.ProformaCost}} {
		if !setStored(x.d, x.v) {
			_, err := domain.ParseDecimal(x.v)
			return nil, fmt.Errorf("proforma: stored row %+v: %w", k, err)
		}
	}
	return e, nil
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

// pricer prices SKUs with the stored configuration, in one transaction.
type pricer struct {
	ctx context.Context
	st  *readmodel.ProformaStore
	*pricerMemo
}

// pricerMemo is every group choice, plan and transfer end a pricer has looked
// up, so it is valid only while the configuration does not change: the
// proforma projection keeps it across batches without configuration events
// (proformaCache.memo) and starts a new one otherwise.
type pricerMemo struct {
	choices map[choiceKey]groupChoice
	plans   map[string]domain.RatePlan
	ends    map[string]string // transfer id → end month ("" = open-ended)
}

func newPricerMemo() *pricerMemo {
	return &pricerMemo{choices: map[choiceKey]groupChoice{}, plans: map[string]domain.RatePlan{}, ends: map[string]string{}}
}

func newPricer(ctx context.Context, st *readmodel.ProformaStore, memo *pricerMemo) *pricer {
	return &pricer{ctx: ctx, st: st, pricerMemo: memo}
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
	key               readmodel.SKUKey
	list, billed, qty apd.Decimal
	records           uint64
}

// skuAggregate sums a batch's booked usage per SKU (readmodel.SKUKey).
type skuAggregate struct {
	rows        map[readmodel.SKUKey]*skuSum
	billed, qty apd.Decimal // parse buffers, reused for every record
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
	list, billed, q := &a.billed, &a.billed, &a.qty
	if r.GetListUnitPrice() != "" || !setPlainDecimal(&a.billed, r.GetBilledCost()) || !setPlainDecimal(&a.qty, r.GetQuantity()) {
		// Not the plain decimals setPlainDecimal parses without allocating
		// (as domain.ParseDecimal would), or a list price to multiply.
		c, err := domain.ChargeOf(r)
		if err != nil {
			return err
		}
		if q, err = domain.ParseDecimal(r.GetQuantity()); err != nil {
			return fmt.Errorf("quantity: %w", err)
		}
		list, billed = c.ListCost, c.BilledCost
	}
	s := a.rows[key]
	if s == nil {
		s = &skuSum{key: key}
		a.rows[key] = s
	}
	if err := addExact(&s.list, list); err != nil {
		return err
	}
	if err := addExact(&s.billed, billed); err != nil {
		return err
	}
	if err := addExact(&s.qty, q); err != nil {
		return err
	}
	s.records++
	return nil
}

// sorted returns the sums in key order.
func (a *skuAggregate) sorted() []*skuSum {
	return slices.SortedFunc(maps.Values(a.rows), func(x, y *skuSum) int { return compareSKUKeys(&x.key, &y.key) })
}

func compareSKUKeys(x, y *readmodel.SKUKey) int {
	if c := strings.Compare(x.Month, y.Month); c != 0 {
		return c
	}
	if c := strings.Compare(x.PayerAccountID, y.PayerAccountID); c != 0 {
		return c
	}
	if c := strings.Compare(x.DirectPayerAccountID, y.DirectPayerAccountID); c != 0 {
		return c
	}
	if c := strings.Compare(x.AccountID, y.AccountID); c != 0 {
		return c
	}
	if c := strings.Compare(x.Service, y.Service); c != 0 {
		return c
	}
	if c := strings.Compare(x.UsageType, y.UsageType); c != 0 {
		return c
	}
	if c := strings.Compare(x.Operation, y.Operation); c != 0 {
		return c
	}
	return cmpBool(x.FreeTier, y.FreeTier)
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

// rowInto sets out to the aggregate of s alone.
func (s *skuSum) rowInto(out *readmodel.SKURow) {
	*out = readmodel.SKURow{SKUKey: s.key, ListCost: domain.CanonicalDecimal(&s.list), BilledCost: domain.CanonicalDecimal(&s.billed),
		UsageQuantity: domain.CanonicalDecimal(&s.qty), RecordCount: s.records}
}

// addTo sets out to the aggregate after adding s to the stored one, prev.
func (s *skuSum) addTo(out *readmodel.SKURow, prev *skuEntry) error {
	k := s.key
	var sums [3]apd.Decimal
	sums[0].Set(&s.list)
	sums[1].Set(&s.billed)
	sums[2].Set(&s.qty)
	for i, d := range []*apd.Decimal{&prev.list, &prev.billed, &prev.qty} {
		if err := addExact(&sums[i], d); err != nil {
			return fmt.Errorf("proforma: usage aggregate %+v: %w", k, err)
		}
	}
	*out = readmodel.SKURow{SKUKey: k, ListCost: domain.CanonicalDecimal(&sums[0]), BilledCost: domain.CanonicalDecimal(&sums[1]),
		UsageQuantity: domain.CanonicalDecimal(&sums[2]), RecordCount: prev.records + s.records}
	return nil
}

// rowSum is the in-memory sum of what some SKUs add to one pro forma row.
type rowSum struct {
	key                      readmodel.ProformaKey
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
		s = &rowSum{key: k}
		r.sums[k] = s
	}
	for _, x := range [...]struct{ acc, v *apd.Decimal }{{&s.list, list}, {&s.billable, billable}, {&s.proforma, proforma}} {
		if err := addExact(x.acc, x.v); err != nil {
			return fmt.Errorf("proforma: row %+v: %w", k, err)
		}
	}
	s.records += records
	return nil
}

// sorted returns the sums in key order.
func (r *rowSums) sorted() []*rowSum {
	return slices.SortedFunc(maps.Values(r.sums), func(x, y *rowSum) int { return compareProformaKeys(&x.key, &y.key) })
}

func compareProformaKeys(x, y *readmodel.ProformaKey) int {
	if c := strings.Compare(x.Month, y.Month); c != 0 {
		return c
	}
	if c := strings.Compare(x.PayerAccountID, y.PayerAccountID); c != 0 {
		return c
	}
	if c := strings.Compare(x.OwnerAccountID, y.OwnerAccountID); c != 0 {
		return c
	}
	if c := strings.Compare(x.BillingGroupID, y.BillingGroupID); c != 0 {
		return c
	}
	if c := strings.Compare(x.AccountID, y.AccountID); c != 0 {
		return c
	}
	return strings.Compare(x.Service, y.Service)
}

// rowInto sets out to the stored row of s alone.
func (s *rowSum) rowInto(out *readmodel.ProformaRowData) {
	*out = readmodel.ProformaRowData{ProformaKey: s.key, ListCost: domain.CanonicalDecimal(&s.list),
		BillableCost: domain.CanonicalDecimal(&s.billable), ProformaCost: domain.CanonicalDecimal(&s.proforma), RecordCount: s.records}
}

// addTo sets out to the row after adding s to the stored row prev.
func (s *rowSum) addTo(out *readmodel.ProformaRowData, prev *rowEntry) error {
	k := s.key
	var sums [3]apd.Decimal
	sums[0].Set(&s.list)
	sums[1].Set(&s.billable)
	sums[2].Set(&s.proforma)
	for i, d := range []*apd.Decimal{&prev.list, &prev.billable, &prev.proforma} {
		if err := addExact(&sums[i], d); err != nil {
			return fmt.Errorf("proforma: row %+v: %w", k, err)
		}
	}
	*out = readmodel.ProformaRowData{ProformaKey: k, ListCost: domain.CanonicalDecimal(&sums[0]),
		BillableCost: domain.CanonicalDecimal(&sums[1]), ProformaCost: domain.CanonicalDecimal(&sums[2]),
		RecordCount: prev.records + s.records}
	return nil
}
