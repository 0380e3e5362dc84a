package domain

import (
	"time"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TransferStatus is a state of the invitation lifecycle (T3).
type TransferStatus string

// Transfer statuses. REQUESTED → ACCEPTED | DECLINED | CANCELED | EXPIRED;
// ACCEPTED → WITHDRAWN.
const (
	StatusRequested TransferStatus = "REQUESTED"
	StatusAccepted  TransferStatus = "ACCEPTED"
	StatusDeclined  TransferStatus = "DECLINED"
	StatusCanceled  TransferStatus = "CANCELED"
	StatusExpired   TransferStatus = "EXPIRED"
	StatusWithdrawn TransferStatus = "WITHDRAWN"
)

// Transfer is the state of a transfer aggregate (stream billing.transfer.<id>).
type Transfer struct {
	id        string
	payer     string
	source    string
	plan      string
	start     time.Time
	expiresAt time.Time
	end       time.Time
	status    TransferStatus
}

// Exists reports whether the transfer was ever invited.
func (t Transfer) Exists() bool { return t.id != "" }

// ID is the transfer id.
func (t Transfer) ID() string { return t.id }

// Payer is the bill transfer account.
func (t Transfer) Payer() string { return t.payer }

// Source is the bill source organization.
func (t Transfer) Source() string { return t.source }

// PricingPlanID is the invitation's plan ("" = base pricing).
func (t Transfer) PricingPlanID() string { return t.plan }

// Start is the first instant of the transfer.
func (t Transfer) Start() time.Time { return t.start }

// End is the last instant of a withdrawn transfer (zero while open-ended).
func (t Transfer) End() time.Time { return t.end }

// ExpiresAt is the first instant at which a pending invitation is expired.
func (t Transfer) ExpiresAt() time.Time { return t.expiresAt }

// Status is the lifecycle state as recorded (a REQUESTED invitation past its
// deadline stays REQUESTED until TransferExpired is appended; see Expired).
func (t Transfer) Status() TransferStatus { return t.status }

// Expired reports whether a pending invitation's deadline has passed at now (T3).
func (t Transfer) Expired(now time.Time) bool {
	return t.status == StatusRequested && !now.Before(t.expiresAt)
}

// link renders the transfer as a link in the given state.
func (t Transfer) link(state billingv1.TransferLinkState) Link {
	return Link{transferID: t.id, source: t.source, payer: t.payer, start: t.start, end: t.end, expiresAt: t.expiresAt, state: state}
}

// EvolveTransfer folds one event into the transfer's state.
func EvolveTransfer(t Transfer, ev *billingv1.Event) Transfer {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_BillSourceInvited:
		e := p.BillSourceInvited
		t = Transfer{
			id:        e.GetTransferId(),
			payer:     e.GetPayerAccountId(),
			source:    e.GetSourceAccountId(),
			plan:      e.GetPricingPlanId(),
			start:     e.GetStartTime().AsTime(),
			expiresAt: e.GetExpiresAt().AsTime(),
			status:    StatusRequested,
		}
	case *billingv1.Event_TransferAccepted:
		t.status = StatusAccepted
	case *billingv1.Event_TransferDeclined:
		t.status = StatusDeclined
	case *billingv1.Event_TransferCanceled:
		t.status = StatusCanceled
	case *billingv1.Event_TransferExpired:
		t.status = StatusExpired
	case *billingv1.Event_TransferWithdrawn:
		t.status = StatusWithdrawn
		t.end = p.TransferWithdrawn.GetEndTime().AsTime()
	}
	return t
}

// FoldTransfer folds a stream's events into a transfer.
func FoldTransfer(events []*billingv1.Event) Transfer {
	var t Transfer
	for _, ev := range events {
		t = EvolveTransfer(t, ev)
	}
	return t
}
