package domain

import (
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Link is one transfer as an organization sees it: who pays whom, from when to
// when, and whether it is still pending, accepted, withdrawn or closed.
type Link struct {
	transferID string
	source     string
	payer      string
	start      time.Time
	end        time.Time // zero while open-ended
	expiresAt  time.Time // for REQUESTED links
	state      billingv1.TransferLinkState
}

// TransferID is the transfer the link stands for.
func (l Link) TransferID() string { return l.transferID }

// Source is the source organization.
func (l Link) Source() string { return l.source }

// Payer is the paying organization.
func (l Link) Payer() string { return l.payer }

// Live reports whether the link counts as a live transfer at now (T4): a pending
// invitation before its deadline, an accepted transfer, or a withdrawn one that has
// not reached its end.
func (l Link) Live(now time.Time) bool {
	switch l.state {
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_REQUESTED:
		return now.Before(l.expiresAt)
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED:
		return true
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN:
		return !now.After(l.end)
	default:
		return false
	}
}

func linkFromProto(p *billingv1.TransferLink) Link {
	l := Link{
		transferID: p.GetTransferId(),
		source:     p.GetSourceAccountId(),
		payer:      p.GetPayerAccountId(),
		state:      p.GetState(),
	}
	if p.GetStartTime() != nil {
		l.start = p.GetStartTime().AsTime()
	}
	if p.GetEndTime() != nil {
		l.end = p.GetEndTime().AsTime()
	}
	if p.GetExpiresAt() != nil {
		l.expiresAt = p.GetExpiresAt().AsTime()
	}
	return l
}

func (l Link) proto() *billingv1.TransferLink {
	p := &billingv1.TransferLink{
		TransferId:      l.transferID,
		SourceAccountId: l.source,
		PayerAccountId:  l.payer,
		StartTime:       timestamppb.New(l.start),
		State:           l.state,
	}
	if !l.end.IsZero() {
		p.EndTime = timestamppb.New(l.end)
	}
	if !l.expiresAt.IsZero() {
		p.ExpiresAt = timestamppb.New(l.expiresAt)
	}
	return p
}

// Org is the state of an organization aggregate (stream billing.org.<id>): its
// accounts and every transfer link it takes part in. Org is a value: Evolve returns
// a new Org and never changes the one it was given.
type Org struct {
	id       string
	name     string
	accounts []string
	// outbound: links where this org is the source (who pays for me).
	outbound map[string]Link
	// inbound: links where this org is the payer (whom I pay for).
	inbound map[string]Link
	// indirect: links X→Y where Y is (or was) a source of this org; they make this
	// org the top payer of a two-level chain (T7).
	indirect map[string]Link
}

// Exists reports whether the organization was registered.
func (o Org) Exists() bool { return o.id != "" }

// ID is the management account id.
func (o Org) ID() string { return o.id }

// Name is the display name.
func (o Org) Name() string { return o.name }

// Accounts lists every account of the organization, management account first.
func (o Org) Accounts() []string { return slices.Clone(o.accounts) }

// LivePayerLink returns the live link where this org is the source, if any (T4
// allows at most one).
func (o Org) LivePayerLink(now time.Time) (Link, bool) {
	for _, id := range slices.Sorted(maps.Keys(o.outbound)) {
		if l := o.outbound[id]; l.Live(now) {
			return l, true
		}
	}
	return Link{}, false
}

// LiveSourceLinks returns the live links where this org is the payer, by transfer id.
func (o Org) LiveSourceLinks(now time.Time) []Link {
	var out []Link
	for _, id := range slices.Sorted(maps.Keys(o.inbound)) {
		if l := o.inbound[id]; l.Live(now) {
			out = append(out, l)
		}
	}
	return out
}

// HasLiveGrandchildren reports whether one of this org's live sources itself has a
// live source, i.e. this org already tops a two-level chain (T7).
func (o Org) HasLiveGrandchildren(now time.Time) bool {
	middles := map[string]bool{}
	for _, l := range o.LiveSourceLinks(now) {
		middles[l.source] = true
	}
	for _, l := range o.indirect {
		if middles[l.payer] && l.Live(now) {
			return true
		}
	}
	return false
}

// EvolveOrg folds one event into the organization's state. It never changes
// o: the result owns the slice or map the event changed.
func EvolveOrg(o Org, ev *billingv1.Event) Org { return evolveOrg(o, ev, false) }

// evolveOrg folds one event into o; with owned, o's slice and maps belong to
// the caller alone (FoldOrg's) and are changed in place, so that a stream of
// n links folds in O(n), not O(n²): a distributor's organization holds a link
// per source, and a month close reads it for every account it invoices.
func evolveOrg(o Org, ev *billingv1.Event, owned bool) Org {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_OrganizationRegistered:
		o.id = p.OrganizationRegistered.GetManagementAccountId()
		o.name = p.OrganizationRegistered.GetName()
		o.accounts = append([]string{o.id}, p.OrganizationRegistered.GetMemberAccountIds()...)
	case *billingv1.Event_AccountAdded:
		if !owned {
			o.accounts = slices.Clone(o.accounts)
		}
		o.accounts = append(o.accounts, p.AccountAdded.GetAccountId())
	case *billingv1.Event_TransferLinkOpened:
		e := p.TransferLinkOpened
		o = o.withLink(e.GetRole(), linkFromProto(e.GetLink()), owned)
		if e.GetRole() == billingv1.LinkRole_LINK_ROLE_PAYER {
			for _, gl := range e.GetSourceInboundLinks() {
				o = o.withLink(billingv1.LinkRole_LINK_ROLE_TOP_PAYER, linkFromProto(gl), owned)
			}
		}
	case *billingv1.Event_TransferLinkChanged:
		o = o.withLink(p.TransferLinkChanged.GetRole(), linkFromProto(p.TransferLinkChanged.GetLink()), owned)
	}
	return o
}

// withLink returns o with the link stored under the role's map: a copy of
// the map unless owned.
func (o Org) withLink(role billingv1.LinkRole, l Link, owned bool) Org {
	put := func(m map[string]Link) map[string]Link {
		if !owned {
			m = maps.Clone(m)
		}
		if m == nil {
			m = map[string]Link{}
		}
		m[l.transferID] = l
		return m
	}
	switch role {
	case billingv1.LinkRole_LINK_ROLE_SOURCE:
		o.outbound = put(o.outbound)
	case billingv1.LinkRole_LINK_ROLE_PAYER:
		o.inbound = put(o.inbound)
	case billingv1.LinkRole_LINK_ROLE_TOP_PAYER:
		o.indirect = put(o.indirect)
	}
	return o
}

// FoldOrg folds a stream's events into an organization. It folds into a
// value it owns, so a long stream folds in linear time.
func FoldOrg(events []*billingv1.Event) Org {
	var o Org
	for _, ev := range events {
		o = evolveOrg(o, ev, true)
	}
	return o
}
