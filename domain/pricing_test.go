package domain

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const (
	acctA2 = "111111111112"
	acctB3 = "222222222223"
	acctB4 = "222222222224"
	acctC2 = "333333333334"
)

// pricingWorld: payer A (with member A2) pays for source B (members B3, B4) under
// the accepted transfer rt-1 starting 2026-09, so the transfer billing group
// tbg-rt-1 holds B, B3 and B4 (T8). Organization C is registered and unrelated.
func pricingWorld(t *testing.T) *scenario {
	t.Helper()
	return given(t).
		Do(&billingv1.RegisterOrganization{ManagementAccountId: payerA, Name: "A", MemberAccountIds: []string{acctA2}}).
		Do(&billingv1.RegisterOrganization{ManagementAccountId: sourceB, Name: "B", MemberAccountIds: []string{acctB3, acctB4}}).
		Do(&billingv1.RegisterOrganization{ManagementAccountId: orgC, Name: "C", MemberAccountIds: []string{acctC2}}).
		Do(invite("rt-1", payerA, sourceB, "2026-09"), accept("rt-1"))
}

func newRule(id, typ, scope, pct string) *billingv1.CreatePricingRule {
	return &billingv1.CreatePricingRule{PricingRuleId: id, OwnerAccountId: payerA, Name: id, Type: typ, Scope: scope, ModifierPercentage: pct}
}

func serviceRule(id, typ, service, pct string) *billingv1.CreatePricingRule {
	r := newRule(id, typ, "SERVICE", pct)
	r.Service = service
	return r
}

func skuRule(id, typ, service, usageType, operation, pct string) *billingv1.CreatePricingRule {
	r := newRule(id, typ, "SKU", pct)
	r.Service, r.UsageType, r.Operation = service, usageType, operation
	return r
}

func newPlan(id string, rules ...string) *billingv1.CreatePricingPlan {
	return &billingv1.CreatePricingPlan{PricingPlanId: id, OwnerAccountId: payerA, Name: id, PricingRuleIds: rules}
}

func newGroup(id, plan, primary string, accounts ...string) *billingv1.CreateBillingGroup {
	return &billingv1.CreateBillingGroup{BillingGroupId: id, OwnerAccountId: payerA, Name: id, PrimaryAccountId: primary, AccountIds: accounts, PricingPlanId: plan}
}

func evs(payloads ...proto.Message) []*billingv1.Event {
	out := make([]*billingv1.Event, len(payloads))
	for i, p := range payloads {
		out[i] = NewEvent(p)
	}
	return out
}

func (s *scenario) rule(id string) PricingRule {
	return FoldPricingRule(s.w[PricingRuleStream(payerA, id)])
}
func (s *scenario) plan(id string) PricingPlan {
	return FoldPricingPlan(s.w[PricingPlanStream(payerA, id)])
}
func (s *scenario) group(id string) BillingGroup {
	return FoldBillingGroup(s.w[BillingGroupStream(payerA, id)])
}

// ---------------------------------------------------------------------------
// P1: rules.

func TestP1_RuleIsCreatedWithItsIdReserved(t *testing.T) {
	c := skuRule("pr-sku", "MARKUP", "AmazonS3", "TimedStorage-ByteHrs", "", "20.00")
	pricingWorld(t).When(c).Then(
		Change{Stream: "billing.pricing.111111111111.rule.pr-sku", Events: evs(&billingv1.PricingRuleCreated{Rule: &billingv1.PricingRule{
			PricingRuleId: "pr-sku", OwnerAccountId: payerA, Name: "pr-sku", Type: billingv1.PricingRuleType_PRICING_RULE_TYPE_MARKUP,
			Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_SKU, Service: "AmazonS3", UsageType: "TimedStorage-ByteHrs",
			ModifierPercentage: "20", // canonical: "20.00" and "20" are one modifier
		}})},
		Change{Stream: "billing.pricing.index.rule.pr-sku", Events: evs(&billingv1.PricingIdReserved{Kind: "rule", Id: "pr-sku", OwnerAccountId: payerA})},
	)
}

func TestP1_TypeScopeAndMatchFieldsAreValidated(t *testing.T) {
	s := pricingWorld(t)
	be := newRule("pr-be", "MARKUP", "BILLING_ENTITY", "1")
	be.BillingEntity = "AWS Marketplace"
	s.When(be).ThenOK()
	for _, tc := range []struct {
		name      string
		cmd       *billingv1.CreatePricingRule
		fragments []string
	}{
		{"no type", newRule("pr-x", "", "GLOBAL", "1"), []string{"type is required"}},
		{"bad type", newRule("pr-x", "markup", "GLOBAL", "1"), []string{`type "markup"`, "MARKUP, DISCOUNT, TIERING"}},
		{"bad scope", newRule("pr-x", "MARKUP", "REGION", "1"), []string{`scope "REGION"`}},
		{"service rule without service", newRule("pr-x", "MARKUP", "SERVICE", "1"), []string{"service is required for a SERVICE rule"}},
		{"sku without usage type", skuRule("pr-x", "MARKUP", "AmazonS3", "", "", "1"), []string{"usage_type is required for a SKU rule"}},
		{"global with service", func() *billingv1.CreatePricingRule {
			r := serviceRule("pr-x", "MARKUP", "AmazonS3", "1")
			r.Scope = "GLOBAL"
			return r
		}(), []string{"service does not apply to a GLOBAL rule"}},
		{"entity rule without entity", newRule("pr-x", "MARKUP", "BILLING_ENTITY", "1"), []string{"billing_entity is required"}},
		{"service rule with operation", func() *billingv1.CreatePricingRule {
			r := serviceRule("pr-x", "MARKUP", "AmazonS3", "1")
			r.Operation = "PutObject"
			return r
		}(), []string{"operation does not apply to a SERVICE rule"}},
		{"bad id", newRule("pr x", "MARKUP", "GLOBAL", "1"), []string{"pricing_rule_id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.When(tc.cmd).ThenError(CodeInvalidArgument, tc.fragments...)
		})
	}
}

func TestP1_ModifierIsAtLeastZeroWithAtMostTwoDecimalsAndDiscountAtMost100(t *testing.T) {
	for _, tc := range []struct {
		typ, pct string
		ok       bool
		fragment string
	}{
		{"MARKUP", "0", true, ""},
		{"MARKUP", "12.5", true, ""},
		{"MARKUP", "12.50", true, ""},
		{"MARKUP", "250", true, ""},
		{"DISCOUNT", "100", true, ""},
		{"DISCOUNT", "100.00", true, ""},
		{"MARKUP", "", false, "modifier_percentage is required"},
		{"MARKUP", "-1", false, "must be ≥ 0"},
		{"MARKUP", "10.125", false, "at most 2 are allowed"},
		{"MARKUP", "ten", false, "not a decimal"},
		{"MARKUP", "NaN", false, "modifier_percentage"},
		{"MARKUP", "1000001", false, "limit of 1000000 percent"},
		{"DISCOUNT", "100.01", false, "DISCOUNT rule is above the limit of 100"},
	} {
		t.Run(tc.typ+" "+tc.pct, func(t *testing.T) {
			r := pricingWorld(t).When(newRule("pr-1", tc.typ, "GLOBAL", tc.pct))
			if tc.ok {
				r.ThenOK()
				return
			}
			r.ThenError(CodeInvalidArgument, tc.fragment, "modifier_percentage")
		})
	}
}

func TestP1_NamesAreAtMost128CharactersWithoutSpaces(t *testing.T) {
	s := pricingWorld(t)
	for _, name := range []string{"", "has space", "tab\there", strings.Repeat("n", 129)} {
		c := newRule("pr-1", "MARKUP", "GLOBAL", "1")
		c.Name = name
		s.When(c).ThenError(CodeInvalidArgument, "name", "128 characters without spaces")
	}
	c := newRule("pr-1", "MARKUP", "GLOBAL", "1")
	c.Name = strings.Repeat("é", 128)
	s.When(c).ThenOK()
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-1", Name: "two words"}).ThenError(CodeInvalidArgument, "without spaces")
}

func TestP1_TieringRulesAreGlobalAndTakeNoModifier(t *testing.T) {
	s := pricingWorld(t)
	ft := &billingv1.CreatePricingRule{PricingRuleId: "pr-ft", OwnerAccountId: payerA, Name: "free-tier", Type: "TIERING", Scope: "GLOBAL", FreeTierActivated: true}
	s.When(ft).ThenOK()
	if r := s.rule("pr-ft"); r.Type() != RuleTiering || !r.FreeTierActivated() || r.ModifierPercentage() != "" {
		t.Fatalf("rule %+v", r)
	}
	bad := &billingv1.CreatePricingRule{PricingRuleId: "pr-ft2", OwnerAccountId: payerA, Name: "ft", Type: "TIERING", Scope: "SERVICE", Service: "AmazonEC2"}
	s.When(bad).ThenError(CodeInvalidArgument, "TIERING rule has scope GLOBAL")
	bad = &billingv1.CreatePricingRule{PricingRuleId: "pr-ft2", OwnerAccountId: payerA, Name: "ft", Type: "TIERING", Scope: "GLOBAL", ModifierPercentage: "5"}
	s.When(bad).ThenError(CodeInvalidArgument, "takes no modifier_percentage")
	bad = &billingv1.CreatePricingRule{PricingRuleId: "pr-ft2", OwnerAccountId: payerA, Name: "ft", Type: "MARKUP", Scope: "GLOBAL", ModifierPercentage: "5", FreeTierActivated: true}
	s.When(bad).ThenError(CodeInvalidArgument, "TIERING rules only")
	// Deactivating the free tier is an update of the tiering rule.
	off := false
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ft", FreeTierActivated: &off}).ThenOK()
	if s.rule("pr-ft").FreeTierActivated() {
		t.Fatal("free tier still activated")
	}
}

func TestP1_IdsAreUniqueForEverAndOwnersAreRegisteredManagementAccounts(t *testing.T) {
	s := pricingWorld(t).Do(newRule("pr-1", "MARKUP", "GLOBAL", "1"))
	s.When(newRule("pr-1", "DISCOUNT", "GLOBAL", "1")).ThenError(CodeAlreadyExists, "pr-1", "never reused")
	s.Do(&billingv1.DeletePricingRule{PricingRuleId: "pr-1"})
	s.When(newRule("pr-1", "MARKUP", "GLOBAL", "1")).ThenError(CodeAlreadyExists, "pr-1")
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-1", ModifierPercentage: "2"}).ThenError(CodeNotFound, "pr-1")
	s.When(&billingv1.DeletePricingRule{PricingRuleId: "pr-1"}).ThenError(CodeNotFound, "pr-1")
	c := newRule("pr-2", "MARKUP", "GLOBAL", "1")
	c.OwnerAccountId = orgD
	s.When(c).ThenError(CodeNotFound, "owner organization "+orgD)
	c.OwnerAccountId = acctA2
	s.When(c).ThenError(CodeInvalidArgument, "member account")
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-nope", Name: "x"}).ThenError(CodeNotFound, "pricing rule pr-nope does not exist")
}

func TestP1_UpdateCarriesTheWholeRuleAndKeepsScopeAndKey(t *testing.T) {
	s := pricingWorld(t).Do(serviceRule("pr-ec2", "DISCOUNT", "AmazonEC2", "5"))
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ec2", Type: "MARKUP", ModifierPercentage: "12"}).Then(
		Change{Stream: "billing.pricing.111111111111.rule.pr-ec2", Events: evs(&billingv1.PricingRuleUpdated{Rule: &billingv1.PricingRule{
			PricingRuleId: "pr-ec2", OwnerAccountId: payerA, Name: "pr-ec2", Type: billingv1.PricingRuleType_PRICING_RULE_TYPE_MARKUP,
			Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_SERVICE, Service: "AmazonEC2", ModifierPercentage: "12",
		}})},
	)
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ec2"}).ThenError(CodeInvalidArgument, "nothing to update")
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ec2", Type: "TIERING"}).ThenError(CodeInvalidArgument, "cannot change from MARKUP to TIERING")
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ec2", ModifierPercentage: "150", Type: "DISCOUNT"}).ThenError(CodeInvalidArgument, "limit of 100")
	// A markup of 150% may not become a discount without a new modifier.
	s.Do(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ec2", ModifierPercentage: "150"})
	s.When(&billingv1.UpdatePricingRule{PricingRuleId: "pr-ec2", Type: "DISCOUNT"}).ThenError(CodeInvalidArgument, "limit of 100")
}

// ---------------------------------------------------------------------------
// P2: plans.

func TestP2_PlanHoldsRulesOfItsOwnerAndRecordsItselfOnEachRule(t *testing.T) {
	s := pricingWorld(t).Do(newRule("pr-markup10", "MARKUP", "GLOBAL", "10"), serviceRule("pr-ec2", "DISCOUNT", "AmazonEC2", "5"))
	s.When(newPlan("pp-std", "pr-markup10", "pr-ec2")).Then(
		Change{Stream: "billing.pricing.111111111111.plan.pp-std", Events: evs(&billingv1.PricingPlanCreated{
			PricingPlanId: "pp-std", OwnerAccountId: payerA, Name: "pp-std", Rules: []*billingv1.PricingRuleKey{
				{PricingRuleId: "pr-markup10", Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_GLOBAL},
				{PricingRuleId: "pr-ec2", Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_SERVICE, Service: "AmazonEC2"},
			}})},
		Change{Stream: "billing.pricing.index.plan.pp-std", Events: evs(&billingv1.PricingIdReserved{Kind: "plan", Id: "pp-std", OwnerAccountId: payerA})},
		Change{Stream: "billing.pricing.111111111111.rule.pr-markup10", Events: evs(&billingv1.PricingRulePlanLinked{PricingRuleId: "pr-markup10", PricingPlanId: "pp-std"})},
		Change{Stream: "billing.pricing.111111111111.rule.pr-ec2", Events: evs(&billingv1.PricingRulePlanLinked{PricingRuleId: "pr-ec2", PricingPlanId: "pp-std"})},
	)
	if got := s.plan("pp-std").RuleIDs(); fmt.Sprint(got) != "[pr-markup10 pr-ec2]" {
		t.Fatalf("rules %v", got)
	}
}

func TestP2_TwoRulesWithTheSameScopeAndKeyInOnePlanAreRejected(t *testing.T) {
	s := pricingWorld(t).Do(
		newRule("g-markup", "MARKUP", "GLOBAL", "10"), newRule("g-discount", "DISCOUNT", "GLOBAL", "3"),
		serviceRule("ec2-a", "DISCOUNT", "AmazonEC2", "5"), serviceRule("ec2-b", "MARKUP", "AmazonEC2", "5"),
		skuRule("sku-a", "MARKUP", "AmazonS3", "TimedStorage-ByteHrs", "", "20"),
		skuRule("sku-b", "DISCOUNT", "AmazonS3", "TimedStorage-ByteHrs", "", "1"),
		skuRule("sku-op", "MARKUP", "AmazonS3", "TimedStorage-ByteHrs", "StandardStorage", "30"),
		&billingv1.CreatePricingRule{PricingRuleId: "ft-on", OwnerAccountId: payerA, Name: "ft-on", Type: "TIERING", Scope: "GLOBAL", FreeTierActivated: true},
		&billingv1.CreatePricingRule{PricingRuleId: "ft-off", OwnerAccountId: payerA, Name: "ft-off", Type: "TIERING", Scope: "GLOBAL"},
	)
	s.When(newPlan("pp-1", "g-markup", "g-discount")).ThenError(CodeInvalidArgument, "g-markup and g-discount", "scope and key GLOBAL", "(P2)")
	s.When(newPlan("pp-1", "ec2-a", "ec2-b")).ThenError(CodeInvalidArgument, "SERVICE AmazonEC2")
	s.When(newPlan("pp-1", "sku-a", "sku-b")).ThenError(CodeInvalidArgument, "SKU AmazonS3/TimedStorage-ByteHrs")
	s.When(newPlan("pp-1", "ft-on", "ft-off")).ThenError(CodeInvalidArgument, "TIERING GLOBAL")
	// Different keys, and free tier beside a global markup, are fine.
	s.When(newPlan("pp-1", "g-markup", "ec2-a", "sku-a", "sku-op", "ft-on")).ThenOK()
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "pp-1", PricingRuleIds: []string{"sku-b"}}).ThenError(CodeInvalidArgument, "sku-a and sku-b")
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "pp-1", PricingRuleIds: []string{"ec2-a"}}).ThenError(CodeAlreadyExists, "already in pricing plan pp-1")
	// After the clashing rule leaves, its rival may join.
	s.Do(&billingv1.DisassociatePricingRules{PricingPlanId: "pp-1", PricingRuleIds: []string{"sku-a"}})
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "pp-1", PricingRuleIds: []string{"sku-b"}}).ThenOK()
}

func TestP2_APlanHoldsAtMost500Rules(t *testing.T) {
	s := pricingWorld(t)
	var ids []string
	for i := range MaxRulesPerPlan + 1 {
		id := fmt.Sprintf("pr-%03d", i)
		s.Do(skuRule(id, "MARKUP", "AmazonEC2", fmt.Sprintf("BoxUsage:%d", i), "", "1"))
		ids = append(ids, id)
	}
	s.When(newPlan("pp-big", ids...)).ThenError(CodeQuotaExceeded, "501 rules", "limit is 500 rules per pricing plan")
	out := s.When(newPlan("pp-big", ids[:500]...)).ThenOK()
	if len(out.Changes) != 502 { // plan, index, 500 rules
		t.Fatalf("%d changes", len(out.Changes))
	}
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "pp-big", PricingRuleIds: ids[500:]}).ThenError(CodeQuotaExceeded, "limit is 500 rules per pricing plan")
	s.Do(&billingv1.DisassociatePricingRules{PricingPlanId: "pp-big", PricingRuleIds: ids[:1]})
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "pp-big", PricingRuleIds: ids[500:]}).ThenOK()
}

func TestP2_RulesInAPlanExistAndBelongToThePlansOwner(t *testing.T) {
	s := pricingWorld(t).Do(newRule("pr-a", "MARKUP", "GLOBAL", "1"))
	other := newRule("pr-c", "MARKUP", "GLOBAL", "1")
	other.OwnerAccountId = orgC
	s.Do(other)
	s.When(newPlan("pp-1", "pr-a", "pr-c")).ThenError(CodePermissionDenied, "pr-c belongs to "+orgC, "plan's owner "+payerA)
	s.When(newPlan("pp-1", "pr-nope")).ThenError(CodeNotFound, "pr-nope")
	s.When(newPlan("pp-1", "pr-a", "pr-a")).ThenError(CodeInvalidArgument, "twice")
	s.Do(&billingv1.DeletePricingRule{PricingRuleId: "pr-a"})
	s.When(newPlan("pp-1", "pr-a")).ThenError(CodeNotFound, "pr-a")
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "pp-nope", PricingRuleIds: []string{"pr-c"}}).ThenError(CodeNotFound, "pricing plan pp-nope")
	s.When(&billingv1.DisassociatePricingRules{PricingPlanId: "pp-nope", PricingRuleIds: []string{"pr-c"}}).ThenError(CodeNotFound, "pp-nope")
}

func TestP2_ManagedPlansAlwaysExistBelongToNobodyAndNeverChange(t *testing.T) {
	s := pricingWorld(t).Do(newRule("pr-a", "MARKUP", "GLOBAL", "1"))
	for _, id := range []string{"BASIC", "PASSTHROUGH", "basic"} {
		s.When(newPlan(id)).ThenError(CodeAlreadyExists, "managed plan")
	}
	s.When(&billingv1.AssociatePricingRules{PricingPlanId: "BASIC", PricingRuleIds: []string{"pr-a"}}).ThenError(CodeFailedPrecondition, "BASIC is a managed pricing plan")
	s.When(&billingv1.DisassociatePricingRules{PricingPlanId: "PASSTHROUGH", PricingRuleIds: []string{"pr-a"}}).ThenError(CodeFailedPrecondition, "managed")
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "PASSTHROUGH"}).ThenError(CodeFailedPrecondition, "managed")
	s.When(&billingv1.UpdatePricingPlan{PricingPlanId: "BASIC", Name: "mine"}).ThenError(CodeFailedPrecondition, "managed")
	// Every payer may use them: A and C both group their own accounts under PASSTHROUGH and BASIC.
	s.When(newGroup("bg-a", "PASSTHROUGH", payerA)).ThenOK()
	cGroup := newGroup("bg-c", "BASIC", orgC, acctC2)
	cGroup.OwnerAccountId = orgC
	out := s.When(cGroup).ThenOK()
	for _, ch := range out.Changes {
		if strings.Contains(ch.Stream, ".plan.") {
			t.Fatalf("a managed plan has no stream, got a change on %s", ch.Stream)
		}
	}
}

func TestP2_DeletingARuleUsedByAPlanIsRejectedNamingThePlans(t *testing.T) {
	s := pricingWorld(t).Do(newRule("pr-a", "MARKUP", "GLOBAL", "1"), newPlan("pp-1", "pr-a"), newPlan("pp-2", "pr-a"))
	s.When(&billingv1.DeletePricingRule{PricingRuleId: "pr-a"}).ThenError(CodeFailedPrecondition, "used by pricing plans pp-1, pp-2")
	s.Do(&billingv1.DisassociatePricingRules{PricingPlanId: "pp-1", PricingRuleIds: []string{"pr-a"}})
	s.When(&billingv1.DeletePricingRule{PricingRuleId: "pr-a"}).ThenError(CodeFailedPrecondition, "used by pricing plans pp-2")
	// Deleting the plan releases its rules, in the same append.
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "pp-2"}).Then(
		Change{Stream: "billing.pricing.111111111111.plan.pp-2", Events: evs(&billingv1.PricingPlanDeleted{PricingPlanId: "pp-2", OwnerAccountId: payerA})},
		Change{Stream: "billing.pricing.111111111111.rule.pr-a", Events: evs(&billingv1.PricingRulePlanUnlinked{PricingRuleId: "pr-a", PricingPlanId: "pp-2"})},
	)
	s.When(&billingv1.DeletePricingRule{PricingRuleId: "pr-a"}).ThenOK()
	s.When(&billingv1.DisassociatePricingRules{PricingPlanId: "pp-1", PricingRuleIds: []string{"pr-a"}}).ThenError(CodeNotFound, "not in pricing plan pp-1")
}

func TestP2_TheIssueWalkThroughOfRulesAndPlans(t *testing.T) {
	s := pricingWorld(t)
	for _, c := range []proto.Message{
		newRule("pr-markup10", "MARKUP", "GLOBAL", "10"),
		serviceRule("pr-ec2", "DISCOUNT", "AmazonEC2", "5"),
		skuRule("pr-sku", "MARKUP", "AmazonS3", "TimedStorage-ByteHrs", "", "20"),
		&billingv1.CreatePricingRule{PricingRuleId: "pr-ft", OwnerAccountId: payerA, Name: "free-tier", Type: "TIERING", Scope: "GLOBAL", FreeTierActivated: true},
		newPlan("pp-std", "pr-markup10", "pr-ec2"),
		&billingv1.AssociatePricingRules{PricingPlanId: "pp-std", PricingRuleIds: []string{"pr-sku"}},
		&billingv1.DisassociatePricingRules{PricingPlanId: "pp-std", PricingRuleIds: []string{"pr-sku"}},
		&billingv1.UpdatePricingRule{PricingRuleId: "pr-markup10", ModifierPercentage: "12"},
		&billingv1.DeletePricingRule{PricingRuleId: "pr-sku"},
	} {
		s.When(c).ThenOK()
	}
	if got := s.rule("pr-markup10").ModifierPercentage(); got != "12" {
		t.Fatalf("modifier %s", got)
	}
	if got := s.plan("pp-std").RuleIDs(); fmt.Sprint(got) != "[pr-markup10 pr-ec2]" {
		t.Fatalf("rules %v", got)
	}
}

// ---------------------------------------------------------------------------
// P4: billing groups.

func TestP4_AGroupHasExactlyOnePlanOfItsOwnerAndGuardsEveryStreamItReliesOn(t *testing.T) {
	s := pricingWorld(t).Do(newRule("pr-a", "MARKUP", "GLOBAL", "10"), newPlan("pp-std", "pr-a"))
	s.When(newGroup("bg-1", "", sourceB)).ThenError(CodeInvalidArgument, "exactly one pricing plan")
	s.When(newGroup("bg-1", "pp-nope", sourceB)).ThenError(CodeNotFound, "pp-nope")
	cPlan := newPlan("pp-c")
	cPlan.OwnerAccountId = orgC
	s.Do(cPlan)
	s.When(newGroup("bg-1", "pp-c", sourceB)).ThenError(CodePermissionDenied, "pp-c belongs to "+orgC)
	s.When(newGroup("bg-acme", "pp-std", sourceB, sourceB, acctB3)).Then(
		Change{Stream: "billing.pricing.111111111111.group.bg-acme", Events: evs(&billingv1.BillingGroupCreated{
			BillingGroupId: "bg-acme", OwnerAccountId: payerA, Name: "bg-acme", PrimaryAccountId: sourceB,
			AccountIds: []string{sourceB, acctB3}, PricingPlanId: "pp-std",
		})},
		Change{Stream: "billing.pricing.index.group.bg-acme", Events: evs(&billingv1.PricingIdReserved{Kind: "group", Id: "bg-acme", OwnerAccountId: payerA})},
		Change{Stream: "billing.pricing.111111111111.plan.pp-std", Events: evs(&billingv1.PricingPlanGroupLinked{PricingPlanId: "pp-std", BillingGroupId: "bg-acme"})},
		Change{Stream: "billing.account." + sourceB, Events: evs(&billingv1.AccountGroupAssigned{AccountId: sourceB, OwnerAccountId: payerA, BillingGroupId: "bg-acme"})},
		Change{Stream: "billing.account." + acctB3, Events: evs(&billingv1.AccountGroupAssigned{AccountId: acctB3, OwnerAccountId: payerA, BillingGroupId: "bg-acme"})},
	)
	// The primary joins the accounts when missing.
	s.When(newGroup("bg-own", "BASIC", acctA2)).ThenOK()
	if got := s.group("bg-own").Accounts(); fmt.Sprint(got) != "["+acctA2+"]" {
		t.Fatalf("accounts %v", got)
	}
	s.When(newGroup("tbg-mine", "BASIC", payerA)).ThenError(CodeInvalidArgument, "reserved for transfer billing groups")
	s.When(newGroup("bg-acme", "BASIC", payerA)).ThenError(CodeAlreadyExists, "bg-acme")
	s.When(&billingv1.UpdateBillingGroup{BillingGroupId: "bg-acme"}).ThenError(CodeInvalidArgument, "nothing to update")
	s.When(&billingv1.UpdateBillingGroup{BillingGroupId: "bg-nope", Name: "x"}).ThenError(CodeNotFound, "billing group bg-nope")
}

func TestP4_DeletingAPlanUsedByAGroupIsRejectedNamingTheGroups(t *testing.T) {
	s := pricingWorld(t).Do(newPlan("pp-std"), newPlan("pp-other"), newGroup("bg-acme", "pp-std", sourceB), newGroup("bg-own", "pp-std", payerA))
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "pp-std"}).ThenError(CodeFailedPrecondition, "used by billing groups bg-acme, bg-own")
	// Switching plans moves the back-reference in the same append.
	s.When(&billingv1.UpdateBillingGroup{BillingGroupId: "bg-acme", PricingPlanId: "pp-other"}).Then(
		Change{Stream: "billing.pricing.111111111111.group.bg-acme", Events: evs(&billingv1.BillingGroupUpdated{
			BillingGroupId: "bg-acme", OwnerAccountId: payerA, Name: "bg-acme", PricingPlanId: "pp-other", PreviousPricingPlanId: "pp-std"})},
		Change{Stream: "billing.pricing.111111111111.plan.pp-std", Events: evs(&billingv1.PricingPlanGroupUnlinked{PricingPlanId: "pp-std", BillingGroupId: "bg-acme"})},
		Change{Stream: "billing.pricing.111111111111.plan.pp-other", Events: evs(&billingv1.PricingPlanGroupLinked{PricingPlanId: "pp-other", BillingGroupId: "bg-acme"})},
	)
	s.Do(&billingv1.UpdateBillingGroup{BillingGroupId: "bg-own", PricingPlanId: "PASSTHROUGH", Name: "own"})
	if g := s.group("bg-own"); g.PricingPlanID() != PlanPassthrough || g.Name() != "own" {
		t.Fatalf("group %+v", g)
	}
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "pp-std"}).ThenOK()
	s.When(&billingv1.UpdateBillingGroup{BillingGroupId: "bg-acme", PricingPlanId: "pp-std"}).ThenError(CodeNotFound, "pp-std")
	// Deleting a group releases its plan.
	s.Do(&billingv1.DeleteBillingGroup{BillingGroupId: "bg-acme"})
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "pp-other"}).ThenOK()
}

func TestP4_AGroupHoldsAtMost1000Accounts(t *testing.T) {
	// Payer A owns 1,002 accounts: itself, 998 members, 3 more added.
	var members []string
	for i := range 998 {
		members = append(members, fmt.Sprintf("1111%08d", 100+i))
	}
	s := given(t).Do(&billingv1.RegisterOrganization{ManagementAccountId: payerA, Name: "A", MemberAccountIds: members})
	extra := []string{"111199999997", "111199999998", "111199999999"}
	for _, a := range extra {
		s.Do(&billingv1.AddAccount{ManagementAccountId: payerA, AccountId: a})
	}
	all := append(append([]string{payerA}, members...), extra...) // 1,002
	s.When(newGroup("bg-big", "BASIC", payerA, all[:1001]...)).ThenError(CodeQuotaExceeded, "1001 accounts", "limit is 1000 accounts per billing group")
	s.When(newGroup("bg-big", "BASIC", payerA, all[:991]...)).ThenError(CodeInvalidArgument, "at most 990 accounts per command")
	s.When(newGroup("bg-big", "BASIC", payerA, all[:990]...)).ThenOK()
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-big", AccountIds: all[990:1001]}).ThenError(CodeQuotaExceeded, "limit is 1000 accounts per billing group")
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-big", AccountIds: all[990:1000]}).ThenOK()
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-big", AccountIds: all[1000:1001]}).ThenError(CodeQuotaExceeded, "1001 accounts")
}

func TestP4_AnAccountIsInAtMostOneBillingGroupOfAPayerInAMonth(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-1", "BASIC", sourceB, acctB3))
	s.When(newGroup("bg-2", "BASIC", acctB4, acctB3)).ThenError(CodeFailedPrecondition, "account "+acctB3+" is already in billing group bg-1", "(P4)")
	s.Do(newGroup("bg-2", "BASIC", acctB4))
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-2", AccountIds: []string{acctB3}}).ThenError(CodeFailedPrecondition, "bg-1")
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{acctB3}}).ThenError(CodeAlreadyExists, "already in billing group bg-1")
	// Leaving one group frees the account for another; both moves are on its stream.
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{acctB3}}).Then(
		Change{Stream: "billing.pricing.111111111111.group.bg-1", Events: evs(&billingv1.BillingGroupAccountsDisassociated{BillingGroupId: "bg-1", OwnerAccountId: payerA, AccountIds: []string{acctB3}})},
		Change{Stream: "billing.account." + acctB3, Events: evs(&billingv1.AccountGroupReleased{AccountId: acctB3, OwnerAccountId: payerA, BillingGroupId: "bg-1"})},
	)
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-2", AccountIds: []string{acctB3}}).ThenOK()
	// A deleted group holds nothing.
	s.Do(&billingv1.DeleteBillingGroup{BillingGroupId: "bg-2"})
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{acctB3, acctB4}}).ThenOK()
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-2", AccountIds: []string{acctA2}}).ThenError(CodeNotFound, "bg-2 does not exist (deleted)")
}

// Two commands that would put one account into two groups, decided on the same
// state, both write the account's stream: the store accepts the first append and
// refuses the second (its expected version is stale); the pipeline then decides
// the loser again on fresh state, which rejects it.
func TestP4_TwoRacingAssignmentsOfOneAccountShareItsStream(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-1", "BASIC", sourceB), newGroup("bg-2", "BASIC", acctB4))
	first, err1 := Decide(s.w, &billingv1.AssociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{acctB3}}, s.env())
	second, err2 := Decide(s.w, &billingv1.AssociateAccounts{BillingGroupId: "bg-2", AccountIds: []string{acctB3}}, s.env())
	if err1 != nil || err2 != nil {
		t.Fatalf("both decide alone: %v, %v", err1, err2)
	}
	writes := func(o Outcome, stream string) bool {
		for _, ch := range o.Changes {
			if ch.Stream == stream {
				return true
			}
		}
		return false
	}
	if !writes(first, AccountStream(acctB3)) || !writes(second, AccountStream(acctB3)) {
		t.Fatal("both outcomes must write the account stream so that OCC picks one")
	}
	s.apply(first)
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-2", AccountIds: []string{acctB3}}).ThenError(CodeFailedPrecondition, "bg-1")
}

func TestP4_GroupAccountsBelongToOrganizationsThePayerIsOrPaysFor(t *testing.T) {
	s := pricingWorld(t).Do(invite("rt-2", payerA, orgC, "2026-09"))
	s.When(newGroup("bg-1", "BASIC", sourceB, acctC2)).ThenError(CodeFailedPrecondition, "account "+acctC2+" belongs to organization "+orgC, "neither is nor pays for")
	s.When(newGroup("bg-1", "BASIC", sourceB, "999999999999")).ThenError(CodeNotFound, "999999999999 belongs to no registered organization")
	s.When(newGroup("bg-1", "BASIC", sourceB, "12345")).ThenError(CodeInvalidArgument, "12-digit")
	s.When(newGroup("bg-1", "BASIC", sourceB, acctA2, acctB3)).ThenOK() // its own member and a paid-for source
	unregistered := newGroup("bg-unreg", "BASIC", orgD)
	unregistered.OwnerAccountId = orgD
	s.When(unregistered).ThenError(CodeNotFound, "owner organization "+orgD)
	// Once C accepts, A pays for C.
	s.Do(accept("rt-2"))
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{acctC2}}).ThenOK()
}

func TestP4_ATopPayerGroupsTheAccountsOfItsIndirectSources(t *testing.T) {
	// E → C → A: C is the reseller, A the distributor (T7). A prices E's account,
	// and so does C, each in one of its own groups (P7).
	s := pricingWorld(t).Orgs(orgE).Do(invite("rt-ca", payerA, orgC, "2026-09"), accept("rt-ca"), invite("rt-ec", orgC, orgE, "2026-09"), accept("rt-ec"))
	s.When(newGroup("bg-dist", "BASIC", orgE)).ThenOK()
	reseller := newGroup("bg-res", "BASIC", orgE)
	reseller.OwnerAccountId = orgC
	s.When(reseller).ThenOK()
}

func TestP4_APrimaryAccountStaysInItsGroup(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-1", "BASIC", sourceB, acctB3))
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{sourceB}}).ThenError(CodeFailedPrecondition, "primary account")
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "bg-1", AccountIds: []string{acctB4}}).ThenError(CodeNotFound, "not in billing group bg-1")
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "bg-1"}).ThenError(CodeInvalidArgument, "account_ids is required")
}

func TestP4_DeletedGroupIdsAreNeverReused(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-1", "BASIC", sourceB), &billingv1.DeleteBillingGroup{BillingGroupId: "bg-1"})
	s.When(newGroup("bg-1", "BASIC", sourceB)).ThenError(CodeAlreadyExists, "never reused")
	s.When(&billingv1.DeleteBillingGroup{BillingGroupId: "bg-1"}).ThenError(CodeNotFound, "deleted")
	s.When(newGroup("bg-2", "BASIC", sourceB)).ThenOK()
}

// ---------------------------------------------------------------------------
// P5: custom line items.

func newItem(id, group, typ, flat, pct string) *billingv1.CreateCustomLineItem {
	return &billingv1.CreateCustomLineItem{CustomLineItemId: id, BillingGroupId: group, Name: id, ChargeType: typ, FlatAmount: flat, Percentage: pct, StartMonth: "2026-09"}
}

func TestP5_AnItemIsAFlatAmountXorAPercentageOfAnExistingGroup(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-acme", "BASIC", sourceB, acctB3))
	pct := newItem("cli-mgmt", "bg-acme", "FEE", "", "2")
	pct.Services = []string{"AmazonEC2", "AmazonEC2"}
	withServices := newItem("cli-x", "bg-acme", "FEE", "100", "")
	withServices.Services = []string{"AmazonEC2"}
	backwards := newItem("cli-x", "bg-acme", "FEE", "100", "")
	backwards.EndMonth = "2026-08"
	badMonth := newItem("cli-x", "bg-acme", "FEE", "100", "")
	badMonth.StartMonth = "2026-9"
	for _, tc := range []struct {
		name      string
		cmd       *billingv1.CreateCustomLineItem
		code      Code
		fragments []string
	}{
		{"both", newItem("cli-x", "bg-acme", "FEE", "100", "2"), CodeInvalidArgument, []string{"not both"}},
		{"neither", newItem("cli-x", "bg-acme", "FEE", "", ""), CodeInvalidArgument, []string{"flat_amount or percentage is required"}},
		{"negative", newItem("cli-x", "bg-acme", "CREDIT", "-5", ""), CodeInvalidArgument, []string{"≥ 0", "CREDIT"}},
		{"negative percent", newItem("cli-x", "bg-acme", "FEE", "", "-1"), CodeInvalidArgument, []string{"percentage", "≥ 0"}},
		{"percent decimals", newItem("cli-x", "bg-acme", "FEE", "", "1.005"), CodeInvalidArgument, []string{"at most 2"}},
		{"not a number", newItem("cli-x", "bg-acme", "FEE", "lots", ""), CodeInvalidArgument, []string{"flat_amount"}},
		{"charge type", newItem("cli-x", "bg-acme", "DEBIT", "1", ""), CodeInvalidArgument, []string{"FEE, CREDIT"}},
		{"services with flat", withServices, CodeInvalidArgument, []string{"PERCENTAGE items only"}},
		{"service twice", pct, CodeInvalidArgument, []string{"AmazonEC2 twice"}},
		{"end before start", backwards, CodeInvalidArgument, []string{"end_month 2026-08 is before start_month 2026-09"}},
		{"bad month", badMonth, CodeInvalidArgument, []string{"start_month"}},
		{"no group", newItem("cli-x", "bg-nope", "FEE", "1", ""), CodeNotFound, []string{"bg-nope"}},
		{"space in name", func() *billingv1.CreateCustomLineItem {
			c := newItem("cli-x", "bg-acme", "FEE", "1", "")
			c.Name = "managed service"
			return c
		}(), CodeInvalidArgument, []string{"without spaces"}},
		{"account outside the group", func() *billingv1.CreateCustomLineItem {
			c := newItem("cli-x", "bg-acme", "FEE", "1", "")
			c.AccountId = acctB4
			return c
		}(), CodeFailedPrecondition, []string{acctB4 + " is not in billing group bg-acme"}},
	} {
		t.Run(tc.name, func(t *testing.T) { s.When(tc.cmd).ThenError(tc.code, tc.fragments...) })
	}
	// The issue's three items. The first charges the primary account by default.
	s.When(newItem("cli-support", "bg-acme", "FEE", "100", "")).Then(
		Change{Stream: "billing.pricing.111111111111.item.cli-support", Events: evs(&billingv1.CustomLineItemCreated{Item: &billingv1.CustomLineItem{
			CustomLineItemId: "cli-support", OwnerAccountId: payerA, BillingGroupId: "bg-acme", Name: "cli-support",
			ChargeType: billingv1.CustomLineItemChargeType_CUSTOM_LINE_ITEM_CHARGE_TYPE_FEE, FlatAmount: "100", StartMonth: "2026-09", AccountId: sourceB,
		}})},
		Change{Stream: "billing.pricing.index.item.cli-support", Events: evs(&billingv1.PricingIdReserved{Kind: "item", Id: "cli-support", OwnerAccountId: payerA})},
		Change{Stream: "billing.pricing.111111111111.group.bg-acme", Events: evs(&billingv1.BillingGroupItemLinked{BillingGroupId: "bg-acme", CustomLineItemId: "cli-support", AccountId: sourceB})},
	)
	s.When(newItem("cli-mgmt", "bg-acme", "FEE", "", "2")).ThenOK()
	credit := newItem("cli-credit", "bg-acme", "CREDIT", "50", "")
	credit.EndMonth, credit.AccountId = "2026-09", acctB3
	s.When(credit).ThenOK()
	s.When(newItem("cli-support", "bg-acme", "FEE", "1", "")).ThenError(CodeAlreadyExists, "cli-support")
}

func TestP5_ItemsKeepTheirGroupAndTheAccountTheyCharge(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-acme", "BASIC", sourceB, acctB3, acctB4))
	credit := newItem("cli-credit", "bg-acme", "CREDIT", "50", "")
	credit.AccountId = acctB3
	s.Do(credit, newItem("cli-support", "bg-acme", "FEE", "100", ""))
	s.When(&billingv1.DeleteBillingGroup{BillingGroupId: "bg-acme"}).ThenError(CodeFailedPrecondition, "custom line items cli-credit, cli-support")
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "bg-acme", AccountIds: []string{acctB3}}).ThenError(CodeFailedPrecondition, "charged by custom line items cli-credit")
	// Retarget the credit, then B3 may leave.
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-credit", AccountId: acctB4}).Then(
		Change{Stream: "billing.pricing.111111111111.item.cli-credit", Events: evs(&billingv1.CustomLineItemUpdated{Item: &billingv1.CustomLineItem{
			CustomLineItemId: "cli-credit", OwnerAccountId: payerA, BillingGroupId: "bg-acme", Name: "cli-credit",
			ChargeType: billingv1.CustomLineItemChargeType_CUSTOM_LINE_ITEM_CHARGE_TYPE_CREDIT, FlatAmount: "50", StartMonth: "2026-09", AccountId: acctB4,
		}})},
		Change{Stream: "billing.pricing.111111111111.group.bg-acme", Events: evs(&billingv1.BillingGroupItemLinked{BillingGroupId: "bg-acme", CustomLineItemId: "cli-credit", AccountId: acctB4})},
	)
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "bg-acme", AccountIds: []string{acctB3}}).ThenOK()
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-credit", AccountId: acctB3}).ThenError(CodeFailedPrecondition, "not in billing group")
	s.Do(&billingv1.DeleteCustomLineItem{CustomLineItemId: "cli-credit"}, &billingv1.DeleteCustomLineItem{CustomLineItemId: "cli-support"})
	s.When(&billingv1.DeleteCustomLineItem{CustomLineItemId: "cli-support"}).ThenError(CodeNotFound, "cli-support")
	s.When(&billingv1.DeleteBillingGroup{BillingGroupId: "bg-acme"}).ThenOK()
}

func TestP5_UpdateSwitchesBetweenFlatAndPercentageAndOpensTheRange(t *testing.T) {
	s := pricingWorld(t).Do(newGroup("bg-acme", "BASIC", sourceB))
	item := newItem("cli-1", "bg-acme", "FEE", "100", "")
	item.EndMonth = "2026-10"
	s.Do(item)
	load := func() CustomLineItem { return FoldCustomLineItem(s.w[CustomLineItemStream(payerA, "cli-1")]) }
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-1", Percentage: "2.50", Services: []string{"AmazonEC2"}, ChargeType: "CREDIT"}).ThenOK()
	if i := load(); i.FlatAmount() != "" || i.Percentage() != "2.5" || fmt.Sprint(i.Services()) != "[AmazonEC2]" || i.ChargeType() != ChargeCredit || i.EndMonth() != "2026-10" {
		t.Fatalf("item %+v", i)
	}
	recurring := ""
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-1", EndMonth: &recurring, Name: "renamed"}).ThenOK()
	if i := load(); i.EndMonth() != "" || i.Name() != "renamed" || i.Percentage() != "2.5" {
		t.Fatalf("item %+v", i)
	}
	early := "2026-08"
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-1", EndMonth: &early}).ThenError(CodeInvalidArgument, "before start_month")
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-1", Services: []string{"AmazonS3"}}).ThenError(CodeInvalidArgument, "only together with percentage")
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-1", FlatAmount: "10", Percentage: "1"}).ThenError(CodeInvalidArgument, "not both")
	s.When(&billingv1.UpdateCustomLineItem{CustomLineItemId: "cli-1", FlatAmount: "10"}).ThenOK()
	if i := load(); i.FlatAmount() != "10" || i.Percentage() != "" || len(i.Services()) != 0 {
		t.Fatalf("item %+v", i)
	}
}

// ---------------------------------------------------------------------------
// T8: the transfer billing group is a billing group like any other.

func TestT8_TheTransferBillingGroupIsManagedByThePricingCommands(t *testing.T) {
	s := pricingWorld(t).Do(
		&billingv1.AddAccount{ManagementAccountId: sourceB, AccountId: "222222222225"},
		newRule("pr-a", "MARKUP", "GLOBAL", "10"), newPlan("pp-std", "pr-a"),
	)
	if g := s.group("tbg-rt-1"); g.PricingPlanID() != PlanBasic || g.StartMonth() != "2026-09" || len(g.Accounts()) != 3 {
		t.Fatalf("transfer group %+v", g)
	}
	// An account B added after the acceptance joins its transfer group from the transfer's start.
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "tbg-rt-1", AccountIds: []string{"222222222225"}}).Then(
		Change{Stream: "billing.pricing.111111111111.group.tbg-rt-1", Events: evs(&billingv1.BillingGroupAccountsAssociated{BillingGroupId: "tbg-rt-1", OwnerAccountId: payerA, AccountIds: []string{"222222222225"}})},
		Change{Stream: "billing.account.222222222225", Events: evs(&billingv1.AccountGroupAssigned{AccountId: "222222222225", OwnerAccountId: payerA, BillingGroupId: "tbg-rt-1", FromMonth: "2026-09"})},
	)
	s.When(&billingv1.UpdateBillingGroup{BillingGroupId: "tbg-rt-1", PricingPlanId: "pp-std", Name: "acme"}).ThenOK()
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "pp-std"}).ThenError(CodeFailedPrecondition, "tbg-rt-1")
	s.When(&billingv1.CreateCustomLineItem{CustomLineItemId: "cli-1", BillingGroupId: "tbg-rt-1", Name: "support", ChargeType: "FEE", FlatAmount: "10", StartMonth: "2026-09"}).ThenOK()
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "tbg-rt-1", AccountIds: []string{acctB4}}).ThenOK()
	s.When(&billingv1.DisassociateAccounts{BillingGroupId: "tbg-rt-1", AccountIds: []string{sourceB}}).ThenError(CodeFailedPrecondition, "primary")
	if g := s.group("tbg-rt-1"); g.Name() != "acme" || g.PricingPlanID() != "pp-std" || fmt.Sprint(g.Accounts()) != "["+sourceB+" "+acctB3+" 222222222225]" || fmt.Sprint(g.Items()) != "[cli-1]" {
		t.Fatalf("transfer group %+v", g)
	}
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "tbg-rt-9", AccountIds: []string{acctB4}}).ThenError(CodeNotFound, "tbg-rt-9")
}

func TestT8_AcceptanceRecordsTheInvitationsPlanOnThePlan(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB).Do(newPlan("pp-std"), &billingv1.InviteBillSource{TransferId: "rt-1", PayerAccountId: payerA, SourceAccountId: sourceB, StartMonth: "2026-09", PricingPlanId: "pp-std"})
	out := s.When(accept("rt-1")).ThenOK()
	last := out.Changes[len(out.Changes)-1]
	if last.Stream != PricingPlanStream(payerA, "pp-std") || last.Events[0].GetPricingPlanGroupLinked().GetBillingGroupId() != "tbg-rt-1" {
		t.Fatalf("last change %v", last)
	}
	s.When(&billingv1.DeletePricingPlan{PricingPlanId: "pp-std"}).ThenError(CodeFailedPrecondition, "used by billing groups tbg-rt-1")
}

func TestT8_AnotherGroupOfThePayerOverridesTheTransferBillingGroup(t *testing.T) {
	// The issue's walk-through: after the acceptance, the payer groups the
	// source's accounts (the primary included) in a group of its own.
	s := pricingWorld(t).Do(newPlan("pp-std"))
	s.When(newGroup("bg-acme", "pp-std", sourceB, sourceB, acctB3)).ThenOK()
	groups := []BillingGroup{s.group("tbg-rt-1"), s.group("bg-acme")}
	covers := func(string) bool { return true }
	for acct, want := range map[string]string{sourceB: "bg-acme", acctB3: "bg-acme", acctB4: "tbg-rt-1"} {
		if g, ok := GroupForAccount(groups, acct, covers); !ok || g.ID() != want {
			t.Errorf("account %s priced by %q, want %s", acct, g.ID(), want)
		}
	}
	if _, ok := GroupForAccount(groups, acctB4, func(string) bool { return false }); ok {
		t.Error("a transfer group prices only the months of its transfer")
	}
	// An account that another group prices cannot be added to the transfer group.
	s.Do(&billingv1.DisassociateAccounts{BillingGroupId: "tbg-rt-1", AccountIds: []string{acctB3}})
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "tbg-rt-1", AccountIds: []string{acctB3}}).ThenError(CodeFailedPrecondition, "already in billing group bg-acme")
	// Nor can a second group of the payer take it.
	s.When(newGroup("bg-two", "BASIC", acctB3)).ThenError(CodeFailedPrecondition, "bg-acme")
}

func TestT8_TransferGroupsOfSuccessiveTransfersCoverDisjointMonths(t *testing.T) {
	// B leaves A at the end of September and comes back from December: two
	// transfer groups of A hold B's accounts, for disjoint months.
	s := pricingWorld(t).At("2026-09-10T00:00:00Z").Do(withdraw("rt-1", "2026-09", payerA)).
		At("2026-10-05T00:00:00Z").Do(invite("rt-2", payerA, sourceB, "2026-12"), accept("rt-2"))
	s.Do(&billingv1.DisassociateAccounts{BillingGroupId: "tbg-rt-2", AccountIds: []string{acctB4}})
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "tbg-rt-2", AccountIds: []string{acctB4}}).ThenOK() // tbg-rt-1 prices it in 2026-09 only
	s.Do(&billingv1.DisassociateAccounts{BillingGroupId: "tbg-rt-2", AccountIds: []string{acctB4}})
	// A group without a transfer prices every month, so it conflicts with neither...
	s.When(newGroup("bg-b4", "BASIC", acctB4)).ThenOK()
	// ...and the transfer group cannot take the account back while it does.
	s.When(&billingv1.AssociateAccounts{BillingGroupId: "tbg-rt-2", AccountIds: []string{acctB4}}).ThenError(CodeFailedPrecondition, "bg-b4")
}
