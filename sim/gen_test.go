package sim

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The world of a run: up to maxOrgs organizations (management accounts
// 1000000000NN, members 2000000NN0MM), firstOrgs of them registered at the
// start, the others later, so that usage for them is dead-lettered first (U4)
// and re-driven after. The clock starts on 2026-08-10 and the steps end
// before stepsEnd (three months); the finale closes every month and pays.
const (
	maxOrgs      = 6
	firstOrgs    = 4
	maxMembers   = 3
	simStart     = "2026-08-10T12:00:00Z"
	stepsEnd     = "2026-10-28T00:00:00Z"
	finaleTime   = "2026-11-02T09:00:00Z"
	firstMonth   = "2026-08"
	lastMonth    = "2026-10"
	defaultSteps = 36
	// fullCheckEvery: after every step the read models it may have changed
	// are checked; every fullCheckEvery steps (and at the end) all of them.
	fullCheckEvery = 12
)

func orgID(i int) string       { return fmt.Sprintf("1%011d", i) }
func memberID(i, j int) string { return fmt.Sprintf("2%09d%02d", i, j) }

// skus are the usage the world consumes: service, usage type, operation.
var skus = [][3]string{
	{"AmazonEC2", "BoxUsage:m6i.large", "RunInstances"},
	{"AmazonS3", "TimedStorage-ByteHrs", "PutObject"},
	{"AmazonS3", "TimedStorage-ByteHrs", "GetObject"},
	{"AmazonS3", "Requests-Tier1", "GetObject"},
	{"AWSLambda", "Request", "Invoke"},
}

// countries an organization can be taxed in: country, region.
var countries = [][2]string{{"US", "WA"}, {"US", "NY"}, {"DE", ""}, {"JP", ""}}

var sellers = map[string]mSeller{
	"US": {"Amazon Web Services, Inc.", "USD"},
	"DE": {"Amazon Web Services EMEA SARL", "EUR"},
	"JP": {"Amazon Web Services Japan G.K.", "JPY"},
}

// sim is one run of one seed.
type sim struct {
	seed    uint64
	rng     *rand.Rand
	sys     *system
	m       *model
	step    int
	steps   int
	noRace  bool
	strict  string // SIM_STRICT, for the command that repeats a failure
	log     []string
	verbose func(string)
	end     time.Time
	n       map[string]int           // id counters
	sent    []*billingv1.UsageRecord // every record sent, for duplicates and conflicts
	stats   map[string]int
	// checks counts the comparisons made, by read model; timing sums their
	// durations, and the other phases'.
	checks map[string]int
	timing map[string]time.Duration
}

// timed adds the time since start to phase.
func (s *sim) timed(phase string, start time.Time) { s.timing[phase] += time.Since(start) }

func newSim(seed uint64, sys *system, lenient map[string]bool) *sim {
	start, _ := time.Parse(time.RFC3339, simStart)
	end, _ := time.Parse(time.RFC3339, stepsEnd)
	return &sim{seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5eed)), sys: sys, m: newModel(start, lenient),
		steps: defaultSteps, end: end, n: map[string]int{}, stats: map[string]int{}, checks: map[string]int{},
		timing: map[string]time.Duration{}}
}

func (s *sim) next(kind string) int { s.n[kind]++; return s.n[kind] }

func (s *sim) logf(format string, args ...any) {
	line := fmt.Sprintf("%3d %s  ", s.step, s.m.now.Format("2006-01-02T15:04")) + fmt.Sprintf(format, args...)
	s.log = append(s.log, line)
	if s.verbose != nil {
		s.verbose(line)
	}
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func (s *sim) chance(p float64) bool { return s.rng.Float64() < p }

// brief renders a command for messages.
func brief(cmd proto.Message) string {
	b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(cmd)
	return name(cmd) + " " + string(b)
}

func codeText(c domain.Code) string {
	if c == "" {
		return "ACCEPTED"
	}
	return string(c)
}

// run predicts a command with the model, executes it on pipeline 0 and
// requires the ledger to answer what the model predicted.
func (s *sim) run(cmd proto.Message) (*billingv1.CommandResult, domain.Code, error) {
	want := s.m.apply(cmd)
	if want == codeSkip {
		s.logf("%s → not sent: %s", brief(cmd), codeSkip)
		return nil, codeSkip, nil
	}
	retry := s.chance(0.1) && setRequestID(cmd, fmt.Sprintf("rq-%d-%d", s.seed, s.next("request")))
	res, got, err := s.sys.exec(0, cmd)
	if err != nil {
		return nil, "", err
	}
	s.logf("%s → %s", brief(cmd), codeText(got))
	if got != want {
		return nil, "", fmt.Errorf("%s: the model predicts %s, the ledger answers %s", brief(cmd), codeText(want), codeText(got))
	}
	s.stats[name(cmd)+" "+codeText(got)]++
	if retry {
		if err := s.retry(cmd, res, got); err != nil {
			return nil, "", err
		}
	}
	if c, ok := cmd.(*billingv1.CloseMonth); ok && got == "" {
		if err := s.checkCloseResult(c, res); err != nil {
			return nil, "", err
		}
	}
	return res, got, nil
}

// setRequestID gives a command an idempotency key (every command has
// request_id, field 15).
func setRequestID(cmd proto.Message, id string) bool {
	fd := cmd.ProtoReflect().Descriptor().Fields().ByName("request_id")
	if fd == nil {
		return false
	}
	cmd.ProtoReflect().Set(fd, protoreflect.ValueOfString(id))
	return true
}

// retry sends a command with a request_id again, on the other pipeline (a
// client retrying through another API process): an accepted command is
// answered from its record (replayed, same ids) and appends nothing; a
// rejected one, which nothing recorded, is rejected again the same way.
func (s *sim) retry(cmd proto.Message, first *billingv1.CommandResult, code domain.Code) error {
	before, err := s.sys.store.LastPosition(context.Background())
	if err != nil {
		return err
	}
	res, got, err := s.sys.exec(1, cmd)
	if err != nil {
		return err
	}
	after, err := s.sys.store.LastPosition(context.Background())
	if err != nil {
		return err
	}
	s.stats["retry "+codeText(got)]++
	switch {
	case got != code:
		return fmt.Errorf("%s sent again with its request_id: %s, the first answer was %s", brief(cmd), codeText(got), codeText(code))
	case after != before:
		return fmt.Errorf("%s sent again with its request_id appended %d events", brief(cmd), after-before)
	case code == "" && (!res.GetReplayed() || res.GetAggregateId() != first.GetAggregateId() || !slices.Equal(res.GetEventIds(), first.GetEventIds())):
		return fmt.Errorf("%s sent again with its request_id: replayed %v, aggregate %s, events %v; first %s, %v",
			brief(cmd), res.GetReplayed(), res.GetAggregateId(), res.GetEventIds(), first.GetAggregateId(), first.GetEventIds())
	}
	return nil
}

// mustRun is run for commands the generator means to be accepted.
func (s *sim) mustRun(cmd proto.Message) error {
	_, code, err := s.run(cmd)
	if err == nil && code != "" {
		err = fmt.Errorf("%s: rejected with %s", brief(cmd), code)
	}
	return err
}

// race executes two commands at once on the two pipelines (two API
// processes) and requires the outcome of one of the two orders in which they
// could have run one after the other (linearizability), which then becomes
// the model's state.
func (s *sim) race(a, b proto.Message) error {
	cmds := [2]proto.Message{a, b}
	var got [2]domain.Code
	var res [2]*billingv1.CommandResult
	var errs [2]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res[i], got[i], errs[i] = s.sys.exec(i, cmds[i])
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	s.logf("race %s → %s | %s → %s", brief(a), codeText(got[0]), brief(b), codeText(got[1]))
	orders := [][2]int{{0, 1}, {1, 0}}
	if got[0] == "" && got[1] == "" {
		// Both were appended: the store positions tell the order.
		if res[1].GetPosition() < res[0].GetPosition() {
			orders = orders[1:]
		} else {
			orders = orders[:1]
		}
	}
	var tried []string
	for _, order := range orders {
		c := s.m.clone()
		var want [2]domain.Code
		for _, i := range order {
			want[i] = c.apply(cmds[i])
		}
		if want == got {
			s.m = c
			s.stats["race "+name(a)+" "+codeText(got[0])+"/"+codeText(got[1])]++
			return nil
		}
		tried = append(tried, fmt.Sprintf("order %v gives %s, %s", order, codeText(want[0]), codeText(want[1])))
	}
	return fmt.Errorf("race of %s and %s: the ledger answered %s and %s, which no serial order gives (%s)",
		brief(a), brief(b), codeText(got[0]), codeText(got[1]), strings.Join(tried, "; "))
}

// apply dispatches a command to the model's prediction.
func (m *model) apply(cmd proto.Message) domain.Code {
	switch c := cmd.(type) {
	case *billingv1.RegisterOrganization:
		return m.register(c)
	case *billingv1.AddAccount:
		return m.addAccount(c)
	case *billingv1.InviteBillSource:
		return m.invite(c)
	case *billingv1.AcceptTransfer:
		return m.transition(c.GetTransferId(), "AcceptTransfer")
	case *billingv1.DeclineTransfer:
		return m.transition(c.GetTransferId(), "DeclineTransfer")
	case *billingv1.CancelTransfer:
		return m.transition(c.GetTransferId(), "CancelTransfer")
	case *billingv1.ExpireTransfer:
		return m.transition(c.GetTransferId(), "ExpireTransfer")
	case *billingv1.WithdrawTransfer:
		return m.withdraw(c)
	case *billingv1.SetTaxSettings:
		o := m.orgs[c.GetAccountId()]
		if o == nil {
			panic("sim: tax settings are set on management accounts only")
		}
		o.tax = mTax{country: c.GetCountry(), region: c.GetRegion(), exempt: c.GetExempt()}
		return ""
	case *billingv1.SetSellerOfRecord:
		m.sellers[c.GetCountry()] = mSeller{name: c.GetSeller(), currency: c.GetDefaultCurrency()}
		return ""
	case *billingv1.SetTaxRate:
		m.taxRates[c.GetJurisdiction()] = withRate(m.taxRates[c.GetJurisdiction()], mRate{from: c.GetEffectiveFrom(), rate: dec(c.GetRatePercentage())})
		return ""
	case *billingv1.SetExchangeRate:
		m.fx[c.GetTo()] = withRate(m.fx[c.GetTo()], mRate{from: c.GetEffectiveDate(), rate: dec(c.GetRate())})
		return ""
	case *billingv1.SetPaymentProfile:
		m.profiles[c.GetPayerAccountId()+"|"+c.GetSeller()] = c.GetCurrency()
		return ""
	case *billingv1.CreatePricingRule:
		r := &mRule{id: c.GetPricingRuleId(), owner: c.GetOwnerAccountId(), typ: c.GetType(), scope: c.GetScope(),
			service: c.GetService(), usageType: c.GetUsageType(), operation: c.GetOperation(), party: c.GetBillingEntity(),
			freeTier: c.GetFreeTierActivated()}
		if c.GetModifierPercentage() != "" {
			r.modifier = dec(c.GetModifierPercentage())
		}
		return m.createRule(r)
	case *billingv1.UpdatePricingRule:
		return m.updateRule(c)
	case *billingv1.CreatePricingPlan:
		return m.createPlan(c.GetPricingPlanId(), c.GetOwnerAccountId(), c.GetPricingRuleIds())
	case *billingv1.AssociatePricingRules:
		return m.associate(c.GetPricingPlanId(), c.GetPricingRuleIds()[0])
	case *billingv1.DisassociatePricingRules:
		return m.disassociate(c.GetPricingPlanId(), c.GetPricingRuleIds()[0])
	case *billingv1.CreateBillingGroup:
		return m.createGroup(c)
	case *billingv1.UpdateBillingGroup:
		return m.updateGroupPlan(c.GetBillingGroupId(), c.GetPricingPlanId())
	case *billingv1.AssociateAccounts:
		return m.associateAccount(c.GetBillingGroupId(), c.GetAccountIds()[0])
	case *billingv1.DisassociateAccounts:
		return m.disassociateAccount(c.GetBillingGroupId(), c.GetAccountIds()[0])
	case *billingv1.DeleteBillingGroup:
		return m.deleteGroup(c.GetBillingGroupId())
	case *billingv1.CreateCustomLineItem:
		it := &mItem{id: c.GetCustomLineItemId(), group: c.GetBillingGroupId(), account: c.GetAccountId(), name: c.GetName(),
			credit: c.GetChargeType() == "CREDIT", start: c.GetStartMonth(), end: c.GetEndMonth()}
		if c.GetFlatAmount() != "" {
			it.flat = dec(c.GetFlatAmount())
		} else {
			it.percent = dec(c.GetPercentage())
		}
		return m.createItem(it)
	case *billingv1.UpdateCustomLineItem:
		return m.updateItemFlat(c.GetCustomLineItemId(), dec(c.GetFlatAmount()))
	case *billingv1.DeleteCustomLineItem:
		return m.deleteItem(c.GetCustomLineItemId())
	case *billingv1.CloseMonth:
		return m.closeMonth(c.GetPayerAccountId(), c.GetMonth())
	case *billingv1.RecordPayment:
		return m.recordPayment(c)
	case *billingv1.RefundPayment:
		return m.refund(c)
	case *billingv1.ApplyCredit:
		return m.applyCredit(c)
	}
	panic(fmt.Sprintf("sim: the model does not know %T", cmd))
}

// checkCloseResult: the close issued the invoices the model expects, in order
// (the result lists their ids: a close of the simulation issues far fewer
// than domain.MaxCreatedInvoiceIDs), and counts them.
func (s *sim) checkCloseResult(c *billingv1.CloseMonth, res *billingv1.CommandResult) error {
	cl := s.m.closes[c.GetPayerAccountId()+"|"+c.GetMonth()]
	var want []string
	for _, inv := range cl.invoices {
		want = append(want, inv.id)
	}
	if got := res.GetCreated()["invoice_ids"]; got != strings.Join(want, ",") {
		return fmt.Errorf("%s issued invoices [%s], the model expects [%s]", brief(c), got, strings.Join(want, ","))
	}
	if got := res.GetCreated()["invoice_count"]; got != strconv.Itoa(len(want)) {
		return fmt.Errorf("%s counted %s invoices, the model expects %d", brief(c), got, len(want))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Setup.

func (s *sim) setup() error {
	s.logf("seed %d", s.seed)
	for _, c := range []string{"US", "DE", "JP"} {
		if err := s.mustRun(&billingv1.SetSellerOfRecord{Country: c, Seller: sellers[c].name, DefaultCurrency: sellers[c].currency}); err != nil {
			return err
		}
	}
	for _, r := range []*billingv1.SetTaxRate{
		{Jurisdiction: "US", RatePercentage: "5", EffectiveFrom: "2026-01-01"},
		{Jurisdiction: "US-WA", RatePercentage: "10.25", EffectiveFrom: "2026-01-01"},
		{Jurisdiction: "DE", RatePercentage: "19", EffectiveFrom: "2026-01-01"},
		{Jurisdiction: "JP", RatePercentage: "10", EffectiveFrom: "2019-10-01"},
		{Jurisdiction: "GB", RatePercentage: "20", EffectiveFrom: "2026-01-01"},
	} {
		if err := s.mustRun(r); err != nil {
			return err
		}
	}
	for _, r := range []*billingv1.SetExchangeRate{
		{From: "USD", To: "EUR", Rate: "0.9215", EffectiveDate: "2026-08-01"},
		{From: "USD", To: "JPY", Rate: "151.37", EffectiveDate: "2026-08-01"},
	} {
		if err := s.mustRun(r); err != nil {
			return err
		}
	}
	for i := 1; i <= firstOrgs; i++ {
		if err := s.registerOrg(i); err != nil {
			return err
		}
	}
	return nil
}

func (s *sim) modifier(max int) string {
	return fmt.Sprintf("%d.%02d", s.rng.IntN(max), s.rng.IntN(100))
}

// registerOrg registers organization i with tax settings, five rules and two
// plans of its own.
func (s *sim) registerOrg(i int) error {
	id := orgID(i)
	var members []string
	for j := 1; j <= s.rng.IntN(3); j++ {
		members = append(members, memberID(i, j))
	}
	if err := s.mustRun(&billingv1.RegisterOrganization{ManagementAccountId: id, Name: fmt.Sprintf("org-%d", i), MemberAccountIds: members}); err != nil {
		return err
	}
	if err := s.setTax(i); err != nil {
		return err
	}
	p := fmt.Sprintf("r%d-", i)
	rules := []*billingv1.CreatePricingRule{
		{PricingRuleId: p + "g", Type: "MARKUP", Scope: "GLOBAL", ModifierPercentage: s.modifier(40)},
		{PricingRuleId: p + "svc", Type: "DISCOUNT", Scope: "SERVICE", Service: "AmazonEC2", ModifierPercentage: s.modifier(30)},
		{PricingRuleId: p + "sku", Type: "MARKUP", Scope: "SKU", Service: "AmazonS3", UsageType: "TimedStorage-ByteHrs", ModifierPercentage: s.modifier(60)},
		{PricingRuleId: p + "op", Type: "DISCOUNT", Scope: "SKU", Service: "AmazonS3", UsageType: "TimedStorage-ByteHrs", Operation: "PutObject", ModifierPercentage: s.modifier(20)},
		{PricingRuleId: p + "be", Type: "DISCOUNT", Scope: "BILLING_ENTITY", BillingEntity: "AWS", ModifierPercentage: s.modifier(10)},
		{PricingRuleId: p + "ft", Type: "TIERING", Scope: "GLOBAL", FreeTierActivated: s.chance(0.5)},
	}
	for _, r := range rules {
		r.OwnerAccountId, r.Name = id, r.GetPricingRuleId()
		if err := s.mustRun(r); err != nil {
			return err
		}
	}
	for _, pl := range []*billingv1.CreatePricingPlan{
		{PricingPlanId: fmt.Sprintf("p%d-a", i), PricingRuleIds: []string{p + "g", p + "svc", p + "ft"}},
		{PricingPlanId: fmt.Sprintf("p%d-b", i), PricingRuleIds: []string{p + "sku", p + "op", p + "be"}},
	} {
		pl.OwnerAccountId, pl.Name = id, pl.GetPricingPlanId()
		if err := s.mustRun(pl); err != nil {
			return err
		}
	}
	return nil
}

// setTax gives organization i's management account tax settings (X1).
func (s *sim) setTax(i int) error {
	c := pick(s.rng, countries)
	return s.mustRun(&billingv1.SetTaxSettings{AccountId: orgID(i), LegalName: fmt.Sprintf("Org %d Ltd", i), Country: c[0], Region: c[1],
		Exempt: s.chance(0.1)})
}

// ---------------------------------------------------------------------------
// Steps.

type stepKind struct {
	name   string
	weight int
	race   bool
	fn     func(s *sim) (checkScope, error)
}

// checkScope says what a step may have changed, hence what is checked after it.
type checkScope struct {
	billable  []string // months
	proforma  []string // months; "*" = every month
	invoices  []string // months
	payments  []string // payers
	transfers bool
	letters   []string // months whose dead letter digest is checked (the list always)
}

var stepKinds = []stepKind{
	{"usage", 30, false, (*sim).stepUsage},
	{"clock", 8, false, (*sim).stepClock},
	{"transfer", 16, false, (*sim).stepTransfer},
	{"pricing", 13, false, (*sim).stepPricing},
	{"close", 8, false, (*sim).stepClose},
	{"payment", 7, false, (*sim).stepPayment},
	{"credit", 4, false, (*sim).stepCredit},
	{"config", 4, false, (*sim).stepConfig},
	{"orgs", 3, false, (*sim).stepOrgs},
	{"redrive", 2, false, (*sim).stepRedrive},
	{"restart", 2, false, (*sim).stepRestart},
	{"transfer-race", 4, true, (*sim).stepTransferRace},
	{"usage-race", 3, true, (*sim).stepUsageRace},
	{"close-race", 3, true, (*sim).stepCloseRace},
	{"payment-race", 2, true, (*sim).stepPaymentRace},
	{"credit-race", 1, true, (*sim).stepCreditRace},
}

func (s *sim) pickStep() stepKind {
	total := 0
	for _, k := range stepKinds {
		if !(k.race && s.noRace) {
			total += k.weight
		}
	}
	n := s.rng.IntN(total)
	for _, k := range stepKinds {
		if k.race && s.noRace {
			continue
		}
		if n < k.weight {
			return k
		}
		n -= k.weight
	}
	panic("unreachable")
}

func (s *sim) registered() []string { return s.m.sortedOrgs() }

func (s *sim) months() []string {
	var out []string
	for m := firstMonth; m <= monthOf(s.m.now); m = addMonths(m, 1) {
		out = append(out, m)
	}
	return out
}

// --- usage

func (s *sim) candidateAccounts() []string {
	var out []string
	for i := 1; i <= maxOrgs; i++ {
		out = append(out, orgID(i))
		for j := 1; j <= maxMembers; j++ {
			out = append(out, memberID(i, j))
		}
	}
	return out
}

// knownAccounts are the accounts of registered organizations, sorted.
func (s *sim) knownAccounts() []string { return slices.Sorted(maps.Keys(s.m.acctOrg)) }

// chargeStart draws a charge period start in [from, now].
func (s *sim) chargeStart(from time.Time) time.Time {
	span := s.m.now.Sub(from)
	if span <= 0 {
		return s.m.now
	}
	return from.Add(time.Duration(s.rng.Int64N(int64(span)))).Truncate(time.Hour)
}

func (s *sim) billed() string {
	d := s.rng.IntN(7)
	v := fmt.Sprintf("%d", s.rng.IntN(40))
	if d > 0 {
		v += "." + fmt.Sprintf("%0*d", d, s.rng.IntN(pow10(d)))
	}
	if s.chance(0.08) {
		v = "-" + v
	}
	return v
}

func pow10(n int) int {
	r := 1
	for range n {
		r *= 10
	}
	return r
}

// newRecord is a fresh record of account starting at start.
func (s *sim) newRecord(account string, start time.Time) *billingv1.UsageRecord {
	sku := pick(s.rng, skus)
	r := &billingv1.UsageRecord{
		UsageId: fmt.Sprintf("u-%d-%d", s.seed, s.next("usage")), AccountId: account,
		ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(time.Hour)),
		Service: sku[0], UsageType: sku[1], Operation: sku[2], Region: "us-east-1",
		Quantity: fmt.Sprint(1 + s.rng.IntN(50)), Unit: "u", ListUnitPrice: fmt.Sprintf("0.%03d", 1+s.rng.IntN(999)),
		BilledCost: s.billed(), Currency: "USD", FreeTier: s.chance(0.15),
	}
	if s.chance(0.15) {
		r.ListUnitPrice = "" // no public rate: list cost = billed cost
	}
	if s.chance(0.06) {
		// A refund larger than a source's usage of a month usually is: its
		// invoice comes out negative, a credit note (Y2).
		r.BilledCost = fmt.Sprintf("-%d.%02d", 150+s.rng.IntN(500), s.rng.IntN(100))
	}
	return r
}

// account draws an account for new usage: mostly of registered organizations.
func (s *sim) account() string {
	if known := s.knownAccounts(); len(known) > 0 && !s.chance(0.07) {
		return pick(s.rng, known)
	}
	return pick(s.rng, s.candidateAccounts())
}

// usageBatch draws records: new ones of this month and the previous weeks,
// late ones of earlier months (corrections once their month is closed, U3),
// duplicates and conflicts of records sent before (U2), invalid ones (U4).
func (s *sim) usageBatch(n int) []*billingv1.UsageRecord {
	start, _ := time.Parse("2006-01", firstMonth)
	var recs []*billingv1.UsageRecord
	for range n {
		switch x := s.rng.IntN(100); {
		case x < 55 || len(s.sent) == 0:
			from := s.m.now.AddDate(0, 0, -20)
			if from.Before(start) {
				from = start
			}
			recs = append(recs, s.newRecord(s.account(), s.chargeStart(from)))
		case x < 70:
			recs = append(recs, s.newRecord(s.account(), s.chargeStart(start)))
		case x < 85:
			recs = append(recs, proto.Clone(pick(s.rng, s.sent)).(*billingv1.UsageRecord))
		case x < 90:
			r := proto.Clone(pick(s.rng, s.sent)).(*billingv1.UsageRecord)
			r.BilledCost = s.billed()
			recs = append(recs, r)
		case x < 95:
			r := s.newRecord(s.account(), s.chargeStart(start))
			switch s.rng.IntN(3) {
			case 0:
				r.Quantity = "-" + r.GetQuantity()
			case 1:
				r.Currency = "XXX"
			default:
				r.ChargePeriodStart = timestamppb.New(s.m.now.Add(time.Hour))
				r.ChargePeriodEnd = timestamppb.New(s.m.now.Add(2 * time.Hour))
			}
			recs = append(recs, r)
		default:
			if len(recs) > 0 {
				recs = append(recs, proto.Clone(pick(s.rng, recs)).(*billingv1.UsageRecord))
			}
		}
	}
	if s.m.lenient[bugRetryOrder] {
		// Two contents of one usage id in one batch meet bugRetryOrder: keep
		// the first content only.
		first := map[string]*billingv1.UsageRecord{}
		recs = slices.DeleteFunc(recs, func(r *billingv1.UsageRecord) bool {
			f, ok := first[r.GetUsageId()]
			if !ok {
				first[r.GetUsageId()] = r
				return false
			}
			return !proto.Equal(f, r)
		})
	}
	return recs
}

// ingest predicts and ingests items through writer w, and requires every
// record's answer to be the predicted one.
func (s *sim) ingest(w *commands.UsageWriter, items []usageItem) (checkScope, error) {
	var scope checkScope
	if err := s.sys.view.refreshIfChanged(s.sys.ctx); err != nil {
		return scope, err
	}
	want := s.m.ingest(items)
	in := make([]commands.UsageItem, len(items))
	for i, it := range items {
		in[i] = commands.UsageItem{Record: it.rec, Origin: "sim", RedriveOf: it.redriveOf}
		if it.redriveOf == "" {
			s.sent = append(s.sent, it.rec)
		}
	}
	res, err := w.IngestItems(context.Background(), "sim", in)
	if err != nil {
		return scope, fmt.Errorf("ingest: %w", err)
	}
	counts := map[string]int{}
	if s.m.lenient[bugRetryOrder] {
		swapRepeats(items, want, res.GetResults())
	}
	for i, r := range res.GetResults() {
		got := r.GetStatus() + ":" + r.GetReason()
		counts[got]++
		if exp := want[i].status + ":" + want[i].reason; got != exp {
			var all []string
			for j, it := range items {
				all = append(all, fmt.Sprintf("%d %s redrive %q: model %s:%s ledger %s:%s", j, it.rec.GetUsageId(), it.redriveOf,
					want[j].status, want[j].reason, res.GetResults()[j].GetStatus(), res.GetResults()[j].GetReason()))
			}
			if os.Getenv("SIM_DEBUG") != "" {
				part := domain.UsagePartition(items[i].rec.GetUsageId(), domain.UsagePartitions)
				_ = s.sys.store.ReadAll(context.Background(), 0, domain.UsagePartitionFilter(part), func(rec eventstore.Record) error {
					var ids []string
					for _, b := range rec.Event.GetUsageBatchRecorded().GetRecords() {
						ids = append(ids, b.GetRecord().GetUsageId()+"→"+b.GetBookingMonth())
					}
					for _, x := range rec.Event.GetUsageBatchRecorded().GetRejected() {
						ids = append(ids, "rejected "+x.GetRecord().GetUsageId())
					}
					if c := rec.Event.GetUsageMonthClosed(); c != nil {
						ids = append(ids, "closed "+c.GetPayerAccountId()+" "+c.GetMonth())
					}
					all = append(all, fmt.Sprintf("pos %d %s v%d %v", rec.Position, rec.Event.GetStream(), rec.Event.GetStreamVersion(), ids))
					return nil
				})
			}
			return scope, fmt.Errorf("usage record %d (%s): the model predicts %s, the ledger answers %s (%s)\n\tbatch:\n\t%s",
				i, brief(items[i].rec), exp, got, r.GetMessage(), strings.Join(all, "\n\t"))
		}
		if r.GetStatus() == commands.StatusRejected {
			s.m.addDeadLetter(r.GetDeadLetterId(), r.GetReason(), items[i].rec)
		}
		if m := want[i].booking; m != "" && !slices.Contains(scope.billable, m) {
			scope.billable = append(scope.billable, m)
		}
		s.stats["usage "+got]++
	}
	s.logf("ingest %d records → %v", len(items), counts)
	scope.proforma = scope.billable
	scope.letters = append(slices.Clone(scope.billable), monthOf(s.m.now))
	return scope, nil
}

// swapRepeats tolerates bugRetryOrder for copies of one record in a batch:
// when the ledger answers them in another order than the model, and they have
// the same content (so the booking is the same), the model's answers are
// permuted to the ledger's.
func swapRepeats(items []usageItem, want []expect, got []*billingv1.RecordResult) {
	byID := map[string][]int{}
	for i, it := range items {
		byID[it.rec.GetUsageId()] = append(byID[it.rec.GetUsageId()], i)
	}
	for _, idx := range byID {
		if len(idx) < 2 {
			continue
		}
		same := true
		for _, i := range idx[1:] {
			same = same && proto.Equal(items[i].rec, items[idx[0]].rec) && items[i].redriveOf == "" && items[idx[0]].redriveOf == ""
		}
		if !same {
			continue
		}
		var w, g []string
		for _, i := range idx {
			w = append(w, want[i].status+":"+want[i].reason)
			g = append(g, got[i].GetStatus()+":"+got[i].GetReason())
		}
		if !slices.Equal(slices.Sorted(slices.Values(w)), slices.Sorted(slices.Values(g))) {
			continue
		}
		old := map[string][]expect{}
		for _, i := range idx {
			k := want[i].status + ":" + want[i].reason
			old[k] = append(old[k], want[i])
		}
		for _, i := range idx {
			k := got[i].GetStatus() + ":" + got[i].GetReason()
			want[i], old[k] = old[k][0], old[k][1:]
		}
	}
}

func (s *sim) stepUsage() (checkScope, error) {
	var items []usageItem
	for _, r := range s.usageBatch(3 + s.rng.IntN(14)) {
		items = append(items, usageItem{rec: r})
	}
	return s.ingest(s.sys.writer, items)
}

func (s *sim) stepRedrive() (checkScope, error) {
	var open []*mDL
	for _, id := range slices.Sorted(maps.Keys(s.m.dls)) {
		if dl := s.m.dls[id]; !dl.resolved && dl.rec != nil {
			open = append(open, dl)
		}
	}
	if len(open) == 0 {
		return checkScope{}, nil
	}
	var items []usageItem
	for _, dl := range open {
		if len(items) < 8 && s.chance(0.7) {
			items = append(items, usageItem{rec: dl.rec, redriveOf: dl.id})
		}
	}
	if len(items) == 0 {
		return checkScope{}, nil
	}
	s.logf("redrive %d dead letters", len(items))
	scope, err := s.ingest(s.sys.writer, items)
	scope.billable = append(scope.billable, monthOf(s.m.now))
	return scope, err
}

func (s *sim) stepRestart() (checkScope, error) {
	s.logf("restart the usage writer")
	s.sys.restartWriter()
	return checkScope{}, nil
}

// --- clock

func (s *sim) setClock(t time.Time) error {
	if err := s.sys.setClock(t); err != nil {
		return err
	}
	s.m.now = t
	s.logf("clock → %s", t.Format(time.RFC3339))
	return nil
}

// stepClock moves the clock 4 to 12 days on; besides, half of the steps start
// with a move of up to 5 days (advance), so a run spans August to October in
// about defaultSteps steps.
func (s *sim) stepClock() (checkScope, error) { return checkScope{}, s.advance(4, 12) }

func (s *sim) advance(minDays, maxDays int) error {
	t := s.m.now.Add(time.Duration(minDays+s.rng.IntN(maxDays-minDays+1))*24*time.Hour + time.Duration(s.rng.IntN(24))*time.Hour)
	if t.After(s.end) {
		t = s.end
	}
	if !t.After(s.m.now) {
		return nil
	}
	return s.setClock(t)
}

// --- transfers

func (s *sim) xfersIn(status ...string) []*mXfer {
	var out []*mXfer
	for _, t := range s.m.sortedXfers() {
		if slices.Contains(status, t.status) {
			out = append(out, t)
		}
	}
	return out
}

func (s *sim) inviteCmd() *billingv1.InviteBillSource {
	orgs := s.registered()
	payer, source := pick(s.rng, orgs), pick(s.rng, orgs)
	if payer == source && !s.chance(0.1) {
		source = pick(s.rng, orgs)
	}
	cur := monthOf(s.m.now)
	start := addMonths(cur, 1)
	switch x := s.rng.IntN(100); {
	case x < 30:
		start = addMonths(cur, 2)
	case x < 34:
		start = cur
	case x < 37:
		start = addMonths(cur, 13)
	}
	plan := ""
	if s.chance(0.6) {
		plan = fmt.Sprintf("p%s-%s", strings.TrimLeft(payer[1:], "0"), pick(s.rng, []string{"a", "b"}))
	}
	return &billingv1.InviteBillSource{TransferId: fmt.Sprintf("t%03d", s.next("transfer")), PayerAccountId: payer,
		SourceAccountId: source, StartMonth: start, PricingPlanId: plan}
}

func (s *sim) withdrawCmd(t *mXfer) *billingv1.WithdrawTransfer {
	cur := monthOf(s.m.now)
	end := pick(s.rng, []string{cur, addMonths(cur, 1), addMonths(cur, 1)})
	if s.chance(0.08) {
		end = addMonths(cur, 2)
	}
	return &billingv1.WithdrawTransfer{TransferId: t.id, EndMonth: end, WithdrawnBy: pick(s.rng, []string{t.payer, t.source})}
}

func (s *sim) stepTransfer() (checkScope, error) {
	scope := checkScope{transfers: true}
	var cmd proto.Message
	pending := s.xfersIn("REQUESTED")
	accepted := s.xfersIn("ACCEPTED")
	switch x := s.rng.IntN(100); {
	case x < 40 || len(pending)+len(accepted) == 0:
		cmd = s.inviteCmd()
	case x < 70 && len(pending) > 0:
		cmd = &billingv1.AcceptTransfer{TransferId: pick(s.rng, pending).id}
	case x < 76 && len(pending) > 0:
		cmd = &billingv1.DeclineTransfer{TransferId: pick(s.rng, pending).id}
	case x < 82 && len(pending) > 0:
		cmd = &billingv1.CancelTransfer{TransferId: pick(s.rng, pending).id}
	case x < 87 && len(pending) > 0:
		cmd = &billingv1.ExpireTransfer{TransferId: pick(s.rng, pending).id}
	case len(accepted) > 0:
		cmd = s.withdrawCmd(pick(s.rng, accepted))
	default:
		all := s.m.sortedXfers()
		cmd = &billingv1.AcceptTransfer{TransferId: pick(s.rng, all).id}
	}
	_, code, err := s.run(cmd)
	if inv, ok := cmd.(*billingv1.InviteBillSource); ok && err == nil && code == "" && s.chance(0.5) {
		_, _, err = s.run(&billingv1.AcceptTransfer{TransferId: inv.GetTransferId()})
	}
	return scope, err
}

// stepTransferRace: conflicting transfer commands at once: two payers
// inviting one source (T4: exactly one wins), two organizations inviting each
// other (T7: no cycle), a chain built from both ends (T7: depth 2), accept
// against cancel, and both sides withdrawing.
func (s *sim) stepTransferRace() (checkScope, error) {
	scope := checkScope{transfers: true}
	orgs := s.registered()
	pending := s.xfersIn("REQUESTED")
	accepted := s.xfersIn("ACCEPTED")
	a := s.inviteCmd()
	b := s.inviteCmd()
	switch x := s.rng.IntN(5); {
	case x == 0: // two payers, one source
		b.SourceAccountId = a.GetSourceAccountId()
	case x == 1: // each invites the other
		b.PayerAccountId, b.SourceAccountId, b.StartMonth = a.GetSourceAccountId(), a.GetPayerAccountId(), a.GetStartMonth()
	case x == 2: // a chain from both ends: a's source pays for b's source
		if len(orgs) >= 3 {
			b.PayerAccountId = a.GetSourceAccountId()
		}
	case x == 3 && len(pending) > 0:
		t := pick(s.rng, pending)
		return scope, s.race(&billingv1.AcceptTransfer{TransferId: t.id}, &billingv1.CancelTransfer{TransferId: t.id})
	case x == 4 && len(accepted) > 0:
		t := pick(s.rng, accepted)
		w1, w2 := s.withdrawCmd(t), s.withdrawCmd(t)
		w1.WithdrawnBy, w2.WithdrawnBy = t.payer, t.source
		return scope, s.race(w1, w2)
	}
	b.PricingPlanId = ""
	return scope, s.race(a, b)
}

// --- pricing

func (s *sim) liveGroups(custom bool) []*mGroup {
	var out []*mGroup
	for _, id := range slices.Sorted(maps.Keys(s.m.groups)) {
		if g := s.m.groups[id]; !g.deleted && (!custom || g.transfer == "") {
			out = append(out, g)
		}
	}
	return out
}

func orgNum(id string) string { return strings.TrimLeft(id[1:], "0") }

func (s *sim) plansOf(owner string) []string {
	n := orgNum(owner)
	return []string{"p" + n + "-a", "p" + n + "-b", domain.PlanBasic, domain.PlanPassthrough}
}

func (s *sim) stepPricing() (checkScope, error) {
	// A pricing change re-rates every open month (P4): two months drawn by the
	// seed are checked now, every month at the next full check.
	ms := s.months()
	scope := checkScope{proforma: []string{pick(s.rng, ms), pick(s.rng, ms)}}
	orgs := s.registered()
	owner := pick(s.rng, orgs)
	n := orgNum(owner)
	var cmd proto.Message
	switch x := s.rng.IntN(100); {
	case x < 22:
		r := pick(s.rng, []string{"g", "svc", "sku", "op", "be", "ft"})
		if r == "ft" {
			on := s.chance(0.5)
			cmd = &billingv1.UpdatePricingRule{PricingRuleId: "r" + n + "-ft", FreeTierActivated: &on}
		} else {
			cmd = &billingv1.UpdatePricingRule{PricingRuleId: "r" + n + "-" + r, ModifierPercentage: s.modifier(60)}
		}
	case x < 40:
		plan := "p" + n + "-" + pick(s.rng, []string{"a", "b"})
		rule := "r" + n + "-" + pick(s.rng, []string{"g", "svc", "sku", "op", "be", "ft"})
		if slices.Contains(s.m.plans[plan].rules, rule) {
			cmd = &billingv1.DisassociatePricingRules{PricingPlanId: plan, PricingRuleIds: []string{rule}}
		} else {
			cmd = &billingv1.AssociatePricingRules{PricingPlanId: plan, PricingRuleIds: []string{rule}}
		}
	case x < 58:
		gs := s.liveGroups(false)
		if len(gs) == 0 {
			return scope, nil
		}
		g := pick(s.rng, gs)
		cmd = &billingv1.UpdateBillingGroup{BillingGroupId: g.id, PricingPlanId: pick(s.rng, s.plansOf(g.owner))}
	case x < 68:
		known := s.knownAccounts()
		primary := pick(s.rng, known)
		c := &billingv1.CreateBillingGroup{BillingGroupId: fmt.Sprintf("bg%d", s.next("group")), OwnerAccountId: owner,
			PrimaryAccountId: primary, PricingPlanId: pick(s.rng, s.plansOf(owner))}
		c.Name = c.BillingGroupId
		if s.chance(0.4) {
			c.AccountIds = []string{pick(s.rng, known)}
		}
		cmd = c
	case x < 80:
		gs := s.liveGroups(true)
		if len(gs) == 0 {
			return scope, nil
		}
		g := pick(s.rng, gs)
		switch y := s.rng.IntN(10); {
		case y < 5:
			cmd = &billingv1.AssociateAccounts{BillingGroupId: g.id, AccountIds: []string{pick(s.rng, s.knownAccounts())}}
		case y < 8:
			cmd = &billingv1.DisassociateAccounts{BillingGroupId: g.id, AccountIds: []string{pick(s.rng, g.accounts)}}
		default:
			cmd = &billingv1.DeleteBillingGroup{BillingGroupId: g.id}
		}
	default:
		var items []*mItem
		for _, id := range slices.Sorted(maps.Keys(s.m.items)) {
			if it := s.m.items[id]; !it.deleted {
				items = append(items, it)
			}
		}
		switch y := s.rng.IntN(10); {
		case y < 5 || len(items) == 0:
			gs := s.liveGroups(false)
			if len(gs) == 0 {
				return scope, nil
			}
			g := pick(s.rng, gs)
			start := pick(s.rng, s.months())
			c := &billingv1.CreateCustomLineItem{CustomLineItemId: fmt.Sprintf("cli%d", s.next("item")), BillingGroupId: g.id,
				ChargeType: pick(s.rng, []string{"FEE", "FEE", "CREDIT"}), StartMonth: start}
			c.Name = c.CustomLineItemId
			if s.chance(0.5) {
				c.FlatAmount = s.modifier(30)
			} else {
				c.Percentage = s.modifier(15)
			}
			if s.chance(0.3) {
				c.EndMonth = addMonths(start, s.rng.IntN(3))
			}
			if s.chance(0.3) {
				c.AccountId = pick(s.rng, g.accounts)
			}
			cmd = c
		case y < 8:
			cmd = &billingv1.UpdateCustomLineItem{CustomLineItemId: pick(s.rng, items).id, FlatAmount: s.modifier(30)}
		default:
			cmd = &billingv1.DeleteCustomLineItem{CustomLineItemId: pick(s.rng, items).id}
		}
	}
	_, _, err := s.run(cmd)
	return scope, err
}

// --- closes

// openMonths lists (payer, month) pairs that have ended and are not closed.
func (s *sim) openMonths() [][2]string {
	var out [][2]string
	for _, o := range s.registered() {
		for _, mo := range s.months() {
			if mo < monthOf(s.m.now) && s.m.closes[o+"|"+mo] == nil {
				out = append(out, [2]string{o, mo})
			}
		}
	}
	return out
}

func (s *sim) stepClose() (checkScope, error) {
	open := s.openMonths()
	var payer, month string
	if len(open) > 0 && !s.chance(0.15) {
		// Prefer the earliest open months: closes usually come in order.
		pm := open[s.rng.IntN(min(len(open), 4))]
		payer, month = pm[0], pm[1]
	} else {
		payer, month = pick(s.rng, s.registered()), pick(s.rng, s.months())
	}
	_, _, err := s.run(&billingv1.CloseMonth{PayerAccountId: payer, Month: month})
	return checkScope{invoices: []string{month}, payments: []string{payer}, proforma: []string{month}}, err
}

// stepCloseRace closes a payer's month while usage of that month keeps
// arriving for it (U3): every record must end up exactly once, on the
// month's invoice or as a correction of the next open month.
func (s *sim) stepCloseRace() (checkScope, error) {
	open := s.openMonths()
	if len(open) == 0 {
		return checkScope{}, nil
	}
	pm := pick(s.rng, open)
	payer, month := pm[0], pm[1]
	var accounts []string
	for _, a := range s.knownAccounts() {
		if p, _ := s.m.billPayer(s.m.acctOrg[a], month); p == payer {
			accounts = append(accounts, a)
		}
	}
	if len(accounts) == 0 {
		return checkScope{}, nil
	}
	if err := s.sys.view.refreshIfChanged(s.sys.ctx); err != nil {
		return checkScope{}, err
	}
	var recs []*billingv1.UsageRecord
	for range 6 + s.rng.IntN(20) {
		// A charge period in the month (which has ended).
		recs = append(recs, s.newRecord(pick(s.rng, accounts), monthStart(month).Add(time.Duration(s.rng.IntN(27*24))*time.Hour)))
	}
	s.sent = append(s.sent, recs...)
	cmd := &billingv1.CloseMonth{PayerAccountId: payer, Month: month}
	var wg sync.WaitGroup
	var res []*billingv1.IngestBatchResponse
	var ingestErr error
	var closeRes *billingv1.CommandResult
	var closeCode domain.Code
	var closeErr error
	start := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-start
		for i := 0; i < len(recs); i += 3 {
			r, err := s.sys.writer.Ingest(context.Background(), "sim", "close-race", recs[i:min(i+3, len(recs))])
			if err != nil {
				ingestErr = err
				return
			}
			res = append(res, r)
		}
	}()
	go func() {
		defer wg.Done()
		<-start
		closeRes, closeCode, closeErr = s.sys.exec(1, cmd)
	}()
	close(start)
	wg.Wait()
	if ingestErr != nil {
		return checkScope{}, ingestErr
	}
	if closeErr != nil {
		return checkScope{}, closeErr
	}
	if closeCode != "" {
		return checkScope{}, fmt.Errorf("%s racing usage: rejected with %s", brief(cmd), closeCode)
	}
	// Where did each record go? Read the bookings from the store.
	booking := map[string]string{}
	ids := map[string]bool{}
	for _, r := range recs {
		ids[r.GetUsageId()] = true
	}
	err := s.sys.store.ReadAll(context.Background(), 0, "billing.usage.>", func(rec eventstore.Record) error {
		for _, b := range rec.Event.GetUsageBatchRecorded().GetRecords() {
			if id := b.GetRecord().GetUsageId(); ids[id] {
				if prev, dup := booking[id]; dup {
					return fmt.Errorf("usage %s booked twice (%s and %s)", id, prev, b.GetBookingMonth())
				}
				booking[id] = b.GetBookingMonth()
			}
		}
		return nil
	})
	if err != nil {
		return checkScope{}, err
	}
	var before, after []usageItem
	for _, r := range recs {
		switch booking[r.GetUsageId()] {
		case month:
			before = append(before, usageItem{rec: r})
		case "":
			return checkScope{}, fmt.Errorf("usage %s racing the close of %s was not booked", r.GetUsageId(), month)
		default:
			after = append(after, usageItem{rec: r})
		}
	}
	s.logf("close race %s %s: %d records before the close, %d after", payer, month, len(before), len(after))
	// The serial order the ledger chose: the records booked into the month,
	// the close, the others; the model must agree on each of them.
	for _, exp := range s.m.ingest(before) {
		if exp.status != "ACCEPTED" || exp.booking != month {
			return checkScope{}, fmt.Errorf("close race: a record booked into %s before the close; the model books it %+v", month, exp)
		}
	}
	if code := s.m.apply(cmd); code != "" {
		return checkScope{}, fmt.Errorf("close race: the model rejects %s with %s", brief(cmd), code)
	}
	if err := s.checkCloseResult(cmd, closeRes); err != nil {
		return checkScope{}, err
	}
	for i, exp := range s.m.ingest(after) {
		if exp.status != "ACCEPTED" || exp.booking != booking[after[i].rec.GetUsageId()] || !exp.correction {
			return checkScope{}, fmt.Errorf("close race: usage %s booked into %s after the close; the model books it %+v",
				after[i].rec.GetUsageId(), booking[after[i].rec.GetUsageId()], exp)
		}
	}
	for _, r := range res {
		if int(r.GetAccepted()) != len(r.GetResults()) {
			return checkScope{}, fmt.Errorf("close race: %d of %d records accepted", r.GetAccepted(), len(r.GetResults()))
		}
	}
	s.stats["close race"]++
	months := []string{month, addMonths(month, 1)}
	return checkScope{billable: months, proforma: months, invoices: []string{month}, payments: []string{payer}}, nil
}

// --- usage races

// stepUsageRace: two ingest processes receive overlapping batches at once;
// each usage id is accepted exactly once (U2), and a copy with other content
// is a conflict whichever came first.
func (s *sim) stepUsageRace() (checkScope, error) {
	if err := s.sys.view.refreshIfChanged(s.sys.ctx); err != nil {
		return checkScope{}, err
	}
	var fresh []*billingv1.UsageRecord
	for range 4 + s.rng.IntN(12) {
		fresh = append(fresh, s.newRecord(pick(s.rng, append(s.knownAccounts(), orgID(1))), s.chargeStart(s.m.now.AddDate(0, 0, -10))))
	}
	var a, b []*billingv1.UsageRecord
	conflict := map[string]bool{}
	for _, r := range fresh {
		switch x := s.rng.IntN(10); {
		case x < 6:
			a, b = append(a, r), append(b, r)
		case x < 7:
			c := proto.Clone(r).(*billingv1.UsageRecord)
			c.BilledCost = s.billed()
			if proto.Equal(c, r) {
				c.BilledCost += "1"
			}
			conflict[r.GetUsageId()] = true
			a, b = append(a, r), append(b, c)
		case x < 9:
			a = append(a, r)
		default:
			b = append(b, r)
		}
	}
	s.rng.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	s.sent = append(s.sent, a...)
	s.sent = append(s.sent, b...)
	w2 := s.sys.newWriter()
	var res [2]*billingv1.IngestBatchResponse
	var errs [2]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, w := range []*commands.UsageWriter{s.sys.writer, w2} {
		batch := [][]*billingv1.UsageRecord{a, b}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res[i], errs[i] = w.Ingest(context.Background(), "sim", "race", batch)
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return checkScope{}, err
		}
	}
	// Winners first, then the losers, in a serial order the model predicts.
	type outcome struct {
		rec    *billingv1.UsageRecord
		result *billingv1.RecordResult
	}
	var winners, losers []outcome
	for i, batch := range [][]*billingv1.UsageRecord{a, b} {
		for j, r := range batch {
			o := outcome{r, res[i].GetResults()[j]}
			if o.result.GetStatus() == commands.StatusAccepted || o.result.GetStatus() == commands.StatusRejected && o.result.GetReason() == domain.ReasonUnknownAccount {
				winners = append(winners, o)
			} else {
				losers = append(losers, o)
			}
		}
	}
	var months []string
	for _, group := range [][]outcome{winners, losers} {
		items := make([]usageItem, len(group))
		for i, o := range group {
			items[i] = usageItem{rec: o.rec}
		}
		for i, exp := range s.m.ingest(items) {
			got := group[i].result
			if exp.status != got.GetStatus() || exp.reason != got.GetReason() {
				return checkScope{}, fmt.Errorf("usage race: %s answered %s:%s; in the serial order winners-then-losers the model predicts %s:%s",
					brief(group[i].rec), got.GetStatus(), got.GetReason(), exp.status, exp.reason)
			}
			if got.GetStatus() == commands.StatusRejected {
				s.m.addDeadLetter(got.GetDeadLetterId(), got.GetReason(), group[i].rec)
			}
			if exp.booking != "" && !slices.Contains(months, exp.booking) {
				months = append(months, exp.booking)
			}
		}
	}
	s.logf("usage race: %d + %d records, %d conflicting → %d/%d accepted", len(a), len(b), len(conflict), res[0].GetAccepted(), res[1].GetAccepted())
	s.stats["usage race"]++
	return checkScope{billable: months, proforma: months, letters: append(months, monthOf(s.m.now))}, nil
}

// --- payments

func (s *sim) payers() []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(s.m.recv)) {
		if len(s.m.recv[p].invoices) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// paymentCmd draws a payment: of a named invoice (in full, in part, or more),
// or oldest-first in an invoice currency, sometimes in a currency the payer
// has no invoice in or with too many decimals.
func (s *sim) paymentCmd(payer string) *billingv1.RecordPayment {
	r := s.m.recv[payer]
	inv := pick(s.rng, r.invoices)
	c := &billingv1.RecordPayment{PaymentId: fmt.Sprintf("pay%d", s.next("payment")), PayerAccountId: payer, Currency: inv.currency,
		Method: pick(s.rng, []string{"CARD", "BANK_TRANSFER", "DIRECT_DEBIT"})}
	base := inv.outstanding()
	if base.Sign() <= 0 {
		base = dec("25")
	}
	minor := minorUnits[inv.currency]
	switch x := s.rng.IntN(10); {
	case x < 4:
		c.Amount = txtFixed(base, minor)
	case x < 7:
		c.Amount = txtFixed(roundTo(mul(base, dec(fmt.Sprintf("0.%02d", 10+s.rng.IntN(80)))), minor), minor)
	default:
		c.Amount = txtFixed(roundTo(mul(base, dec(fmt.Sprintf("1.%02d", 10+s.rng.IntN(80)))), minor), minor)
	}
	if c.GetAmount() == "0" || dec(c.GetAmount()).Sign() <= 0 {
		c.Amount = "1"
	}
	if s.chance(0.5) {
		c.InvoiceIds = []string{inv.id}
	}
	if s.chance(0.05) {
		c.Currency = pick(s.rng, []string{"USD", "EUR", "JPY"})
		c.InvoiceIds = nil
	}
	if s.chance(0.03) && minor > 0 {
		c.Amount += "1" // one decimal too many
	}
	return c
}

func txtFixed(d *apd.Decimal, minor int32) string { return roundTo(d, minor).Text('f') }

func (s *sim) stepPayment() (checkScope, error) {
	payers := s.payers()
	if len(payers) == 0 {
		return checkScope{}, nil
	}
	payer := pick(s.rng, payers)
	scope := checkScope{payments: []string{payer}}
	var withCredit []*mPayment
	for _, p := range s.m.recv[payer].payments {
		if p.unapplied.Sign() > 0 {
			withCredit = append(withCredit, p)
		}
	}
	if len(withCredit) > 0 && s.chance(0.3) {
		p := pick(s.rng, withCredit)
		c := &billingv1.RefundPayment{PaymentId: p.id, PayerAccountId: payer}
		if s.chance(0.5) {
			c.Amount = txtFixed(roundTo(mul(p.unapplied, dec("0.5")), minorUnits[p.currency]), minorUnits[p.currency])
			if dec(c.Amount).Sign() <= 0 {
				c.Amount = ""
			}
		}
		_, _, err := s.run(c)
		return scope, err
	}
	_, _, err := s.run(s.paymentCmd(payer))
	return scope, err
}

// stepPaymentRace: two payments of one payer at once (Y2: the receivable's
// version serializes the allocations).
func (s *sim) stepPaymentRace() (checkScope, error) {
	payers := s.payers()
	if len(payers) == 0 {
		return checkScope{}, nil
	}
	payer := pick(s.rng, payers)
	return checkScope{payments: []string{payer}}, s.race(s.paymentCmd(payer), s.paymentCmd(payer))
}

// creditCmd draws a credit note application (Y2): mostly of a credit note
// with credit left, all of it or part, oldest first or to named invoices;
// sometimes wrong: an invoice that is not a credit note, an unknown id, more
// than the credit left, too many decimals, a named invoice in another
// currency, paid, or itself a credit note, an invoice listed twice.
func (s *sim) creditCmd(payer string) *billingv1.ApplyCredit {
	r := s.m.recv[payer]
	var notes []*mInvoice
	for _, inv := range r.invoices {
		if inv.creditNote() && (inv.remaining().Sign() > 0 || s.chance(0.2)) {
			notes = append(notes, inv)
		}
	}
	c := &billingv1.ApplyCredit{PayerAccountId: payer}
	switch {
	case len(notes) > 0 && s.chance(0.9):
		c.CreditNoteId = pick(s.rng, notes).id
	case s.chance(0.5):
		c.CreditNoteId = pick(s.rng, r.invoices).id
	default:
		c.CreditNoteId = fmt.Sprintf("INV-NOPE-%d", s.next("credit-nope"))
	}
	var note *mInvoice
	for _, inv := range r.invoices {
		if inv.id == c.GetCreditNoteId() {
			note = inv
		}
	}
	currency := "USD"
	left := dec("10")
	if note != nil {
		currency, left = note.currency, note.remaining()
	}
	minor := minorUnits[currency]
	switch x := s.rng.IntN(20); {
	case x < 9: // all the credit left
	case x < 15:
		c.Amount = txtFixed(roundTo(mul(left, dec(fmt.Sprintf("0.%02d", 10+s.rng.IntN(80)))), minor), minor)
	case x < 17:
		c.Amount = txtFixed(add(left, dec("1")), minor) // more than is left
	case x < 18 && minor > 0:
		c.Amount = txtFixed(left, minor) + "1" // a decimal too many
	default:
		c.Amount = txtFixed(left, minor)
	}
	if c.GetAmount() != "" && dec(c.GetAmount()).Sign() <= 0 {
		c.Amount = "0"
	}
	if s.chance(0.45) {
		// Mostly invoices of the credit note's currency (open, paid, or
		// credit notes themselves), sometimes one in another currency.
		var same, other []*mInvoice
		for _, inv := range r.invoices {
			if inv.currency == currency {
				same = append(same, inv)
			} else {
				other = append(other, inv)
			}
		}
		pool := same
		if len(other) > 0 && (len(same) == 0 || s.chance(0.5)) {
			pool = other
		}
		for range 1 + s.rng.IntN(2) {
			c.InvoiceIds = append(c.InvoiceIds, pick(s.rng, pool).id)
		}
		if len(c.InvoiceIds) == 2 && c.InvoiceIds[0] == c.InvoiceIds[1] && s.chance(0.5) {
			c.InvoiceIds = c.InvoiceIds[:1] // listed twice only sometimes
		}
	}
	return c
}

// stepCredit: a credit note application of a payer with invoices.
func (s *sim) stepCredit() (checkScope, error) {
	payers := s.payers()
	if len(payers) == 0 {
		return checkScope{}, nil
	}
	payer := pick(s.rng, payers)
	_, _, err := s.run(s.creditCmd(payer))
	return checkScope{payments: []string{payer}}, err
}

// stepCreditRace: a credit note application and a payment (or another
// application) of one payer at once: the receivable's version serializes them.
func (s *sim) stepCreditRace() (checkScope, error) {
	payers := s.payers()
	if len(payers) == 0 {
		return checkScope{}, nil
	}
	payer := pick(s.rng, payers)
	var other proto.Message = s.paymentCmd(payer)
	if s.chance(0.4) {
		other = s.creditCmd(payer)
	}
	return checkScope{payments: []string{payer}}, s.race(s.creditCmd(payer), other)
}

// --- configuration and organizations

func (s *sim) stepConfig() (checkScope, error) {
	orgs := s.registered()
	var cmd proto.Message
	switch s.rng.IntN(4) {
	case 0:
		i, _ := strconv.Atoi(orgNum(pick(s.rng, orgs)))
		return checkScope{}, s.setTax(i)
	case 1:
		to := pick(s.rng, []string{"EUR", "JPY"})
		rate := "0." + fmt.Sprintf("%04d", 8000+s.rng.IntN(2000))
		if to == "JPY" {
			rate = fmt.Sprintf("1%d.%02d", 40+s.rng.IntN(20), s.rng.IntN(100))
		}
		cmd = &billingv1.SetExchangeRate{From: "USD", To: to, Rate: rate, EffectiveDate: day(s.m.now.AddDate(0, 0, 1+s.rng.IntN(20)))}
	case 2:
		cmd = &billingv1.SetTaxRate{Jurisdiction: pick(s.rng, []string{"DE", "US-WA", "US", "JP"}),
			RatePercentage: fmt.Sprintf("%d.%d", 5+s.rng.IntN(20), s.rng.IntN(10)), EffectiveFrom: day(s.m.now.AddDate(0, 0, 1+s.rng.IntN(20)))}
	default:
		c := pick(s.rng, []string{"US", "DE", "JP"})
		cmd = &billingv1.SetPaymentProfile{PayerAccountId: pick(s.rng, orgs), Seller: sellers[c].name,
			Currency: pick(s.rng, []string{"USD", "EUR", "JPY", sellers[c].currency}), PaymentMethod: "CARD"}
	}
	return checkScope{}, s.mustRun(cmd)
}

func (s *sim) stepOrgs() (checkScope, error) {
	if len(s.m.orgs) < maxOrgs && s.chance(0.6) {
		for i := 1; i <= maxOrgs; i++ {
			if s.m.orgs[orgID(i)] == nil {
				return checkScope{}, s.registerOrg(i)
			}
		}
	}
	orgs := s.registered()
	o := pick(s.rng, orgs)
	i, _ := strconv.Atoi(orgNum(o))
	for j := 1; j <= maxMembers; j++ {
		if s.m.acctOrg[memberID(i, j)] == "" {
			_, _, err := s.run(&billingv1.AddAccount{ManagementAccountId: o, AccountId: memberID(i, j)})
			return checkScope{}, err
		}
	}
	return checkScope{}, nil
}

// ---------------------------------------------------------------------------
// The run.

// runSteps plays the steps, then the finale: the clock moves past December,
// every month of every organization is closed in order, and each payer pays.
func (s *sim) runSteps(check func(checkScope, bool) error) error {
	for s.step = 1; s.step <= s.steps; s.step++ {
		// Each step draws from its own stream, so that when a race resolves
		// differently in another run, only the steps that depend on the
		// state it left differ.
		s.rng = rand.New(rand.NewPCG(s.seed, uint64(s.step)))
		if s.chance(0.5) {
			if err := s.advance(0, 5); err != nil {
				return err
			}
		}
		k := s.pickStep()
		t0 := time.Now()
		scope, err := k.fn(s)
		s.timed("step "+k.name, t0)
		if err != nil {
			return fmt.Errorf("%s step: %w", k.name, err)
		}
		full := s.step%fullCheckEvery == 0
		if err := check(scope, full); err != nil {
			return fmt.Errorf("after the %s step: %w", k.name, err)
		}
	}
	s.step = s.steps + 1
	s.rng = rand.New(rand.NewPCG(s.seed, uint64(s.step)))
	t, _ := time.Parse(time.RFC3339, finaleTime)
	if err := s.setClock(t); err != nil {
		return err
	}
	for _, mo := range s.months() {
		if mo >= monthOf(s.m.now) {
			break
		}
		for _, o := range s.registered() {
			if s.m.closes[o+"|"+mo] != nil {
				continue
			}
			if err := s.mustRun(&billingv1.CloseMonth{PayerAccountId: o, Month: mo}); err != nil {
				return fmt.Errorf("finale: %w", err)
			}
		}
	}
	for _, p := range s.payers() {
		if !s.chance(0.7) {
			continue
		}
		if _, _, err := s.run(s.paymentCmd(p)); err != nil {
			return fmt.Errorf("finale: %w", err)
		}
	}
	// Every credit note with credit left is offered to its payer's invoices.
	for _, p := range s.payers() {
		for _, inv := range s.m.recv[p].invoices {
			if !inv.creditNote() || inv.remaining().Sign() <= 0 || !s.chance(0.7) {
				continue
			}
			if _, _, err := s.run(&billingv1.ApplyCredit{PayerAccountId: p, CreditNoteId: inv.id}); err != nil {
				return fmt.Errorf("finale: %w", err)
			}
		}
	}
	return check(checkScope{}, true)
}
