package domain

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const (
	payerA  = "111111111111"
	sourceB = "222222222222"
	orgC    = "333333333333"
	orgD    = "444444444444"
	orgE    = "555555555555"
)

func invite(tid, payer, source, month string) *billingv1.InviteBillSource {
	return &billingv1.InviteBillSource{TransferId: tid, PayerAccountId: payer, SourceAccountId: source, StartMonth: month}
}
func accept(tid string) *billingv1.AcceptTransfer { return &billingv1.AcceptTransfer{TransferId: tid} }
func decline(tid string) *billingv1.DeclineTransfer {
	return &billingv1.DeclineTransfer{TransferId: tid}
}
func cancel(tid string) *billingv1.CancelTransfer { return &billingv1.CancelTransfer{TransferId: tid} }
func expire(tid string) *billingv1.ExpireTransfer { return &billingv1.ExpireTransfer{TransferId: tid} }
func withdraw(tid, month, by string) *billingv1.WithdrawTransfer {
	return &billingv1.WithdrawTransfer{TransferId: tid, EndMonth: month, WithdrawnBy: by}
}
func ts(s string) *timestamppb.Timestamp { return timestamppb.New(at(s)) }

func TestT1_InviteYourselfIsRejected(t *testing.T) {
	given(t).Orgs(payerA).
		When(invite("rt-1", payerA, payerA, "2026-09")).
		ThenError(CodeSourceAndTargetCannotMatch, payerA)
}

func TestT1_OnlyAManagementAccountInvitesAndIsInvited(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB).Do(&billingv1.AddAccount{ManagementAccountId: payerA, AccountId: "111111111112"})
	s.When(invite("rt-1", "111111111112", sourceB, "2026-09")).ThenError(CodeInvalidArgument, "member account", payerA)
	s.When(invite("rt-1", payerA, orgC, "2026-09")).ThenError(CodeNotFound, "source organization "+orgC)
	s.When(invite("rt-1", orgC, sourceB, "2026-09")).ThenError(CodeNotFound, "payer organization "+orgC)
	s.When(invite("rt-1", "12345", sourceB, "2026-09")).ThenError(CodeInvalidArgument, "payer_account_id", "12-digit")
}

func TestT1_InvitationRecordsTheTransferOnEveryStreamItGuards(t *testing.T) {
	link := &billingv1.TransferLink{
		TransferId: "rt-1", SourceAccountId: sourceB, PayerAccountId: payerA,
		StartTime: ts("2026-09-01T00:00:00Z"), State: billingv1.TransferLinkState_TRANSFER_LINK_STATE_REQUESTED,
		ExpiresAt: ts("2026-08-25T12:00:00Z"),
	}
	given(t).Orgs(payerA, sourceB).
		When(&billingv1.InviteBillSource{TransferId: "rt-1", PayerAccountId: payerA, SourceAccountId: sourceB, StartMonth: "2026-09", PricingPlanId: "pp-std", Notes: "hello"}).
		Then(
			Change{Stream: "billing.transfer.rt-1", Events: []*billingv1.Event{NewEvent(&billingv1.BillSourceInvited{
				TransferId: "rt-1", PayerAccountId: payerA, SourceAccountId: sourceB,
				StartTime: ts("2026-09-01T00:00:00Z"), PricingPlanId: "pp-std", Notes: "hello",
				ExpiresAt: ts("2026-08-25T12:00:00Z"), InvitedAt: ts("2026-08-10T12:00:00Z"),
			})}},
			Change{Stream: "billing.org." + sourceB, Events: []*billingv1.Event{NewEvent(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_SOURCE, Link: link})}},
			Change{Stream: "billing.org." + payerA, Events: []*billingv1.Event{NewEvent(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_PAYER, Link: link})}},
		)
}

func TestT1_GeneratedTransferIDWhenAbsent(t *testing.T) {
	out := given(t).Orgs(payerA, sourceB).When(invite("", payerA, sourceB, "2026-09")).ThenOK()
	if out.AggregateID != "rt-generated" || out.Changes[0].Stream != "billing.transfer.rt-generated" {
		t.Fatalf("got id %q stream %q", out.AggregateID, out.Changes[0].Stream)
	}
}

func TestT2_StartMonthMustBeInTheFuture(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB).At("2026-08-10T12:00:00Z")
	s.When(invite("rt-1", payerA, sourceB, "2026-08")).ThenError(CodeStartDateTooEarly, "2026-08")
	s.When(invite("rt-1", payerA, sourceB, "2026-07")).ThenError(CodeStartDateTooEarly)
	// Two days before the start is the acceptance deadline: inviting after it is too early too.
	s.At("2026-08-31T00:00:00Z").When(invite("rt-1", payerA, sourceB, "2026-09")).ThenError(CodeStartDateTooEarly, "too close")
}

func TestT2_StartMonthAtMostTwelveMonthsAhead(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB, orgC).At("2026-08-10T12:00:00Z")
	s.When(invite("rt-1", payerA, sourceB, "2027-09")).ThenError(CodeStartDateTooLate, "2027-08")
	s.When(invite("rt-1", payerA, sourceB, "2027-08")).ThenOK()
}

func TestT2_MalformedStartMonthIsInvalid(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB)
	for _, m := range []string{"", "2026-13", "2026-9", "Sept", "2026-09-01"} {
		s.When(invite("rt-1", payerA, sourceB, m)).ThenError(CodeInvalidArgument, "start_month")
	}
}

func TestT3_AcceptDeclineCancelFromRequested(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status TransferStatus
	}{
		{"accept", StatusAccepted},
		{"decline", StatusDeclined},
		{"cancel", StatusCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := given(t).Orgs(payerA, sourceB).Do(invite("rt-1", payerA, sourceB, "2026-09"))
			switch tc.name {
			case "accept":
				s.When(accept("rt-1")).ThenOK()
			case "decline":
				s.When(decline("rt-1")).ThenOK()
			case "cancel":
				s.When(cancel("rt-1")).ThenOK()
			}
			tr, _ := s.w.Transfer("rt-1")
			if tr.Status() != tc.status {
				t.Fatalf("status %s, want %s", tr.Status(), tc.status)
			}
			// Every terminal state refuses every other move out of REQUESTED.
			s.When(accept("rt-1")).ThenError(CodeInvalidStateTransition, string(tc.status))
			s.When(decline("rt-1")).ThenError(CodeInvalidStateTransition)
			s.When(cancel("rt-1")).ThenError(CodeInvalidStateTransition)
		})
	}
}

func TestT3_ExpiresFifteenDaysAfterSending(t *testing.T) {
	// Sent 2026-08-01 for a November start: the 15-day limit comes first.
	s := given(t).Orgs(payerA, sourceB).At("2026-08-01T09:00:00Z").Do(invite("rt-1", payerA, sourceB, "2026-11"))
	tr, _ := s.w.Transfer("rt-1")
	if got := tr.ExpiresAt(); !got.Equal(at("2026-08-16T09:00:00Z")) {
		t.Fatalf("expires at %s", got)
	}
	s.At("2026-08-16T08:59:59.999Z").When(expire("rt-1")).ThenError(CodeInvalidStateTransition, "can still be accepted")
	s.At("2026-08-16T09:00:00Z").When(accept("rt-1")).ThenError(CodeInvitationExpired, "2026-08-16T09:00:00Z")
	s.When(decline("rt-1")).ThenError(CodeInvitationExpired)
	s.When(cancel("rt-1")).ThenError(CodeInvitationExpired)
	s.When(expire("rt-1")).Then(
		Change{Stream: "billing.transfer.rt-1", Events: []*billingv1.Event{NewEvent(&billingv1.TransferExpired{TransferId: "rt-1", ExpiredAt: ts("2026-08-16T09:00:00Z")})}},
		Change{Stream: "billing.org." + sourceB, Events: []*billingv1.Event{NewEvent(&billingv1.TransferLinkChanged{Role: billingv1.LinkRole_LINK_ROLE_SOURCE, Link: &billingv1.TransferLink{
			TransferId: "rt-1", SourceAccountId: sourceB, PayerAccountId: payerA, StartTime: ts("2026-11-01T00:00:00Z"),
			State: billingv1.TransferLinkState_TRANSFER_LINK_STATE_CLOSED, ExpiresAt: ts("2026-08-16T09:00:00Z")}})}},
		Change{Stream: "billing.org." + payerA, Events: []*billingv1.Event{NewEvent(&billingv1.TransferLinkChanged{Role: billingv1.LinkRole_LINK_ROLE_PAYER, Link: &billingv1.TransferLink{
			TransferId: "rt-1", SourceAccountId: sourceB, PayerAccountId: payerA, StartTime: ts("2026-11-01T00:00:00Z"),
			State: billingv1.TransferLinkState_TRANSFER_LINK_STATE_CLOSED, ExpiresAt: ts("2026-08-16T09:00:00Z")}})}},
	)
	tr, _ = s.w.Transfer("rt-1")
	if tr.Status() != StatusExpired {
		t.Fatalf("status %s", tr.Status())
	}
	s.When(expire("rt-1")).ThenError(CodeInvalidStateTransition, "EXPIRED")
}

func TestT3_ExpiresTwoDaysBeforeTheStart(t *testing.T) {
	// Sent 2026-04-20 for a 1 May start: accept by 23:59:59 UTC on 29 April.
	s := given(t).Orgs(payerA, sourceB).At("2026-04-20T10:00:00Z").Do(invite("rt-1", payerA, sourceB, "2026-05"))
	tr, _ := s.w.Transfer("rt-1")
	if got := tr.ExpiresAt(); !got.Equal(at("2026-04-30T00:00:00Z")) {
		t.Fatalf("expires at %s", got)
	}
	s.At("2026-04-30T00:00:00Z").When(accept("rt-1")).ThenError(CodeInvitationExpired)
	s.At("2026-04-29T23:59:59Z").When(accept("rt-1")).ThenOK()
}

func TestT4_SecondInvitationOfALiveSourceIsRejected(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB, orgC).Do(invite("rt-1", payerA, sourceB, "2026-09"))
	s.When(invite("rt-2", orgC, sourceB, "2026-10")).ThenError(CodeTransferAlreadyExists, "rt-1", sourceB)
	s.When(invite("rt-2", payerA, sourceB, "2026-10")).ThenError(CodeTransferAlreadyExists)
	s.Do(accept("rt-1"))
	s.When(invite("rt-2", orgC, sourceB, "2026-12")).ThenError(CodeTransferAlreadyExists)
	s.When(invite("rt-1", orgC, orgD, "2026-12")).ThenError(CodeAlreadyExists, "rt-1")
}

func TestT4_ClosedOrEndedTransfersAreNotLive(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB, orgC).Do(invite("rt-1", payerA, sourceB, "2026-09"), decline("rt-1"))
	s.When(invite("rt-2", orgC, sourceB, "2026-09")).ThenOK()
	// An unswept but expired invitation no longer blocks (T3 + T4).
	s.At("2026-08-25T12:00:00Z").When(invite("rt-3", payerA, sourceB, "2026-10")).ThenOK()
	// A withdrawn transfer is live until its end, then a new one can be invited.
	s.Do(accept("rt-3"))
	s.At("2026-10-15T00:00:00Z").Do(withdraw("rt-3", "2026-10", sourceB))
	s.At("2026-10-31T23:59:59.999Z").When(invite("rt-4", orgC, sourceB, "2026-12")).ThenError(CodeTransferAlreadyExists, "rt-3")
	s.At("2026-11-01T00:00:00Z").When(invite("rt-4", orgC, sourceB, "2026-12")).ThenOK()
}

func TestT5_WithdrawEndsAtTheEndOfTheCurrentOrNextMonth(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB).Do(invite("rt-1", payerA, sourceB, "2026-09"), accept("rt-1")).At("2026-10-10T00:00:00Z")
	s.When(withdraw("rt-1", "2026-12", "")).ThenError(CodeEndDateInvalid, "2026-10", "2026-11")
	s.When(withdraw("rt-1", "2026-09", "")).ThenError(CodeEndDateInvalid)
	s.When(withdraw("rt-1", "2026-11", orgC)).ThenError(CodeInvalidArgument, "withdrawn_by")
	s.When(withdraw("rt-1", "2026-11", sourceB)).ThenOK()
	tr, _ := s.w.Transfer("rt-1")
	if tr.Status() != StatusWithdrawn || !tr.End().Equal(at("2026-11-30T23:59:59.999Z")) {
		t.Fatalf("status %s end %s", tr.Status(), tr.End())
	}
	// It cannot be undone or changed.
	s.When(withdraw("rt-1", "2026-10", payerA)).ThenError(CodeInvalidStateTransition, "cannot be undone")
	s.When(accept("rt-1")).ThenError(CodeInvalidStateTransition)
}

func TestT5_OnlyAcceptedTransfersAreWithdrawn(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB).Do(invite("rt-1", payerA, sourceB, "2026-09"))
	s.When(withdraw("rt-1", "2026-08", "")).ThenError(CodeInvalidStateTransition, "REQUESTED")
	s.When(withdraw("rt-404", "2026-08", "")).ThenError(CodeNotFound, "rt-404")
	// Before the start, the end cannot precede the start month.
	s.Do(accept("rt-1"))
	s.When(withdraw("rt-1", "2026-08", "")).ThenError(CodeEndDateInvalid, "before the transfer's start")
	s.When(withdraw("rt-1", "2026-09", "")).ThenOK()
}

func TestT6_LiabilityFollowsTheDates(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB).Do(invite("rt-1", payerA, sourceB, "2026-09"), accept("rt-1"))
	s.At("2026-10-05T00:00:00Z").Do(withdraw("rt-1", "2026-11", payerA))
	for _, tc := range []struct{ month, payer string }{
		{"2026-08", sourceB}, // before the start: the source pays
		{"2026-09", payerA},
		{"2026-10", payerA},
		{"2026-11", payerA},  // the end month is still covered, whole
		{"2026-12", sourceB}, // after the end: the source again
	} {
		got, err := ResolvePayer(s.w, sourceB, mustMonth(tc.month))
		if err != nil || got != tc.payer {
			t.Errorf("%s: payer %s (%v), want %s", tc.month, got, err, tc.payer)
		}
	}
	// A pending or declined invitation moves no liability.
	s2 := given(t).Orgs(payerA, sourceB).Do(invite("rt-1", payerA, sourceB, "2026-09"))
	if got, _ := ResolvePayer(s2.w, sourceB, mustMonth("2026-09")); got != sourceB {
		t.Fatalf("pending invitation: payer %s", got)
	}
}

func mustMonth(s string) Month {
	m, err := ParseMonth(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestT7_TwoLevelChainResolvesToTheTopPayer(t *testing.T) {
	// end customer C → reseller B → distributor A.
	s := given(t).Orgs(payerA, sourceB, orgC).
		Do(invite("rt-ba", payerA, sourceB, "2026-09"), accept("rt-ba"),
			invite("rt-cb", sourceB, orgC, "2026-09"), accept("rt-cb"))
	for _, org := range []string{orgC, sourceB} {
		if got, _ := ResolvePayer(s.w, org, mustMonth("2026-09")); got != payerA {
			t.Fatalf("%s: bill receiver %s, want %s", org, got, payerA)
		}
	}
	// The distributor learned about its indirect source when the chain formed.
	a, _ := s.w.Org(payerA)
	if !a.HasLiveGrandchildren(s.now) {
		t.Fatal("top payer does not see its indirect source")
	}
}

func TestT7_DepthThreeIsRejectedWhicheverEdgeComesLast(t *testing.T) {
	// Chain D → C → B → A built in every order: the last edge is always refused.
	edges := map[string]*billingv1.InviteBillSource{
		"ba": invite("rt-ba", payerA, sourceB, "2026-09"),
		"cb": invite("rt-cb", sourceB, orgC, "2026-09"),
		"dc": invite("rt-dc", orgC, orgD, "2026-09"),
	}
	for _, order := range [][]string{{"ba", "cb", "dc"}, {"dc", "cb", "ba"}, {"ba", "dc", "cb"}, {"cb", "dc", "ba"}, {"dc", "ba", "cb"}, {"cb", "ba", "dc"}} {
		t.Run(order[0]+order[1]+order[2], func(t *testing.T) {
			s := given(t).Orgs(payerA, sourceB, orgC, orgD).Do(edges[order[0]], edges[order[1]])
			s.When(edges[order[2]]).ThenError(CodeChainTooDeep, "two levels")
		})
	}
}

func TestT7_CyclesAreRejected(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB, orgC).Do(invite("rt-ba", payerA, sourceB, "2026-09"))
	s.When(invite("rt-ab", sourceB, payerA, "2026-09")).ThenError(CodeTransferCycle, payerA, sourceB)
	s.Do(invite("rt-cb", sourceB, orgC, "2026-09"))
	s.When(invite("rt-ac", orgC, payerA, "2026-09")).ThenError(CodeTransferCycle)
}

func TestT7_TopPayerIsToldWhenTheChainChanges(t *testing.T) {
	s := given(t).Orgs(payerA, sourceB, orgC, orgD).
		Do(invite("rt-ba", payerA, sourceB, "2026-09"), invite("rt-cb", sourceB, orgC, "2026-09"))
	s.When(invite("rt-dc", orgC, orgD, "2026-09")).ThenError(CodeChainTooDeep)
	out := s.When(decline("rt-cb")).ThenOK()
	streams := []string{}
	for _, c := range out.Changes {
		streams = append(streams, c.Stream)
	}
	want := []string{"billing.transfer.rt-cb", "billing.org." + orgC, "billing.org." + sourceB, "billing.org." + payerA}
	if len(streams) != len(want) {
		t.Fatalf("streams %v, want %v", streams, want)
	}
	for i := range want {
		if streams[i] != want[i] {
			t.Fatalf("streams %v, want %v", streams, want)
		}
	}
	a, _ := s.w.Org(payerA)
	if a.HasLiveGrandchildren(s.now) {
		t.Fatal("declined grandchild still counted")
	}
	// With the chain gone, D can join under C's old place.
	s.When(invite("rt-dc", orgC, orgD, "2026-09")).ThenOK()
}

func TestT8_AcceptanceCreatesTheTransferBillingGroup(t *testing.T) {
	s := given(t).Orgs(payerA).
		Do(&billingv1.RegisterOrganization{ManagementAccountId: sourceB, Name: "B", MemberAccountIds: []string{"222222222223"}}).
		Do(&billingv1.AddAccount{ManagementAccountId: sourceB, AccountId: "222222222224"}).
		Do(&billingv1.InviteBillSource{TransferId: "rt-1", PayerAccountId: payerA, SourceAccountId: sourceB, StartMonth: "2026-09", PricingPlanId: "pp-std"})
	out := s.When(accept("rt-1")).ThenOK()
	if out.Created["billing_group_id"] != "tbg-rt-1" {
		t.Fatalf("created %v: the acceptance must report the group it created", out.Created)
	}
	var last Change
	for _, c := range out.Changes {
		if c.Stream == "billing.pricing."+payerA+".group.tbg-rt-1" {
			last = c
		}
	}
	if len(last.Events) != 1 {
		t.Fatalf("no event on the group's stream in %d changes", len(out.Changes))
	}
	g := last.Events[0].GetTransferBillingGroupCreated()
	if g.GetBillingGroupId() != "tbg-rt-1" || g.GetOwnerAccountId() != payerA || g.GetPrimaryAccountId() != sourceB ||
		g.GetPricingPlanId() != "pp-std" || g.GetStartMonth() != "2026-09" || g.GetTransferId() != "rt-1" {
		t.Fatalf("group %v", g)
	}
	if got := g.GetAccountIds(); len(got) != 3 || got[0] != sourceB || got[1] != "222222222223" || got[2] != "222222222224" {
		t.Fatalf("accounts %v", got)
	}
}

func TestT9_QuotaOfLiveInboundTransfers(t *testing.T) {
	s := given(t).Policy(Policy{MaxInboundTransfers: 2}).Orgs(payerA, sourceB, orgC, orgD).
		Do(invite("rt-1", payerA, sourceB, "2026-09"), invite("rt-2", payerA, orgC, "2026-09"))
	s.When(invite("rt-3", payerA, orgD, "2026-09")).ThenError(CodeQuotaExceeded, "2 live inbound")
	// Closed transfers free their slot.
	s.Do(cancel("rt-2"))
	s.When(invite("rt-3", payerA, orgD, "2026-09")).ThenOK()
}

func TestOrganizations_AccountsBelongToOneOrganization(t *testing.T) {
	s := given(t).Do(&billingv1.RegisterOrganization{ManagementAccountId: payerA, Name: "A", MemberAccountIds: []string{"111111111112"}})
	s.When(&billingv1.RegisterOrganization{ManagementAccountId: payerA, Name: "A"}).ThenError(CodeAlreadyExists, "already registered")
	s.When(&billingv1.RegisterOrganization{ManagementAccountId: sourceB, Name: "B", MemberAccountIds: []string{"111111111112"}}).ThenError(CodeAlreadyExists, "111111111112", payerA)
	s.When(&billingv1.AddAccount{ManagementAccountId: sourceB, AccountId: "222222222223"}).ThenError(CodeNotFound, sourceB)
	s.When(&billingv1.AddAccount{ManagementAccountId: payerA, AccountId: "111111111112"}).ThenError(CodeAlreadyExists)
	s.When(&billingv1.RegisterOrganization{ManagementAccountId: sourceB, Name: ""}).ThenError(CodeInvalidArgument, "name")
	s.When(&billingv1.RegisterOrganization{ManagementAccountId: sourceB, Name: "B", MemberAccountIds: []string{"222222222223", "222222222223"}}).ThenError(CodeInvalidArgument, "twice")
	s.When(&billingv1.AddAccount{ManagementAccountId: payerA, AccountId: "111111111113"}).ThenOK()
	a, _ := s.w.Org(payerA)
	if got := a.Accounts(); len(got) != 3 || got[2] != "111111111113" {
		t.Fatalf("accounts %v", got)
	}
}
