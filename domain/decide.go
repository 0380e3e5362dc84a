package domain

import (
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// View gives a decision read access to the aggregates it needs. The command
// pipeline implements it over the event store and remembers the version of every
// stream read; a decision must append to every stream whose state its acceptance
// depends on, so that those versions guard the append (DESIGN §2: cross-aggregate
// invariants are guarded by optimistic concurrency, not by locks).
type View interface {
	// Org returns the organization (zero value when not registered).
	Org(managementAccountID string) (Org, error)
	// Transfer returns the transfer (zero value when unknown).
	Transfer(transferID string) (Transfer, error)
	// AccountOwner returns the organization that owns the account ("" when none).
	AccountOwner(accountID string) (string, error)
	// Events returns every event of a stream in order (none when it does not
	// exist yet). The pricing decisions fold their aggregates from it.
	Events(stream string) ([]*billingv1.Event, error)
}

// Change is what a decision appends to one stream.
type Change struct {
	// Stream to append to.
	Stream string
	// Events to append (payload only; the pipeline fills the envelope).
	Events []*billingv1.Event
}

// Outcome is a decision's result.
type Outcome struct {
	// AggregateID names what the command addressed (e.g. the transfer id).
	AggregateID string
	// Changes to append atomically, in order.
	Changes []Change
	// Created names other things the command created, by kind (e.g.
	// "billing_group_id" for the transfer billing group of an acceptance, T8).
	Created map[string]string
}

// Policy holds configurable limits.
type Policy struct {
	// MaxInboundTransfers is the most live inbound transfers per payer (T9).
	MaxInboundTransfers int
	// CloseEventBytes is the byte budget of one event of a month close
	// (proto.Size of its payload; 0 = CloseEventBudget). Tests lower it to
	// reach the close's limits with small fixtures.
	CloseEventBytes int
}

// DefaultPolicy is the policy of DESIGN §3.
var DefaultPolicy = Policy{MaxInboundTransfers: 1000, CloseEventBytes: CloseEventBudget}

// Env is everything a decision needs besides state and command.
type Env struct {
	// Now is the ledger time.
	Now time.Time
	// Policy holds the limits.
	Policy Policy
	// NewTransferID is used when an invitation names no transfer id.
	NewTransferID string
}

// maxMembersPerRegistration keeps a registration within one atomic append (the
// JetStream batch limit of 1,000 messages: the organization event plus one claim
// per account).
const maxMembersPerRegistration = 998

// Decide turns a command into an outcome or a rejection (*Error). It never
// performs I/O besides reading through v.
func Decide(v View, cmd proto.Message, env Env) (Outcome, error) {
	if env.Policy.MaxInboundTransfers == 0 {
		env.Policy = DefaultPolicy
	}
	env.Now = env.Now.UTC()
	switch c := cmd.(type) {
	case *billingv1.RegisterOrganization:
		return decideRegister(v, c)
	case *billingv1.AddAccount:
		return decideAddAccount(v, c)
	case *billingv1.InviteBillSource:
		return decideInvite(v, c, env)
	case *billingv1.AcceptTransfer:
		return decideTransition(v, c.GetTransferId(), "AcceptTransfer", env)
	case *billingv1.DeclineTransfer:
		return decideTransition(v, c.GetTransferId(), "DeclineTransfer", env)
	case *billingv1.CancelTransfer:
		return decideTransition(v, c.GetTransferId(), "CancelTransfer", env)
	case *billingv1.ExpireTransfer:
		return decideTransition(v, c.GetTransferId(), "ExpireTransfer", env)
	case *billingv1.WithdrawTransfer:
		return decideWithdraw(v, c, env)
	case *billingv1.CreatePricingRule, *billingv1.UpdatePricingRule, *billingv1.DeletePricingRule,
		*billingv1.CreatePricingPlan, *billingv1.UpdatePricingPlan, *billingv1.AssociatePricingRules,
		*billingv1.DisassociatePricingRules, *billingv1.DeletePricingPlan,
		*billingv1.CreateBillingGroup, *billingv1.UpdateBillingGroup, *billingv1.AssociateAccounts,
		*billingv1.DisassociateAccounts, *billingv1.DeleteBillingGroup,
		*billingv1.CreateCustomLineItem, *billingv1.UpdateCustomLineItem, *billingv1.DeleteCustomLineItem:
		return decidePricing(v, c, env)
	case *billingv1.SetTaxSettings, *billingv1.SetSellerOfRecord, *billingv1.SetTaxRate,
		*billingv1.CreateInvoiceUnit, *billingv1.UpdateInvoiceUnit, *billingv1.DeleteInvoiceUnit,
		*billingv1.SetPaymentProfile, *billingv1.SetExchangeRate:
		return decideTax(v, c, env)
	case *billingv1.CloseMonth:
		return decideCloseMonth(v, c, env)
	case *billingv1.RecordPayment:
		return decideRecordPayment(v, c, env)
	case *billingv1.RefundPayment:
		return decideRefundPayment(v, c, env)
	case *billingv1.ApplyCredit:
		return decideApplyCredit(v, c)
	case *billingv1.CreateToken, *billingv1.RevokeToken, *billingv1.CreateBillingView, *billingv1.GrantBillingView,
		*billingv1.RevokeBillingView, *billingv1.DeleteBillingView:
		return decideAccess(v, c)
	default:
		return Outcome{}, Reject(CodeInvalidArgument, "unknown command %T", cmd)
	}
}

func ev(p any) *billingv1.Event {
	e := &billingv1.Event{}
	switch x := p.(type) {
	case *billingv1.OrganizationRegistered:
		e.Payload = &billingv1.Event_OrganizationRegistered{OrganizationRegistered: x}
	case *billingv1.AccountAdded:
		e.Payload = &billingv1.Event_AccountAdded{AccountAdded: x}
	case *billingv1.AccountClaimed:
		e.Payload = &billingv1.Event_AccountClaimed{AccountClaimed: x}
	case *billingv1.BillSourceInvited:
		e.Payload = &billingv1.Event_BillSourceInvited{BillSourceInvited: x}
	case *billingv1.TransferAccepted:
		e.Payload = &billingv1.Event_TransferAccepted{TransferAccepted: x}
	case *billingv1.TransferDeclined:
		e.Payload = &billingv1.Event_TransferDeclined{TransferDeclined: x}
	case *billingv1.TransferCanceled:
		e.Payload = &billingv1.Event_TransferCanceled{TransferCanceled: x}
	case *billingv1.TransferExpired:
		e.Payload = &billingv1.Event_TransferExpired{TransferExpired: x}
	case *billingv1.TransferWithdrawn:
		e.Payload = &billingv1.Event_TransferWithdrawn{TransferWithdrawn: x}
	case *billingv1.TransferLinkOpened:
		e.Payload = &billingv1.Event_TransferLinkOpened{TransferLinkOpened: x}
	case *billingv1.TransferLinkChanged:
		e.Payload = &billingv1.Event_TransferLinkChanged{TransferLinkChanged: x}
	case *billingv1.TransferBillingGroupCreated:
		e.Payload = &billingv1.Event_TransferBillingGroupCreated{TransferBillingGroupCreated: x}
	default:
		if pe, ok := pricingEvent(p); ok {
			return pe
		}
		if te, ok := taxEvent(p); ok {
			return te
		}
		if ae, ok := accessEvent(p); ok {
			return ae
		}
		panic(fmt.Sprintf("domain: no event payload for %T", p))
	}
	return e
}

// NewEvent wraps a payload message in an envelope with only the payload set.
func NewEvent(payload proto.Message) *billingv1.Event { return ev(payload) }

func decideRegister(v View, c *billingv1.RegisterOrganization) (Outcome, error) {
	id := c.GetManagementAccountId()
	if err := checkAccountID("management_account_id", id); err != nil {
		return Outcome{}, err
	}
	if n := utf8.RuneCountInString(c.GetName()); n == 0 || n > 128 {
		return Outcome{}, Reject(CodeInvalidArgument, "name must be 1 to 128 characters (got %d)", n)
	}
	if len(c.GetMemberAccountIds()) > maxMembersPerRegistration {
		return Outcome{}, Reject(CodeInvalidArgument, "at most %d member accounts per RegisterOrganization (got %d); add more with AddAccount", maxMembersPerRegistration, len(c.GetMemberAccountIds()))
	}
	seen := map[string]bool{id: true}
	for _, m := range c.GetMemberAccountIds() {
		if err := checkAccountID("member_account_ids", m); err != nil {
			return Outcome{}, err
		}
		if seen[m] {
			return Outcome{}, Reject(CodeInvalidArgument, "account %s is listed twice (the management account is a member implicitly)", m)
		}
		seen[m] = true
	}
	org, err := v.Org(id)
	if err != nil {
		return Outcome{}, err
	}
	if org.Exists() {
		return Outcome{}, Reject(CodeAlreadyExists, "organization %s is already registered", id)
	}
	all := append([]string{id}, c.GetMemberAccountIds()...)
	changes := []Change{{Stream: OrgStream(id), Events: []*billingv1.Event{ev(&billingv1.OrganizationRegistered{
		ManagementAccountId: id, Name: c.GetName(), MemberAccountIds: c.GetMemberAccountIds(),
	})}}}
	for _, a := range all {
		owner, err := v.AccountOwner(a)
		if err != nil {
			return Outcome{}, err
		}
		if owner != "" {
			return Outcome{}, Reject(CodeAlreadyExists, "account %s already belongs to organization %s", a, owner)
		}
		changes = append(changes, Change{Stream: AccountStream(a), Events: []*billingv1.Event{ev(&billingv1.AccountClaimed{AccountId: a, ManagementAccountId: id})}})
	}
	return Outcome{AggregateID: id, Changes: changes}, nil
}

func decideAddAccount(v View, c *billingv1.AddAccount) (Outcome, error) {
	id, acct := c.GetManagementAccountId(), c.GetAccountId()
	if err := checkAccountID("management_account_id", id); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("account_id", acct); err != nil {
		return Outcome{}, err
	}
	org, err := v.Org(id)
	if err != nil {
		return Outcome{}, err
	}
	if !org.Exists() {
		return Outcome{}, Reject(CodeNotFound, "organization %s is not registered", id)
	}
	owner, err := v.AccountOwner(acct)
	if err != nil {
		return Outcome{}, err
	}
	if owner != "" {
		return Outcome{}, Reject(CodeAlreadyExists, "account %s already belongs to organization %s", acct, owner)
	}
	return Outcome{AggregateID: id, Changes: []Change{
		{Stream: OrgStream(id), Events: []*billingv1.Event{ev(&billingv1.AccountAdded{ManagementAccountId: id, AccountId: acct})}},
		{Stream: AccountStream(acct), Events: []*billingv1.Event{ev(&billingv1.AccountClaimed{AccountId: acct, ManagementAccountId: id})}},
	}}, nil
}

// loadManagementOrg loads an organization that must be registered, naming the role
// ("payer", "source") in the rejection. A member account is not a management
// account (T1).
func loadManagementOrg(v View, role, id string) (Org, error) {
	org, err := v.Org(id)
	if err != nil {
		return Org{}, err
	}
	if org.Exists() {
		return org, nil
	}
	owner, err := v.AccountOwner(id)
	if err != nil {
		return Org{}, err
	}
	if owner != "" {
		return Org{}, Reject(CodeInvalidArgument, "%s %s is a member account of organization %s, not a management account (T1)", role, id, owner)
	}
	return Org{}, Reject(CodeNotFound, "%s organization %s is not registered", role, id)
}

func decideInvite(v View, c *billingv1.InviteBillSource, env Env) (Outcome, error) {
	now := env.Now
	payerID, sourceID := c.GetPayerAccountId(), c.GetSourceAccountId()
	if err := checkAccountID("payer_account_id", payerID); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("source_account_id", sourceID); err != nil {
		return Outcome{}, err
	}
	tid := c.GetTransferId()
	if tid == "" {
		tid = env.NewTransferID
	}
	if err := checkID("transfer_id", tid); err != nil {
		return Outcome{}, err
	}
	if c.GetPricingPlanId() != "" {
		if err := checkID("pricing_plan_id", c.GetPricingPlanId()); err != nil {
			return Outcome{}, err
		}
	}
	if n := utf8.RuneCountInString(c.GetNotes()); n > 1024 {
		return Outcome{}, Reject(CodeInvalidArgument, "notes must be at most 1024 characters (got %d)", n)
	}
	if c.GetStartMonth() == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "start_month is required (YYYY-MM)")
	}
	month, err := ParseMonth(c.GetStartMonth())
	if err != nil {
		return Outcome{}, Reject(CodeInvalidArgument, "start_month: %v", err)
	}
	// T1: a payer cannot invite itself.
	if payerID == sourceID {
		return Outcome{}, Reject(CodeSourceAndTargetCannotMatch, "payer and source are both %s; an organization cannot transfer its bill to itself (T1)", payerID)
	}
	// T2: the start is the first instant of a future month, at most 12 months ahead.
	start := month.Start()
	if !start.After(now) {
		return Outcome{}, Reject(CodeStartDateTooEarly, "start month %s has already begun (now %s); the start must be a future month (T2)", month, now.Format(time.RFC3339))
	}
	if latest := MonthOf(now).AddMonths(12); latest.Before(month) {
		return Outcome{}, Reject(CodeStartDateTooLate, "start month %s is more than 12 months ahead; the latest allowed is %s (T2)", month, latest)
	}
	deadline := InvitationDeadline(now, start)
	if !deadline.After(now) {
		return Outcome{}, Reject(CodeStartDateTooEarly, "start month %s is too close: an invitation must be accepted by 23:59:59 UTC two days before the start (T2, T3)", month)
	}
	t, err := v.Transfer(tid)
	if err != nil {
		return Outcome{}, err
	}
	if t.Exists() {
		return Outcome{}, Reject(CodeAlreadyExists, "transfer id %s is already used", tid)
	}
	payer, err := loadManagementOrg(v, "payer", payerID)
	if err != nil {
		return Outcome{}, err
	}
	source, err := loadManagementOrg(v, "source", sourceID)
	if err != nil {
		return Outcome{}, err
	}
	// T4: at most one live transfer per source organization.
	if l, ok := source.LivePayerLink(now); ok {
		return Outcome{}, Reject(CodeTransferAlreadyExists, "source organization %s already has a live transfer %s to payer %s (T4)", sourceID, l.transferID, l.payer)
	}
	// T7: no cycles, depth at most 2.
	var top Org
	payerLink, payerHasPayer := payer.LivePayerLink(now)
	if payerHasPayer {
		if payerLink.payer == sourceID {
			return Outcome{}, Reject(CodeTransferCycle, "%s already pays for %s; %s cannot pay for %s too (T7)", sourceID, payerID, payerID, sourceID)
		}
		if top, err = v.Org(payerLink.payer); err != nil {
			return Outcome{}, err
		}
		if topLink, ok := top.LivePayerLink(now); ok {
			if topLink.payer == sourceID {
				return Outcome{}, Reject(CodeTransferCycle, "%s pays for %s, which pays for %s; %s cannot pay for %s (T7)", sourceID, top.ID(), payerID, payerID, sourceID)
			}
			return Outcome{}, Reject(CodeChainTooDeep, "payer %s is already two levels below %s; a chain is at most two levels deep (T7)", payerID, topLink.payer)
		}
	}
	sourceHasSources := len(source.LiveSourceLinks(now)) > 0
	if sourceHasSources && payerHasPayer {
		return Outcome{}, Reject(CodeChainTooDeep, "source %s pays for other organizations and payer %s is itself paid for by %s; a chain is at most two levels deep (T7)", sourceID, payerID, payerLink.payer)
	}
	if sourceHasSources && source.HasLiveGrandchildren(now) {
		return Outcome{}, Reject(CodeChainTooDeep, "source %s already tops a two-level chain; a chain is at most two levels deep (T7)", sourceID)
	}
	// T9: quota of live inbound transfers per payer.
	if n := len(payer.LiveSourceLinks(now)); n >= env.Policy.MaxInboundTransfers {
		return Outcome{}, Reject(CodeQuotaExceeded, "payer %s already has %d live inbound transfers, the maximum (T9)", payerID, n)
	}

	invited := &billingv1.BillSourceInvited{
		TransferId:      tid,
		PayerAccountId:  payerID,
		SourceAccountId: sourceID,
		StartTime:       timestamppb.New(start),
		PricingPlanId:   c.GetPricingPlanId(),
		Notes:           c.GetNotes(),
		ExpiresAt:       timestamppb.New(deadline),
		InvitedAt:       timestamppb.New(now),
	}
	newT := EvolveTransfer(Transfer{}, ev(invited))
	link := newT.link(billingv1.TransferLinkState_TRANSFER_LINK_STATE_REQUESTED).proto()
	var grandchildren []*billingv1.TransferLink
	for _, l := range source.LiveSourceLinks(now) {
		grandchildren = append(grandchildren, l.proto())
	}
	changes := []Change{
		{Stream: TransferStream(tid), Events: []*billingv1.Event{ev(invited)}},
		{Stream: OrgStream(sourceID), Events: []*billingv1.Event{ev(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_SOURCE, Link: link})}},
		{Stream: OrgStream(payerID), Events: []*billingv1.Event{ev(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_PAYER, Link: link, SourceInboundLinks: grandchildren})}},
	}
	if payerHasPayer {
		changes = append(changes, Change{Stream: OrgStream(top.ID()), Events: []*billingv1.Event{ev(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_TOP_PAYER, Link: link})}})
	}
	return Outcome{AggregateID: tid, Changes: changes}, nil
}

// linkChanges records a transfer's new link state on every organization stream
// that holds the link: the source, the payer, and the payer's live payer (T7).
func linkChanges(v View, t Transfer, state billingv1.TransferLinkState, now time.Time) ([]Change, error) {
	link := t.link(state).proto()
	changed := func(role billingv1.LinkRole) []*billingv1.Event {
		return []*billingv1.Event{ev(&billingv1.TransferLinkChanged{Role: role, Link: link})}
	}
	out := []Change{
		{Stream: OrgStream(t.source), Events: changed(billingv1.LinkRole_LINK_ROLE_SOURCE)},
		{Stream: OrgStream(t.payer), Events: changed(billingv1.LinkRole_LINK_ROLE_PAYER)},
	}
	payer, err := v.Org(t.payer)
	if err != nil {
		return nil, err
	}
	if _, err := v.Org(t.source); err != nil {
		return nil, err
	}
	// The payer's live payer holds the link as top payer (T7) — unless it is
	// the source itself: B invited A, then A came to pay for B; that stream is
	// written above already, and A never held this link as top payer.
	if pl, ok := payer.LivePayerLink(now); ok && pl.payer != t.source {
		if _, err := v.Org(pl.payer); err != nil {
			return nil, err
		}
		out = append(out, Change{Stream: OrgStream(pl.payer), Events: changed(billingv1.LinkRole_LINK_ROLE_TOP_PAYER)})
	}
	return out, nil
}

func loadTransfer(v View, tid string) (Transfer, error) {
	if err := checkID("transfer_id", tid); err != nil {
		return Transfer{}, err
	}
	t, err := v.Transfer(tid)
	if err != nil {
		return Transfer{}, err
	}
	if !t.Exists() {
		return Transfer{}, Reject(CodeNotFound, "transfer %s does not exist", tid)
	}
	return t, nil
}

// decideTransition handles the moves out of REQUESTED (T3).
func decideTransition(v View, tid, command string, env Env) (Outcome, error) {
	now := env.Now
	t, err := loadTransfer(v, tid)
	if err != nil {
		return Outcome{}, err
	}
	if t.Status() != StatusRequested {
		return Outcome{}, Reject(CodeInvalidStateTransition, "%s: transfer %s is %s; only a REQUESTED invitation can change this way (T3)", command, tid, t.Status())
	}
	expired := t.Expired(now)
	if command == "ExpireTransfer" {
		if !expired {
			return Outcome{}, Reject(CodeInvalidStateTransition, "transfer %s can still be accepted until %s (T3)", tid, t.ExpiresAt().Format(time.RFC3339))
		}
	} else if expired {
		return Outcome{}, Reject(CodeInvitationExpired, "invitation %s expired at %s (T3)", tid, t.ExpiresAt().Format(time.RFC3339))
	}
	ts := timestamppb.New(now)
	var first *billingv1.Event
	state := billingv1.TransferLinkState_TRANSFER_LINK_STATE_CLOSED
	switch command {
	case "AcceptTransfer":
		first = ev(&billingv1.TransferAccepted{TransferId: tid, AcceptedAt: ts})
		state = billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED
	case "DeclineTransfer":
		first = ev(&billingv1.TransferDeclined{TransferId: tid, DeclinedAt: ts})
	case "CancelTransfer":
		first = ev(&billingv1.TransferCanceled{TransferId: tid, CanceledAt: ts})
	case "ExpireTransfer":
		first = ev(&billingv1.TransferExpired{TransferId: tid, ExpiredAt: timestamppb.New(t.ExpiresAt())})
	}
	changes := []Change{{Stream: TransferStream(tid), Events: []*billingv1.Event{first}}}
	links, err := linkChanges(v, t, state, now)
	if err != nil {
		return Outcome{}, err
	}
	changes = append(changes, links...)
	if command == "AcceptTransfer" {
		// T8: a transfer billing group with every account of the source organization.
		source, err := v.Org(t.source)
		if err != nil {
			return Outcome{}, err
		}
		gid := TransferGroupID(tid)
		changes = append(changes, Change{Stream: BillingGroupStream(t.payer, gid), Events: []*billingv1.Event{ev(&billingv1.TransferBillingGroupCreated{
			BillingGroupId:   gid,
			OwnerAccountId:   t.payer,
			TransferId:       tid,
			PrimaryAccountId: t.source,
			AccountIds:       source.Accounts(),
			PricingPlanId:    t.plan,
			StartMonth:       MonthOf(t.start).String(),
		})}})
		// The group uses the invitation's plan: record it on the plan (P4).
		planLink, err := transferGroupPlanLink(v, t.payer, gid, t.plan)
		if err != nil {
			return Outcome{}, err
		}
		changes = append(changes, planLink...)
		return Outcome{AggregateID: tid, Changes: changes, Created: map[string]string{"billing_group_id": gid}}, nil
	}
	return Outcome{AggregateID: tid, Changes: changes}, nil
}

// decideWithdraw ends an accepted transfer at the end of the current or the next
// month (T5). It cannot be undone.
func decideWithdraw(v View, c *billingv1.WithdrawTransfer, env Env) (Outcome, error) {
	now := env.Now
	t, err := loadTransfer(v, c.GetTransferId())
	if err != nil {
		return Outcome{}, err
	}
	if c.GetEndMonth() == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "end_month is required (YYYY-MM: the current or the next month)")
	}
	endMonth, err := ParseMonth(c.GetEndMonth())
	if err != nil {
		return Outcome{}, Reject(CodeInvalidArgument, "end_month: %v", err)
	}
	by := c.GetWithdrawnBy()
	if by == "" {
		by = t.payer
	}
	if by != t.payer && by != t.source {
		return Outcome{}, Reject(CodeInvalidArgument, "withdrawn_by %s is neither the payer %s nor the source %s of transfer %s (T5)", by, t.payer, t.source, t.id)
	}
	switch t.Status() {
	case StatusAccepted:
	case StatusWithdrawn:
		return Outcome{}, Reject(CodeInvalidStateTransition, "transfer %s is already withdrawn (ends %s); a withdrawal cannot be undone or changed (T5)", t.id, t.End().Format(time.RFC3339Nano))
	default:
		return Outcome{}, Reject(CodeInvalidStateTransition, "WithdrawTransfer: transfer %s is %s; only an ACCEPTED transfer can be withdrawn (T3, T5)", t.id, t.Status())
	}
	current := MonthOf(now)
	if endMonth != current && endMonth != current.AddMonths(1) {
		return Outcome{}, Reject(CodeEndDateInvalid, "end_month %s must be the current month %s or the next month %s (T5)", endMonth, current, current.AddMonths(1))
	}
	if endMonth.Before(MonthOf(t.start)) {
		return Outcome{}, Reject(CodeEndDateInvalid, "end_month %s is before the transfer's start month %s (T5)", endMonth, MonthOf(t.start))
	}
	end := endMonth.End()
	withdrawn := &billingv1.TransferWithdrawn{TransferId: t.id, EndTime: timestamppb.New(end), EndMonth: endMonth.String(), WithdrawnBy: by, WithdrawnAt: timestamppb.New(now)}
	changes := []Change{{Stream: TransferStream(t.id), Events: []*billingv1.Event{ev(withdrawn)}}}
	t = EvolveTransfer(t, ev(withdrawn))
	links, err := linkChanges(v, t, billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN, now)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: t.id, Changes: append(changes, links...)}, nil
}
