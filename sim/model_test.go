package sim

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The reference model: what the ledger should hold, computed from the rules of
// DESIGN.md with plain maps and apd decimals, independently of the domain,
// commands and projections packages (it uses only their error codes, the
// generated protobuf types and domain.InvoiceID, the published id scheme).
//
// Every command the simulation sends is first predicted here (code "" =
// accepted, else the rejection code), then executed on the real system; the
// model changes only with the outcome it predicted. Read models are computed
// from the model's state on demand (check_test.go compares them).

// model is the reference model's state.
type model struct {
	now time.Time
	// lenient lists the known bugs (sim_test.go) whose behaviour the model
	// expects instead of the rule's, so that the other checks keep running.
	lenient map[string]bool

	orgs    map[string]*mOrg  // management account → organization
	acctOrg map[string]string // account → management account
	xfers   map[string]*mXfer // transfer id → transfer

	rules  map[string]*mRule
	plans  map[string]*mPlan
	groups map[string]*mGroup
	items  map[string]*mItem

	sellers  map[string]mSeller // country → seller of record (X1)
	taxRates map[string][]mRate // jurisdiction → rates by effective day (X4)
	fx       map[string][]mRate // USD → currency rates by effective day (M1)
	profiles map[string]string  // payer + "|" + seller → currency (Y1)

	seen   map[string]*billingv1.UsageRecord // accepted usage by usage_id (U2)
	booked []*mBooked                        // every accepted record, in booking order
	dls    map[string]*mDL                   // dead letters by id (U4)

	closes map[string]*mClose          // payer + "|" + month (X5)
	frozen map[string]map[rowKey]*mRow // universe rows at its close (P4, R3)
	// frozenItems: the custom line items the payer owned at its close of
	// the month (payer + "|" + month), which the month's pro forma prices
	// from then on (P5, R3).
	frozenItems map[string]map[string]*mItem
	recv        map[string]*mRecv // payer → receivable (Y2, Y3)
}

type mOrg struct {
	id       string
	accounts []string // management account first
	tax      mTax     // the management account's tax settings (X1)
}

type mTax struct {
	country, region string
	exempt          bool
}

// jurisdiction is "CC" or "CC-REGION" (X4).
func (t mTax) jurisdiction() string {
	if t.region != "" {
		return t.country + "-" + t.region
	}
	return t.country
}

type mXfer struct {
	id, payer, source, plan string
	start                   string // month
	expires                 time.Time
	status                  string
	end                     string // end month once withdrawn
}

// live: counts for T4 (a pending invitation before its deadline, an accepted
// transfer, a withdrawn one not yet ended).
func (t *mXfer) live(now time.Time) bool {
	switch t.status {
	case "REQUESTED":
		return now.Before(t.expires)
	case "ACCEPTED":
		return true
	case "WITHDRAWN":
		return !now.After(monthEnd(t.end))
	}
	return false
}

// inForce: the payer pays for the source now or later (accepted, not ended).
func (t *mXfer) inForce(now time.Time) bool {
	return t.status == "ACCEPTED" || t.status == "WITHDRAWN" && !now.After(monthEnd(t.end))
}

// covers: the transfer makes its payer pay for month m (T6: whole months).
func (t *mXfer) covers(m string) bool {
	if t.status != "ACCEPTED" && t.status != "WITHDRAWN" {
		return false
	}
	return t.start <= m && (t.end == "" || m <= t.end)
}

type mRule struct {
	id, owner, typ, scope                string
	service, usageType, operation, party string
	modifier                             *apd.Decimal
	freeTier                             bool
}

type mPlan struct {
	id, owner string
	rules     []string
}

type mGroup struct {
	id, owner, primary, plan string
	accounts                 []string
	transfer, start          string // transfer billing groups (T8)
	deleted                  bool
}

type mItem struct {
	id, owner, group, account, name string
	credit                          bool
	flat, percent                   *apd.Decimal
	start, end                      string
	deleted                         bool
}

type mSeller struct{ name, currency string }

type mRate struct {
	from string // YYYY-MM-DD
	rate *apd.Decimal
}

// rateOn is the rate in force on day: the latest from on or before it.
func rateOn(rates []mRate, d string) (*apd.Decimal, string, bool) {
	for i := len(rates) - 1; i >= 0; i-- {
		if rates[i].from <= d {
			return rates[i].rate, rates[i].from, true
		}
	}
	return nil, "", false
}

func withRate(rates []mRate, r mRate) []mRate {
	rates = slices.DeleteFunc(slices.Clone(rates), func(o mRate) bool { return o.from == r.from })
	rates = append(rates, r)
	slices.SortFunc(rates, func(a, b mRate) int { return cmp.Compare(a.from, b.from) })
	return rates
}

// mBooked is one accepted usage record as booked (U3, T6, T7).
type mBooked struct {
	id, account, source, payer, direct string
	charge, booking                    string // months
	service, usageType, operation      string
	freeTier, correction               bool
	billed, list, qty                  *apd.Decimal
}

type mDL struct {
	id, reason, month string
	rec               *billingv1.UsageRecord
	resolved          bool
	resolvedMonth     string
}

type mClose struct {
	payer, month, date string
	records            uint64
	invoices           []*mInvoice
}

type mInvoice struct {
	id                                     string
	payer, month, source, seller, currency string
	lines                                  []*mLine
	taxes                                  []*mTaxEntry
	subtotal, tax, total                   *apd.Decimal
	paid                                   *apd.Decimal // settled, by payments and credit notes
	applied                                *apd.Decimal // a credit note's credit applied (nil: none)
	order                                  int
}

// creditNote: an invoice whose total is negative is a credit note (Y2): it
// owes nothing and carries −total of credit to apply.
func (i *mInvoice) creditNote() bool { return i.total.Sign() < 0 }

// remaining is a credit note's credit not applied yet (0 for an invoice).
func (i *mInvoice) remaining() *apd.Decimal {
	if !i.creditNote() {
		return zero()
	}
	r := neg(i.total)
	if i.applied != nil {
		r = sub(r, i.applied)
	}
	return r
}

// creditApplied is a credit note's credit applied so far.
func (i *mInvoice) creditApplied() *apd.Decimal {
	if i.applied == nil {
		return zero()
	}
	return i.applied
}

// outstanding never goes below zero: an invoice of zero or less owes nothing.
func (i *mInvoice) outstanding() *apd.Decimal {
	o := sub(i.total, i.paid)
	if o.Sign() < 0 {
		return zero()
	}
	return o
}

// shownOutstanding is what the read models show as outstanding.
func (m *model) shownOutstanding(i *mInvoice) *apd.Decimal {
	if m.lenient[bugCreditOutstanding] {
		return sub(i.total, i.paid)
	}
	return i.outstanding()
}

func (i *mInvoice) status() string {
	switch {
	case i.creditNote() && i.remaining().Sign() > 0:
		return "CREDIT"
	case i.creditNote():
		return "CREDIT_APPLIED"
	case i.outstanding().Sign() <= 0:
		return "PAID"
	case i.paid.Sign() > 0:
		return "PARTIALLY_PAID"
	}
	return "OPEN"
}

type mLine struct {
	account, service, charge string
	correction               bool
	billed, rate             *apd.Decimal
	converted, amount        *apd.Decimal
	records                  uint64
	jurisdiction, reason     string
}

type mTaxEntry struct {
	jurisdiction, reason string
	rate, taxable, tax   *apd.Decimal
}

type mRecv struct {
	invoices []*mInvoice
	payments []*mPayment
	credits  []*mCredit // credit note applications, in order; never changed once made
}

// mCredit is one ApplyCredit: seq is its place among its credit note's.
type mCredit struct {
	note, source, currency string
	seq                    int
	amount, remaining      *apd.Decimal
	allocs                 []mAlloc
}

type mPayment struct {
	id, currency                string
	amount, unapplied, refunded *apd.Decimal
	allocs                      []mAlloc
}

type mAlloc struct {
	invoice, source string
	amount, after   *apd.Decimal
}

func newModel(now time.Time, lenient map[string]bool) *model {
	return &model{
		now: now, lenient: lenient,
		orgs: map[string]*mOrg{}, acctOrg: map[string]string{}, xfers: map[string]*mXfer{},
		rules: map[string]*mRule{}, plans: map[string]*mPlan{}, groups: map[string]*mGroup{}, items: map[string]*mItem{},
		sellers: map[string]mSeller{}, taxRates: map[string][]mRate{}, fx: map[string][]mRate{}, profiles: map[string]string{},
		seen: map[string]*billingv1.UsageRecord{}, dls: map[string]*mDL{},
		closes: map[string]*mClose{}, frozen: map[string]map[rowKey]*mRow{}, frozenItems: map[string]map[string]*mItem{}, recv: map[string]*mRecv{},
	}
}

// clone returns a deep copy (races try both orders on copies). Decimals are
// never changed in place, so they are shared.
func (m *model) clone() *model {
	c := *m
	c.orgs = map[string]*mOrg{}
	for k, o := range m.orgs {
		x := *o
		x.accounts = slices.Clone(o.accounts)
		c.orgs[k] = &x
	}
	c.acctOrg = maps.Clone(m.acctOrg)
	c.xfers = cloneMap(m.xfers)
	c.rules = cloneMap(m.rules)
	c.plans = map[string]*mPlan{}
	for k, p := range m.plans {
		x := *p
		x.rules = slices.Clone(p.rules)
		c.plans[k] = &x
	}
	c.groups = map[string]*mGroup{}
	for k, g := range m.groups {
		x := *g
		x.accounts = slices.Clone(g.accounts)
		c.groups[k] = &x
	}
	c.items = cloneMap(m.items)
	c.sellers = maps.Clone(m.sellers)
	c.taxRates = maps.Clone(m.taxRates)
	c.fx = maps.Clone(m.fx)
	c.profiles = maps.Clone(m.profiles)
	c.seen = maps.Clone(m.seen)
	c.booked = slices.Clone(m.booked)
	c.dls = cloneMap(m.dls)
	c.closes = maps.Clone(m.closes) // a close never changes once made
	c.frozen = maps.Clone(m.frozen)
	c.frozenItems = maps.Clone(m.frozenItems) // a snapshot never changes once made
	c.recv = map[string]*mRecv{}
	for k, r := range m.recv {
		x := &mRecv{}
		for _, inv := range r.invoices {
			ci := *inv
			x.invoices = append(x.invoices, &ci)
		}
		for _, p := range r.payments {
			cp := *p
			cp.allocs = slices.Clone(p.allocs)
			x.payments = append(x.payments, &cp)
		}
		x.credits = slices.Clone(r.credits)
		c.recv[k] = x
	}
	// Closes share invoices with receivables: point them at the copies.
	for k, cl := range c.closes {
		r := c.recv[cl.payer]
		if r == nil || len(cl.invoices) == 0 {
			continue
		}
		x := *cl
		x.invoices = nil
		for _, inv := range cl.invoices {
			for _, ci := range r.invoices {
				if ci.id == inv.id {
					x.invoices = append(x.invoices, ci)
				}
			}
		}
		c.closes[k] = &x
	}
	return &c
}

func cloneMap[T any](m map[string]*T) map[string]*T {
	out := make(map[string]*T, len(m))
	for k, v := range m {
		x := *v
		out[k] = &x
	}
	return out
}

// ---------------------------------------------------------------------------
// Organizations and transfers (T1–T8).

func (m *model) sortedXfers() []*mXfer {
	return slices.SortedFunc(maps.Values(m.xfers), func(a, b *mXfer) int { return cmp.Compare(a.id, b.id) })
}

// directPayer is who pays org's bill in month ("" = itself), T6.
func (m *model) directPayer(org, month string) string {
	for _, t := range m.sortedXfers() {
		if t.source == org && t.covers(month) {
			return t.payer
		}
	}
	return ""
}

// billPayer is the bill receiver of org in month (the top of a chain, T7) and
// its direct payer; both are org when it pays its own bill.
func (m *model) billPayer(org, month string) (payer, direct string) {
	d := m.directPayer(org, month)
	if d == "" {
		return org, org
	}
	if top := m.directPayer(d, month); top != "" {
		return top, d
	}
	return d, d
}

func (m *model) livePayerLink(org string) *mXfer {
	for _, t := range m.sortedXfers() {
		if t.source == org && t.live(m.now) {
			return t
		}
	}
	return nil
}

func (m *model) hasLiveSources(org string) bool {
	for _, t := range m.xfers {
		if t.payer == org && t.live(m.now) {
			return true
		}
	}
	return false
}

// hasLiveGrandchildren: one of org's live sources has a live source itself.
func (m *model) hasLiveGrandchildren(org string) bool {
	for _, t := range m.xfers {
		if t.payer == org && t.live(m.now) && m.hasLiveSources(t.source) {
			return true
		}
	}
	return false
}

// invariants checks the transfers the ledger accepted (the model holds
// exactly those; checkTransfers compares them with the read model): a source
// has at most one live transfer (T4); in any month, following who pays whom
// never loops and never goes more than two levels up (T7), and no two
// transfers of one source cover the same month (T6).
func (m *model) invariants() error {
	live := map[string][]string{}
	for _, t := range m.sortedXfers() {
		if t.live(m.now) {
			live[t.source] = append(live[t.source], t.id)
		}
	}
	for src, ids := range live {
		if len(ids) > 1 {
			return fmt.Errorf("T4: source %s has %d live transfers %v", src, len(ids), ids)
		}
	}
	for mo := firstMonth; mo <= addMonths(monthOf(m.now), 13); mo = addMonths(mo, 1) {
		for _, org := range m.sortedOrgs() {
			var covering []string
			for _, t := range m.sortedXfers() {
				if t.source == org && t.covers(mo) {
					covering = append(covering, t.id)
				}
			}
			if len(covering) > 1 {
				return fmt.Errorf("T6: %s has %d payers in %s (transfers %v)", org, len(covering), mo, covering)
			}
			path := []string{org}
			for cur := org; ; {
				next := m.directPayer(cur, mo)
				if next == "" {
					break
				}
				if slices.Contains(path, next) {
					return fmt.Errorf("T7: a cycle in %s: %v → %s", mo, path, next)
				}
				path = append(path, next)
				if len(path) > 3 {
					return fmt.Errorf("T7: a chain deeper than two levels in %s: %v", mo, path)
				}
				cur = next
			}
		}
	}
	return nil
}

// mgmtCode is the rejection of a command naming id as an organization.
func (m *model) mgmtCode(id string) domain.Code {
	if m.orgs[id] != nil {
		return ""
	}
	if m.acctOrg[id] != "" {
		return domain.CodeInvalidArgument
	}
	return domain.CodeNotFound
}

func invitationDeadline(sent, start time.Time) time.Time {
	byAge := sent.Add(15 * 24 * time.Hour)
	byStart := start.AddDate(0, 0, -1)
	if byStart.Before(byAge) {
		return byStart
	}
	return byAge
}

// invite predicts InviteBillSource (T1, T2, T4, T7) and applies it.
func (m *model) invite(c *billingv1.InviteBillSource) domain.Code {
	payer, source := c.GetPayerAccountId(), c.GetSourceAccountId()
	if payer == source {
		return domain.CodeSourceAndTargetCannotMatch
	}
	start := monthStart(c.GetStartMonth())
	if !start.After(m.now) {
		return domain.CodeStartDateTooEarly
	}
	if c.GetStartMonth() > addMonths(monthOf(m.now), 12) {
		return domain.CodeStartDateTooLate
	}
	deadline := invitationDeadline(m.now, start)
	if !deadline.After(m.now) {
		return domain.CodeStartDateTooEarly
	}
	if m.xfers[c.GetTransferId()] != nil {
		return domain.CodeAlreadyExists
	}
	if code := m.mgmtCode(payer); code != "" {
		return code
	}
	if code := m.mgmtCode(source); code != "" {
		return code
	}
	if m.livePayerLink(source) != nil {
		return domain.CodeTransferAlreadyExists
	}
	pl := m.livePayerLink(payer)
	if pl != nil {
		if pl.payer == source {
			return domain.CodeTransferCycle
		}
		if tl := m.livePayerLink(pl.payer); tl != nil {
			if tl.payer == source {
				return domain.CodeTransferCycle
			}
			return domain.CodeChainTooDeep
		}
	}
	hasSources := m.hasLiveSources(source)
	if hasSources && pl != nil {
		return domain.CodeChainTooDeep
	}
	if hasSources && m.hasLiveGrandchildren(source) {
		return domain.CodeChainTooDeep
	}
	m.xfers[c.GetTransferId()] = &mXfer{id: c.GetTransferId(), payer: payer, source: source, plan: c.GetPricingPlanId(),
		start: c.GetStartMonth(), expires: deadline, status: "REQUESTED"}
	return ""
}

// transition predicts Accept/Decline/Cancel/ExpireTransfer (T3, T8) and applies it.
func (m *model) transition(tid, command string) domain.Code {
	t := m.xfers[tid]
	if t == nil {
		return domain.CodeNotFound
	}
	if t.status != "REQUESTED" {
		return domain.CodeInvalidStateTransition
	}
	expired := !m.now.Before(t.expires)
	if command == "ExpireTransfer" && expired && m.lenient[bugExpireTwice] && m.expireHitsBug(t) {
		return codeSkip
	}
	if command == "ExpireTransfer" {
		if !expired {
			return domain.CodeInvalidStateTransition
		}
	} else if expired {
		return domain.CodeInvitationExpired
	}
	switch command {
	case "AcceptTransfer":
		t.status = "ACCEPTED"
		gid := domain.TransferGroupPrefix + tid
		m.groups[gid] = &mGroup{id: gid, owner: t.payer, primary: t.source, plan: t.plan,
			accounts: slices.Clone(m.orgs[t.source].accounts), transfer: tid, start: t.start}
	case "DeclineTransfer":
		t.status = "DECLINED"
	case "CancelTransfer":
		t.status = "CANCELED"
	case "ExpireTransfer":
		t.status = "EXPIRED"
	}
	return ""
}

// codeSkip: the command would meet a known bug; the simulation does not send it.
const codeSkip domain.Code = "SKIP (known bug)"

// expireHitsBug: the payer of an expired invitation is paid for by its source
// under a live transfer (bugExpireTwice).
func (m *model) expireHitsBug(t *mXfer) bool {
	pl := m.livePayerLink(t.payer)
	return pl != nil && pl.payer == t.source
}

// withdraw predicts WithdrawTransfer (T5) and applies it.
func (m *model) withdraw(c *billingv1.WithdrawTransfer) domain.Code {
	t := m.xfers[c.GetTransferId()]
	if t == nil {
		return domain.CodeNotFound
	}
	by := c.GetWithdrawnBy()
	if by != "" && by != t.payer && by != t.source {
		return domain.CodeInvalidArgument
	}
	if t.status != "ACCEPTED" {
		return domain.CodeInvalidStateTransition
	}
	cur := monthOf(m.now)
	end := c.GetEndMonth()
	if end != cur && end != addMonths(cur, 1) || end < t.start {
		return domain.CodeEndDateInvalid
	}
	t.status, t.end = "WITHDRAWN", end
	return ""
}

// register predicts RegisterOrganization and applies it (tax settings follow).
func (m *model) register(c *billingv1.RegisterOrganization) domain.Code {
	id := c.GetManagementAccountId()
	if m.orgs[id] != nil {
		return domain.CodeAlreadyExists
	}
	for _, a := range append([]string{id}, c.GetMemberAccountIds()...) {
		if m.acctOrg[a] != "" {
			return domain.CodeAlreadyExists
		}
	}
	o := &mOrg{id: id, accounts: append([]string{id}, c.GetMemberAccountIds()...)}
	m.orgs[id] = o
	for _, a := range o.accounts {
		m.acctOrg[a] = id
	}
	return ""
}

func (m *model) addAccount(c *billingv1.AddAccount) domain.Code {
	o := m.orgs[c.GetManagementAccountId()]
	if o == nil {
		return domain.CodeNotFound
	}
	if m.acctOrg[c.GetAccountId()] != "" {
		return domain.CodeAlreadyExists
	}
	o.accounts = append(slices.Clone(o.accounts), c.GetAccountId())
	m.acctOrg[c.GetAccountId()] = o.id
	return ""
}

func (m *model) sortedOrgs() []string { return slices.Sorted(maps.Keys(m.orgs)) }

// ---------------------------------------------------------------------------
// Pricing (P1–P5).

func (m *model) createRule(r *mRule) domain.Code {
	if m.rules[r.id] != nil {
		return domain.CodeAlreadyExists
	}
	x := *r
	m.rules[r.id] = &x
	return ""
}

func (m *model) updateRule(c *billingv1.UpdatePricingRule) domain.Code {
	r := m.rules[c.GetPricingRuleId()]
	if r == nil {
		return domain.CodeNotFound
	}
	x := *r
	if c.GetModifierPercentage() != "" {
		if r.typ == "TIERING" {
			return domain.CodeInvalidArgument
		}
		x.modifier = dec(c.GetModifierPercentage())
	}
	if c.FreeTierActivated != nil {
		if r.typ != "TIERING" {
			return domain.CodeInvalidArgument
		}
		x.freeTier = c.GetFreeTierActivated()
	}
	m.rules[r.id] = &x
	return ""
}

func (m *model) createPlan(id, owner string, rules []string) domain.Code {
	if m.plans[id] != nil {
		return domain.CodeAlreadyExists
	}
	m.plans[id] = &mPlan{id: id, owner: owner, rules: slices.Clone(rules)}
	return ""
}

func (m *model) associate(plan, rule string) domain.Code {
	p, r := m.plans[plan], m.rules[rule]
	if p == nil || r == nil {
		return domain.CodeNotFound
	}
	if slices.Contains(p.rules, rule) {
		return domain.CodeAlreadyExists
	}
	if r.owner != p.owner {
		return domain.CodePermissionDenied
	}
	for _, id := range p.rules {
		o := m.rules[id]
		if (o.typ == "TIERING") == (r.typ == "TIERING") && o.scope == r.scope && o.service == r.service &&
			o.usageType == r.usageType && o.operation == r.operation && o.party == r.party {
			return domain.CodeInvalidArgument
		}
	}
	p.rules = append(slices.Clone(p.rules), rule)
	return ""
}

func (m *model) disassociate(plan, rule string) domain.Code {
	p := m.plans[plan]
	if p == nil {
		return domain.CodeNotFound
	}
	if !slices.Contains(p.rules, rule) {
		return domain.CodeNotFound
	}
	p.rules = slices.DeleteFunc(slices.Clone(p.rules), func(x string) bool { return x == rule })
	return ""
}

// usablePlan: a plan of the owner or a managed one.
func (m *model) usablePlan(owner, plan string) domain.Code {
	if plan == domain.PlanBasic || plan == domain.PlanPassthrough {
		return ""
	}
	p := m.plans[plan]
	if p == nil {
		return domain.CodeNotFound
	}
	if p.owner != owner {
		return domain.CodePermissionDenied
	}
	return ""
}

// paysFor: owner may group the accounts of org (P4): it is org, or pays for
// it directly or at the top of a chain under transfers in force.
func (m *model) paysFor(owner, org string) bool {
	if owner == org {
		return true
	}
	for _, t := range m.xfers {
		if t.source != org || !t.inForce(m.now) {
			continue
		}
		if t.payer == owner {
			return true
		}
		for _, t2 := range m.xfers {
			if t2.source == t.payer && t2.payer == owner && t2.inForce(m.now) {
				return true
			}
		}
	}
	return false
}

// admit predicts an account joining custom group g (P4): an account of an
// organization the owner is or pays for, in no other live custom group of the
// owner (a custom group overrides the transfer billing groups).
func (m *model) admit(g *mGroup, account string) domain.Code {
	org := m.acctOrg[account]
	if org == "" {
		return domain.CodeNotFound
	}
	if !m.paysFor(g.owner, org) {
		return domain.CodeFailedPrecondition
	}
	for _, h := range m.groups {
		if h.id != g.id && !h.deleted && h.transfer == "" && h.owner == g.owner && slices.Contains(h.accounts, account) {
			return domain.CodeFailedPrecondition
		}
	}
	return ""
}

func (m *model) createGroup(c *billingv1.CreateBillingGroup) domain.Code {
	if m.groups[c.GetBillingGroupId()] != nil {
		return domain.CodeAlreadyExists
	}
	if code := m.mgmtCode(c.GetOwnerAccountId()); code != "" {
		return code
	}
	if code := m.usablePlan(c.GetOwnerAccountId(), c.GetPricingPlanId()); code != "" {
		return code
	}
	g := &mGroup{id: c.GetBillingGroupId(), owner: c.GetOwnerAccountId(), primary: c.GetPrimaryAccountId(), plan: c.GetPricingPlanId()}
	g.accounts = append([]string{g.primary}, slices.DeleteFunc(slices.Clone(c.GetAccountIds()), func(a string) bool { return a == g.primary })...)
	for _, a := range g.accounts {
		if code := m.admit(g, a); code != "" {
			return code
		}
	}
	m.groups[g.id] = g
	return ""
}

func (m *model) liveGroup(id string) (*mGroup, domain.Code) {
	g := m.groups[id]
	if g == nil || g.deleted {
		return nil, domain.CodeNotFound
	}
	return g, ""
}

func (m *model) updateGroupPlan(id, plan string) domain.Code {
	g, code := m.liveGroup(id)
	if code != "" {
		return code
	}
	cur := g.plan
	if cur == "" {
		cur = domain.PlanBasic
	}
	if plan != cur {
		if code := m.usablePlan(g.owner, plan); code != "" {
			return code
		}
	}
	g.plan = plan
	return ""
}

func (m *model) associateAccount(id, account string) domain.Code {
	g, code := m.liveGroup(id)
	if code != "" {
		return code
	}
	if slices.Contains(g.accounts, account) {
		return domain.CodeAlreadyExists
	}
	if g.transfer != "" {
		panic("sim: the generator associates accounts to custom groups only")
	}
	if code := m.admit(g, account); code != "" {
		return code
	}
	g.accounts = append(slices.Clone(g.accounts), account)
	return ""
}

func (m *model) disassociateAccount(id, account string) domain.Code {
	g, code := m.liveGroup(id)
	if code != "" {
		return code
	}
	if !slices.Contains(g.accounts, account) {
		return domain.CodeNotFound
	}
	if account == g.primary {
		return domain.CodeFailedPrecondition
	}
	for _, it := range m.items {
		if !it.deleted && it.group == id && it.account == account {
			return domain.CodeFailedPrecondition
		}
	}
	g.accounts = slices.DeleteFunc(slices.Clone(g.accounts), func(a string) bool { return a == account })
	return ""
}

func (m *model) deleteGroup(id string) domain.Code {
	g, code := m.liveGroup(id)
	if code != "" {
		return code
	}
	for _, it := range m.items {
		if !it.deleted && it.group == id {
			return domain.CodeFailedPrecondition
		}
	}
	g.deleted = true
	return ""
}

func (m *model) createItem(it *mItem) domain.Code {
	if m.items[it.id] != nil {
		return domain.CodeAlreadyExists
	}
	g, code := m.liveGroup(it.group)
	if code != "" {
		return code
	}
	x := *it
	x.owner = g.owner
	if x.account == "" {
		x.account = g.primary
	}
	if !slices.Contains(g.accounts, x.account) {
		return domain.CodeFailedPrecondition
	}
	m.items[it.id] = &x
	return ""
}

func (m *model) updateItemFlat(id string, amount *apd.Decimal) domain.Code {
	it := m.items[id]
	if it == nil || it.deleted {
		return domain.CodeNotFound
	}
	x := *it
	x.flat, x.percent = amount, nil
	m.items[id] = &x
	return ""
}

func (m *model) deleteItem(id string) domain.Code {
	it := m.items[id]
	if it == nil || it.deleted {
		return domain.CodeNotFound
	}
	x := *it
	x.deleted = true
	m.items[id] = &x
	return ""
}

// groupCovers: a transfer billing group prices the months of its transfer.
func (m *model) groupCovers(g *mGroup, month string) bool {
	if month < g.start {
		return false
	}
	t := m.xfers[g.transfer]
	return t.end == "" || month <= t.end
}

// choose is the group of owner that prices account in month (P4, T8): the
// owner's custom group holding it, else its transfer billing group holding it
// whose transfer covers the month, else, at the top of a chain (via = the
// reseller), its transfer billing group of via; none: "" at list (BASIC).
func (m *model) choose(owner, account, month, via string) (string, string) {
	ids := slices.Sorted(maps.Keys(m.groups))
	var tbg *mGroup
	for _, id := range ids {
		g := m.groups[id]
		if g.deleted || g.owner != owner || !slices.Contains(g.accounts, account) {
			continue
		}
		if g.transfer == "" {
			return g.id, g.plan
		}
		if tbg == nil && m.groupCovers(g, month) {
			tbg = g
		}
	}
	if tbg != nil {
		return tbg.id, tbg.plan
	}
	if via != "" {
		for _, id := range ids {
			g := m.groups[id]
			if !g.deleted && g.owner == owner && g.transfer != "" && g.primary == via && m.groupCovers(g, month) {
				return g.id, g.plan
			}
		}
	}
	return "", domain.PlanBasic
}

// rate prices one record with a plan (P2, P3): PASSTHROUGH at its billed cost,
// free tier under a TIERING rule at 0 or list, else list × the factor of the
// most granular matching rule (SKU with operation > SKU > SERVICE >
// BILLING_ENTITY > GLOBAL), else list. A plan that does not exist is BASIC.
func (m *model) rate(planID string, b *mBooked, billed *apd.Decimal) *apd.Decimal {
	switch planID {
	case domain.PlanPassthrough:
		return billed
	case "", domain.PlanBasic:
		return b.list
	}
	p := m.plans[planID]
	if p == nil {
		return b.list
	}
	var rules []*mRule
	for _, id := range p.rules {
		rules = append(rules, m.rules[id])
	}
	if b.freeTier {
		for _, r := range rules {
			if r.typ == "TIERING" {
				if r.freeTier {
					return zero()
				}
				return b.list
			}
		}
	}
	match := func(scope string, ok func(r *mRule) bool) *mRule {
		for _, r := range rules {
			if r.typ != "TIERING" && r.scope == scope && ok(r) {
				return r
			}
		}
		return nil
	}
	r := match("SKU", func(r *mRule) bool {
		return r.service == b.service && r.usageType == b.usageType && r.operation == b.operation
	})
	if r == nil {
		r = match("SKU", func(r *mRule) bool { return r.service == b.service && r.usageType == b.usageType && r.operation == "" })
	}
	if r == nil {
		r = match("SERVICE", func(r *mRule) bool { return r.service == b.service })
	}
	if r == nil {
		r = match("BILLING_ENTITY", func(r *mRule) bool { return r.party == "AWS" })
	}
	if r == nil {
		r = match("GLOBAL", func(*mRule) bool { return true })
	}
	if r == nil {
		return b.list
	}
	f := pct(r.modifier)
	if r.typ == "MARKUP" {
		f = add(dec("1"), f)
	} else {
		f = sub(dec("1"), f)
	}
	return mul(b.list, f)
}

// rowKey is one line of the pro forma view: a usage row (item "") or a custom
// line item (service = its name).
type rowKey struct{ owner, group, account, service, item string }

type mRow struct {
	list, billable, proforma *apd.Decimal
	records                  uint64
}

func addRow(rows map[rowKey]*mRow, k rowKey, list, billable, proforma *apd.Decimal, n uint64) {
	r := rows[k]
	if r == nil {
		r = &mRow{list: zero(), billable: zero(), proforma: zero()}
		rows[k] = r
	}
	r.list, r.billable, r.proforma = add(r.list, list), add(r.billable, billable), add(r.proforma, proforma)
	r.records += n
}

// universeRows prices the usage a bill receiver booked into month with the
// current configuration: at its level, and in a chain at the reseller's too,
// with the distributor's pro forma as the reseller's billable cost (P7).
func (m *model) universeRows(month, payer string) map[rowKey]*mRow {
	rows := map[rowKey]*mRow{}
	for _, b := range m.booked {
		if b.booking != month || b.payer != payer {
			continue
		}
		via := ""
		if b.direct != b.payer {
			via = b.direct
		}
		g, plan := m.choose(b.payer, b.account, month, via)
		top := m.rate(plan, b, b.billed)
		addRow(rows, rowKey{owner: b.payer, group: g, account: b.account, service: b.service}, b.list, b.billed, top, 1)
		if via == "" {
			continue
		}
		g2, plan2 := m.choose(via, b.account, month, "")
		addRow(rows, rowKey{owner: via, group: g2, account: b.account, service: b.service}, b.list, top, m.rate(plan2, b, top), 1)
	}
	return rows
}

// proformaRows is the pro forma view of month (R1, P5): usage rows of every
// universe merged, then one row per custom line item charging the month,
// priced on its group's pro forma usage cost of the month.
func (m *model) proformaRows(month string) map[rowKey]*mRow {
	universes := map[string]bool{}
	for _, b := range m.booked {
		if b.booking == month {
			universes[b.payer] = true
		}
	}
	rows := map[rowKey]*mRow{}
	for _, payer := range slices.Sorted(maps.Keys(universes)) {
		u, ok := m.frozen[payer+"|"+month]
		if !ok {
			u = m.universeRows(month, payer)
		}
		for k, r := range u {
			addRow(rows, k, r.list, r.billable, r.proforma, r.records)
		}
	}
	for _, it := range m.monthItems(month) {
		if it.deleted || month < it.start || it.end != "" && month > it.end {
			continue
		}
		amount := it.flat
		if amount == nil {
			base := zero()
			for k, r := range rows {
				if k.item == "" && k.group == it.group {
					base = add(base, r.proforma)
				}
			}
			amount = mul(base, pct(it.percent))
		}
		if it.credit {
			amount = neg(amount)
		}
		addRow(rows, rowKey{owner: it.owner, group: it.group, account: it.account, service: it.name, item: it.id}, zero(), zero(), amount, 0)
	}
	return rows
}

// monthItems are the custom line items that price month, by id: an owner's
// as they stood at its close of the month, if it closed it (P5, R3), else
// the live ones.
func (m *model) monthItems(month string) []*mItem {
	byID := map[string]*mItem{}
	for id, it := range m.items {
		if _, closed := m.frozenItems[it.owner+"|"+month]; !closed {
			byID[id] = it
		}
	}
	for key, items := range m.frozenItems {
		if strings.HasSuffix(key, "|"+month) {
			maps.Copy(byID, items)
		}
	}
	out := make([]*mItem, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		out = append(out, byID[id])
	}
	return out
}

// costRows is the cost report of month (P6): per billing group (owner and
// group of the key), billable and pro forma cost; margin = pro forma − billable.
func (m *model) costRows(month string) map[rowKey]*mRow {
	out := map[rowKey]*mRow{}
	for k, r := range m.proformaRows(month) {
		addRow(out, rowKey{owner: k.owner, group: k.group}, zero(), r.billable, r.proforma, 0)
	}
	return out
}

// ---------------------------------------------------------------------------
// Usage (U2–U4).

// usageItem is one record to ingest, possibly re-driving a dead letter.
type usageItem struct {
	rec       *billingv1.UsageRecord
	redriveOf string
}

// expect is the predicted outcome of one record.
type expect struct {
	status, reason string
	booking        string // accepted: the booking month
	correction     bool
}

// validate is the part of U4's checks the generator can break: the record's
// own content.
func (m *model) validate(r *billingv1.UsageRecord) string {
	if r.GetChargePeriodStart().AsTime().After(m.now) {
		return domain.ReasonInvalidPeriod
	}
	if dec(r.GetQuantity()).Sign() < 0 {
		return domain.ReasonInvalidQuantity
	}
	if r.GetCurrency() != "USD" {
		return domain.ReasonUnknownCurrency
	}
	return ""
}

// ingest predicts a batch (U2: exactly once by usage_id for ever; U3: a
// closed month books into the payer's next open month; U4: dead letters in
// the current month) and applies it. Dead letters get their ids later
// (setDeadLetterIDs).
func (m *model) ingest(items []usageItem) []expect {
	out := make([]expect, len(items))
	nowMonth := monthOf(m.now)
	resolve := func(id, month string) {
		if dl := m.dls[id]; dl != nil {
			dl.resolved, dl.resolvedMonth = true, month
		}
	}
	for i, it := range items {
		r := it.rec
		reject := func(reason string) {
			out[i] = expect{status: "REJECTED", reason: reason}
			if it.redriveOf != "" {
				resolve(it.redriveOf, nowMonth)
			}
		}
		if reason := m.validate(r); reason != "" {
			reject(reason)
			continue
		}
		if prev := m.seen[r.GetUsageId()]; prev != nil {
			if proto.Equal(prev, r) {
				out[i] = expect{status: "DUPLICATE"}
				if it.redriveOf != "" {
					resolve(it.redriveOf, nowMonth)
				}
			} else {
				reject(domain.ReasonUsageIDConflict)
			}
			continue
		}
		org := m.acctOrg[r.GetAccountId()]
		if org == "" {
			reject(domain.ReasonUnknownAccount)
			continue
		}
		charge := monthOf(r.GetChargePeriodStart().AsTime())
		payer, direct := m.billPayer(org, charge)
		booking := charge
		for m.closes[payer+"|"+booking] != nil {
			booking = addMonths(booking, 1)
		}
		list := dec(r.GetBilledCost())
		if r.GetListUnitPrice() != "" {
			list = mul(dec(r.GetQuantity()), dec(r.GetListUnitPrice()))
		}
		m.seen[r.GetUsageId()] = r
		m.booked = append(m.booked, &mBooked{id: r.GetUsageId(), account: r.GetAccountId(), source: org, payer: payer, direct: direct,
			charge: charge, booking: booking, service: r.GetService(), usageType: r.GetUsageType(), operation: r.GetOperation(),
			freeTier: r.GetFreeTier(), correction: booking != charge, billed: dec(r.GetBilledCost()), list: list, qty: dec(r.GetQuantity())})
		out[i] = expect{status: "ACCEPTED", booking: booking, correction: booking != charge}
		if it.redriveOf != "" {
			resolve(it.redriveOf, booking)
		}
	}
	return out
}

// addDeadLetter records a dead letter the system created for a predicted rejection.
func (m *model) addDeadLetter(id, reason string, rec *billingv1.UsageRecord) {
	m.dls[id] = &mDL{id: id, reason: reason, month: monthOf(m.now), rec: rec}
}

// billableRows is the billable view of month (R1): month × payer × source ×
// account × service → billed cost, quantity, records.
func (m *model) billableRows(month string) map[[5]string]*mRow {
	out := map[[5]string]*mRow{}
	for _, b := range m.booked {
		if b.booking != month {
			continue
		}
		k := [5]string{b.payer, b.source, b.account, b.service, "USD"}
		r := out[k]
		if r == nil {
			r = &mRow{list: zero(), billable: zero(), proforma: zero()}
			out[k] = r
		}
		r.billable = add(r.billable, b.billed)
		r.list = add(r.list, b.qty) // the row's usage quantity
		r.records++
	}
	return out
}

// ---------------------------------------------------------------------------
// Tax, close and invoices (X1–X5, M1).

// effectiveTax is an account's tax settings for month (X2): its top payer's
// while a transfer is in force for the month, else its organization's.
func (m *model) effectiveTax(account, month string) mTax {
	org := m.acctOrg[account]
	if payer, _ := m.billPayer(org, month); payer != org {
		return m.orgs[payer].tax
	}
	return m.orgs[org].tax
}

// closeMonth predicts CloseMonth (X5, M1) and applies it: the invoices, the
// close markers that make later usage a correction (U3), the receivable.
func (m *model) closeMonth(payer, month string) domain.Code {
	if code := m.mgmtCode(payer); code != "" {
		return code
	}
	if m.now.Before(monthStart(addMonths(month, 1))) {
		return domain.CodeMonthNotEnded
	}
	key := payer + "|" + month
	if m.closes[key] != nil {
		return domain.CodeMonthAlreadyClosed
	}
	today := day(m.now)
	type lineKey struct {
		source, account, service, charge string
		correction                       bool
	}
	lines := map[lineKey]*mLine{}
	var records uint64
	for _, b := range m.booked {
		if b.booking != month || b.payer != payer {
			continue
		}
		k := lineKey{b.source, b.account, b.service, b.charge, b.correction}
		l := lines[k]
		if l == nil {
			l = &mLine{account: b.account, service: b.service, charge: b.charge, correction: b.correction, billed: zero()}
			lines[k] = l
		}
		l.billed = add(l.billed, b.billed)
		l.records++
		records++
	}
	type invKey struct{ source, seller string }
	byInvoice := map[invKey][]*mLine{}
	taxOf := map[*mLine]mTax{}
	for k, l := range lines {
		t := m.effectiveTax(l.account, month)
		taxOf[l] = t
		ik := invKey{k.source, m.sellers[t.country].name}
		byInvoice[ik] = append(byInvoice[ik], l)
	}
	keys := slices.SortedFunc(maps.Keys(byInvoice), func(a, b invKey) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.seller, b.seller))
	})
	cl := &mClose{payer: payer, month: month, date: today, records: records}
	r := m.recv[payer]
	if r == nil {
		r = &mRecv{}
	}
	for _, ik := range keys {
		ls := byInvoice[ik]
		slices.SortFunc(ls, func(a, b *mLine) int {
			return cmp.Or(cmp.Compare(a.account, b.account), cmp.Compare(a.service, b.service),
				cmpBool(a.correction, b.correction), cmp.Compare(a.charge, b.charge))
		})
		var seller mSeller
		for _, s := range m.sellers {
			if s.name == ik.seller {
				seller = s
			}
		}
		currency := seller.currency
		if c, ok := m.profiles[payer+"|"+ik.seller]; ok {
			currency = c
		}
		minor := minorUnits[currency]
		rate := dec("1")
		if currency != "USD" {
			var ok bool
			if rate, _, ok = rateOn(m.fx[currency], today); !ok {
				panic("sim: the model has no FX rate; the generator always sets one")
			}
		}
		inv := &mInvoice{id: domain.InvoiceID(payer, mustMonth(month), ik.source, "", ik.seller), payer: payer, month: month,
			source: ik.source, seller: ik.seller, currency: currency, subtotal: zero(), paid: zero(), order: len(r.invoices)}
		type taxKey struct{ jurisdiction, reason string }
		taxable := map[taxKey]*apd.Decimal{}
		for _, l := range ls {
			t := taxOf[l]
			l.rate = rate
			l.converted = mul(l.billed, rate)
			l.amount = roundTo(l.converted, minor)
			l.jurisdiction = t.jurisdiction()
			if t.exempt {
				l.reason = domain.TaxReasonExempt
			}
			inv.lines = append(inv.lines, l)
			inv.subtotal = add(inv.subtotal, l.amount)
			tk := taxKey{l.jurisdiction, l.reason}
			if taxable[tk] == nil {
				taxable[tk] = zero()
			}
			taxable[tk] = add(taxable[tk], l.amount)
		}
		inv.tax = zero()
		for _, tk := range slices.SortedFunc(maps.Keys(taxable), func(a, b taxKey) int {
			return cmp.Or(cmp.Compare(a.jurisdiction, b.jurisdiction), cmp.Compare(a.reason, b.reason))
		}) {
			e := &mTaxEntry{jurisdiction: tk.jurisdiction, reason: tk.reason, rate: zero(), taxable: taxable[tk], tax: zero()}
			if tk.reason == "" {
				p, _, ok := rateOn(m.taxRates[tk.jurisdiction], today)
				if !ok {
					country, _, _ := strings.Cut(tk.jurisdiction, "-")
					p, _, ok = rateOn(m.taxRates[country], today)
				}
				if !ok {
					panic("sim: the model has no tax rate; the generator always sets one")
				}
				e.rate = p
				e.tax = roundTo(mul(taxable[tk], pct(p)), minor)
			}
			inv.taxes = append(inv.taxes, e)
			inv.tax = add(inv.tax, e.tax)
		}
		inv.total = add(inv.subtotal, inv.tax)
		cl.invoices = append(cl.invoices, inv)
		r.invoices = append(r.invoices, inv)
	}
	if len(cl.invoices) > 0 {
		m.recv[payer] = r
	}
	// A closed month keeps its pro forma (P4): the universe is priced with
	// the configuration in force before its close (R3), for ever.
	m.frozen[key] = m.universeRows(month, payer)
	items := map[string]*mItem{}
	for id, it := range m.items {
		if it.owner == payer && !it.deleted {
			items[id] = it // items are replaced, never changed in place
		}
	}
	m.frozenItems[key] = items
	m.closes[key] = cl
	return ""
}

func mustMonth(s string) domain.Month {
	mm, err := domain.ParseMonth(s)
	if err != nil {
		panic(err)
	}
	return mm
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// ---------------------------------------------------------------------------
// Payments (Y2, Y3).

// decimalsOK: an amount has at most the currency's minor unit of decimals.
func decimalsOK(s, currency string) bool {
	var r apd.Decimal
	r.Reduce(dec(s))
	return r.Exponent >= -minorUnits[currency]
}

// recordPayment predicts RecordPayment and applies it: to the named invoices
// in order, or the payer's open invoices in the currency oldest first (by
// month, then posting order); what is left is unapplied credit.
func (m *model) recordPayment(c *billingv1.RecordPayment) domain.Code {
	if !decimalsOK(c.GetAmount(), c.GetCurrency()) {
		return domain.CodeInvalidArgument
	}
	payer := c.GetPayerAccountId()
	if code := m.mgmtCode(payer); code != "" {
		return code
	}
	r := m.recv[payer]
	if r == nil {
		r = &mRecv{}
	}
	for _, p := range r.payments {
		if p.id == c.GetPaymentId() {
			return domain.CodeAlreadyExists
		}
	}
	var targets []*mInvoice
	if len(c.GetInvoiceIds()) > 0 {
		for _, id := range c.GetInvoiceIds() {
			var inv *mInvoice
			for _, x := range r.invoices {
				if x.id == id {
					inv = x
				}
			}
			switch {
			case inv == nil:
				return domain.CodeNotFound
			case inv.creditNote():
				return domain.CodeFailedPrecondition // apply it with ApplyCredit
			case inv.currency != c.GetCurrency():
				return domain.CodeCurrencyMismatch
			case inv.outstanding().Sign() <= 0:
				return domain.CodeFailedPrecondition
			}
			targets = append(targets, inv)
		}
	} else {
		any, in := false, false
		for _, x := range r.invoices {
			any = true
			in = in || x.currency == c.GetCurrency()
			if x.currency == c.GetCurrency() && x.outstanding().Sign() > 0 {
				targets = append(targets, x)
			}
		}
		if any && !in {
			return domain.CodeCurrencyMismatch
		}
		slices.SortStableFunc(targets, func(a, b *mInvoice) int {
			return cmp.Or(cmp.Compare(a.month, b.month), cmp.Compare(a.order, b.order))
		})
	}
	p := &mPayment{id: c.GetPaymentId(), currency: c.GetCurrency(), amount: dec(c.GetAmount()), refunded: zero()}
	remaining := p.amount
	for _, inv := range targets {
		if remaining.Sign() <= 0 {
			break
		}
		out := inv.outstanding()
		applied := minDec(remaining, out)
		remaining = sub(remaining, applied)
		inv.paid = add(inv.paid, applied)
		p.allocs = append(p.allocs, mAlloc{invoice: inv.id, source: inv.source, amount: applied, after: sub(out, applied)})
	}
	p.unapplied = remaining
	r.payments = append(r.payments, p)
	m.recv[payer] = r
	return ""
}

// openInvoices are r's invoices in currency with something outstanding, oldest
// first: by month, then posting order (a credit note owes nothing).
func (r *mRecv) openInvoices(currency string) []*mInvoice {
	var out []*mInvoice
	for _, x := range r.invoices {
		if x.currency == currency && x.outstanding().Sign() > 0 {
			out = append(out, x)
		}
	}
	slices.SortStableFunc(out, func(a, b *mInvoice) int {
		return cmp.Or(cmp.Compare(a.month, b.month), cmp.Compare(a.order, b.order))
	})
	return out
}

// applyCredit predicts ApplyCredit and applies it: a credit note's remaining
// credit (all, or the amount) settles the named invoices in order, or the
// payer's open invoices in its currency oldest first; what they do not need
// stays on the credit note. The checks go in the ledger's order.
func (m *model) applyCredit(c *billingv1.ApplyCredit) domain.Code {
	seen := map[string]bool{}
	for _, id := range c.GetInvoiceIds() {
		if seen[id] {
			return domain.CodeInvalidArgument // listed twice
		}
		seen[id] = true
	}
	payer := c.GetPayerAccountId()
	if code := m.mgmtCode(payer); code != "" {
		return code
	}
	r := m.recv[payer]
	if r == nil {
		return domain.CodeNotFound
	}
	find := func(id string) *mInvoice {
		for _, x := range r.invoices {
			if x.id == id {
				return x
			}
		}
		return nil
	}
	note := find(c.GetCreditNoteId())
	switch {
	case note == nil:
		return domain.CodeNotFound
	case !note.creditNote():
		return domain.CodeFailedPrecondition
	case note.remaining().Sign() <= 0:
		return domain.CodeFailedPrecondition // no credit left
	}
	left := note.remaining()
	amount := left
	if c.GetAmount() != "" {
		amount = dec(c.GetAmount())
		if amount.Sign() <= 0 || !decimalsOK(c.GetAmount(), note.currency) || amount.Cmp(left) > 0 {
			return domain.CodeInvalidArgument
		}
	}
	var targets []*mInvoice
	if len(c.GetInvoiceIds()) > 0 {
		for _, id := range c.GetInvoiceIds() {
			inv := find(id)
			switch {
			case inv == nil:
				return domain.CodeNotFound
			case inv.creditNote():
				return domain.CodeFailedPrecondition
			case inv.currency != note.currency:
				return domain.CodeCurrencyMismatch
			case inv.outstanding().Sign() <= 0:
				return domain.CodeFailedPrecondition
			}
			targets = append(targets, inv)
		}
	} else if targets = r.openInvoices(note.currency); len(targets) == 0 {
		return domain.CodeFailedPrecondition // nothing to settle: the credit stays
	}
	x := &mCredit{note: note.id, source: note.source, currency: note.currency, amount: zero()}
	rest := amount
	for _, inv := range targets {
		if rest.Sign() <= 0 {
			break
		}
		out := inv.outstanding()
		applied := minDec(rest, out)
		rest = sub(rest, applied)
		inv.paid = add(inv.paid, applied)
		x.amount = add(x.amount, applied)
		x.allocs = append(x.allocs, mAlloc{invoice: inv.id, source: inv.source, amount: applied, after: sub(out, applied)})
	}
	note.applied = add(note.creditApplied(), x.amount)
	x.remaining = note.remaining()
	for _, o := range r.credits {
		if o.note == note.id {
			x.seq++
		}
	}
	x.seq++
	r.credits = append(r.credits, x)
	return ""
}

// refund predicts RefundPayment and applies it.
func (m *model) refund(c *billingv1.RefundPayment) domain.Code {
	r := m.recv[c.GetPayerAccountId()]
	var p *mPayment
	if r != nil {
		for _, x := range r.payments {
			if x.id == c.GetPaymentId() {
				p = x
			}
		}
	}
	if p == nil {
		return domain.CodeNotFound
	}
	if p.unapplied.Sign() <= 0 {
		return domain.CodeFailedPrecondition
	}
	amount := p.unapplied
	if c.GetAmount() != "" {
		if !decimalsOK(c.GetAmount(), p.currency) {
			return domain.CodeInvalidArgument
		}
		amount = dec(c.GetAmount())
		if amount.Cmp(p.unapplied) > 0 {
			return domain.CodeFailedPrecondition
		}
	}
	p.unapplied = sub(p.unapplied, amount)
	p.refunded = add(p.refunded, amount)
	return ""
}
