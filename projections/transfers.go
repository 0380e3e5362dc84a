package projections

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// TransfersName is the transfers projection's checkpoint key.
const TransfersName = "transfers"

// TransfersFilter selects the transfer streams (billing.transfer.<transferId>).
const TransfersFilter = "billing.transfer.>"

// Transfers is the transfers read model (DESIGN §3 "Transfers"): one row per
// transfer with its parties, dates, plan and status. The zero value is ready to use.
type Transfers struct{}

var _ Projection = Transfers{}

// Name implements Projection.
func (Transfers) Name() string { return TransfersName }

// Filter implements Projection.
func (Transfers) Filter() string { return TransfersFilter }

// Apply implements Projection: it loads the event's transfer row, runs
// EvolveTransfer and stores the result, all inside tx.
func (Transfers) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error {
	id, ok := transferIDOf(rec.Event)
	if !ok {
		return nil
	}
	prev, err := readmodel.GetTransfer(ctx, tx, id)
	if err != nil {
		return err
	}
	next, err := EvolveTransfer(prev, rec)
	if err != nil || next == nil {
		return err
	}
	return readmodel.PutTransfer(ctx, tx, next)
}

// transferIDOf returns the transfer id of the events the transfers read model
// reduces; ok is false for every other payload.
func transferIDOf(ev *billingv1.Event) (id string, ok bool) {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_BillSourceInvited:
		return p.BillSourceInvited.GetTransferId(), true
	case *billingv1.Event_TransferAccepted:
		return p.TransferAccepted.GetTransferId(), true
	case *billingv1.Event_TransferDeclined:
		return p.TransferDeclined.GetTransferId(), true
	case *billingv1.Event_TransferCanceled:
		return p.TransferCanceled.GetTransferId(), true
	case *billingv1.Event_TransferExpired:
		return p.TransferExpired.GetTransferId(), true
	case *billingv1.Event_TransferWithdrawn:
		return p.TransferWithdrawn.GetTransferId(), true
	}
	return "", false
}

// EvolveTransfer is the transfers reducer: the row after rec, given the row
// before it (nil when the transfer has no row yet). It is pure: prev is not
// modified, and the result depends on its arguments only.
//
//	BillSourceInvited  → new row, REQUESTED
//	TransferAccepted   → ACCEPTED
//	TransferDeclined   → DECLINED
//	TransferCanceled   → CANCELED
//	TransferExpired    → EXPIRED
//	TransferWithdrawn  → WITHDRAWN, end_time set
//	any other payload  → nil, nil (no row changes)
//
// Every applied event sets updated_position and updated_at (the event's
// recorded_at) and counts in event_count.
//
// The status follows the events as recorded: the domain enforces the T3
// transitions when it decides, and the read model reflects the facts rather than
// judging them again. What the reducer does refuse, with an error that stops the
// runner, is a history it cannot make a row from: a change to a transfer that was
// never invited, a second invitation of the same id, an event at or before the
// row's last position (applied twice), missing ids or invalid times.
func EvolveTransfer(prev *readmodel.TransferRow, rec eventstore.Record) (*readmodel.TransferRow, error) {
	ev := rec.Event
	id, ok := transferIDOf(ev)
	if !ok {
		return nil, nil
	}
	if id == "" {
		return nil, fmt.Errorf("transfers: %T has no transfer_id", ev.GetPayload())
	}
	recordedAt, err := requiredTime("recorded_at", ev.GetRecordedAt())
	if err != nil {
		return nil, fmt.Errorf("transfers: transfer %q: %w", id, err)
	}
	if prev != nil && prev.TransferID != id {
		return nil, fmt.Errorf("transfers: event for transfer %q applied to row %q", id, prev.TransferID)
	}
	if prev != nil && rec.Position <= prev.UpdatedPosition {
		return nil, fmt.Errorf("transfers: transfer %q: event at position %d is not after the row's position %d (applied twice?)",
			id, rec.Position, prev.UpdatedPosition)
	}

	var next readmodel.TransferRow
	if inv, ok := ev.GetPayload().(*billingv1.Event_BillSourceInvited); ok {
		if prev != nil {
			return nil, fmt.Errorf("transfers: transfer %q invited again (row exists since position %d)", id, prev.UpdatedPosition)
		}
		next, err = invitedRow(inv.BillSourceInvited)
		if err != nil {
			return nil, fmt.Errorf("transfers: transfer %q: %w", id, err)
		}
	} else {
		if prev == nil {
			return nil, fmt.Errorf("transfers: %s for transfer %q, which was never invited", payloadName(ev), id)
		}
		next = *prev
		switch p := ev.GetPayload().(type) {
		case *billingv1.Event_TransferAccepted:
			next.Status = readmodel.TransferAccepted
		case *billingv1.Event_TransferDeclined:
			next.Status = readmodel.TransferDeclined
		case *billingv1.Event_TransferCanceled:
			next.Status = readmodel.TransferCanceled
		case *billingv1.Event_TransferExpired:
			next.Status = readmodel.TransferExpired
		case *billingv1.Event_TransferWithdrawn:
			end, err := requiredTime("end_time", p.TransferWithdrawn.GetEndTime())
			if err != nil {
				return nil, fmt.Errorf("transfers: transfer %q: TransferWithdrawn: %w", id, err)
			}
			next.Status = readmodel.TransferWithdrawn
			next.EndTime = end
		}
	}
	next.EventCount++
	next.UpdatedPosition = rec.Position
	next.UpdatedAt = recordedAt
	return &next, nil
}

// invitedRow is the REQUESTED row a BillSourceInvited creates (EventCount 0;
// the caller stamps the event).
func invitedRow(inv *billingv1.BillSourceInvited) (readmodel.TransferRow, error) {
	if inv.GetPayerAccountId() == "" || inv.GetSourceAccountId() == "" {
		return readmodel.TransferRow{}, fmt.Errorf("BillSourceInvited: payer_account_id %q and source_account_id %q must both be set",
			inv.GetPayerAccountId(), inv.GetSourceAccountId())
	}
	start, err := requiredTime("start_time", inv.GetStartTime())
	if err != nil {
		return readmodel.TransferRow{}, fmt.Errorf("BillSourceInvited: %w", err)
	}
	var expires time.Time
	if inv.GetExpiresAt() != nil {
		if expires, err = requiredTime("expires_at", inv.GetExpiresAt()); err != nil {
			return readmodel.TransferRow{}, fmt.Errorf("BillSourceInvited: %w", err)
		}
	}
	return readmodel.TransferRow{
		TransferID:      inv.GetTransferId(),
		PayerAccountID:  inv.GetPayerAccountId(),
		SourceAccountID: inv.GetSourceAccountId(),
		Status:          readmodel.TransferRequested,
		StartTime:       start,
		PricingPlanID:   inv.GetPricingPlanId(),
		ExpiresAt:       expires,
		Notes:           inv.GetNotes(),
	}, nil
}

// requiredTime converts a timestamp that must be present and valid to UTC time.
func requiredTime(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, fmt.Errorf("%s is missing", field)
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("%s is invalid: %w", field, err)
	}
	return ts.AsTime().UTC(), nil
}

// payloadName names an event's payload type for messages, e.g. "TransferAccepted".
func payloadName(ev *billingv1.Event) string {
	m := ev.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if fd == nil {
		return "event without payload"
	}
	return string(fd.Message().Name())
}
