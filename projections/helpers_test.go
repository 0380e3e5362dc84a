package projections_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// Accounts and times shared by the tests.
const (
	payerA  = "111111111111"
	payerB  = "222222222222"
	sourceX = "333333333333"
	sourceY = "444444444444"
	sourceZ = "555555555555"
)

var (
	t0        = time.Date(2026, 8, 10, 9, 0, 0, 0, time.UTC)
	startSep  = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	expiresAt = time.Date(2026, 8, 25, 9, 0, 0, 0, time.UTC) // sent + 15 days
	endOct    = time.Date(2026, 10, 31, 23, 59, 59, 999_000_000, time.UTC)
)

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// at returns an envelope recorded at t with the given payload.
func at(t time.Time, ev *billingv1.Event) *billingv1.Event {
	ev.RecordedAt = ts(t)
	ev.EventId = fmt.Sprintf("ev-%d", t.UnixNano())
	ev.Actor = "test"
	return ev
}

func invited(id, payer, source string, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_BillSourceInvited{BillSourceInvited: &billingv1.BillSourceInvited{
		TransferId:      id,
		PayerAccountId:  payer,
		SourceAccountId: source,
		StartTime:       ts(startSep),
		PricingPlanId:   "plan-" + id,
		Notes:           "notes for " + id,
		ExpiresAt:       ts(expiresAt),
		InvitedAt:       ts(t),
	}}})
}

func accepted(id string, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_TransferAccepted{TransferAccepted: &billingv1.TransferAccepted{TransferId: id, AcceptedAt: ts(t)}}})
}

func declined(id string, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_TransferDeclined{TransferDeclined: &billingv1.TransferDeclined{TransferId: id, DeclinedAt: ts(t)}}})
}

func canceled(id string, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_TransferCanceled{TransferCanceled: &billingv1.TransferCanceled{TransferId: id, CanceledAt: ts(t)}}})
}

func expired(id string, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_TransferExpired{TransferExpired: &billingv1.TransferExpired{TransferId: id, ExpiredAt: ts(t)}}})
}

func withdrawn(id string, end time.Time, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_TransferWithdrawn{TransferWithdrawn: &billingv1.TransferWithdrawn{
		TransferId: id, EndTime: ts(end), EndMonth: end.Format("2006-01"), WithdrawnBy: payerA, WithdrawnAt: ts(t),
	}}})
}

func orgRegistered(mgmt string, t time.Time) *billingv1.Event {
	return at(t, &billingv1.Event{Payload: &billingv1.Event_OrganizationRegistered{OrganizationRegistered: &billingv1.OrganizationRegistered{
		ManagementAccountId: mgmt, Name: "org " + mgmt,
	}}})
}

// appendTo appends events to stream at its current version and returns the records.
func appendTo(t *testing.T, s eventstore.Store, stream string, events ...*billingv1.Event) []eventstore.Record {
	t.Helper()
	ctx := context.Background()
	have, err := s.ReadStream(ctx, stream)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	recs, err := s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: uint64(len(have)), Events: events})
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return recs
}

func transferStream(id string) string { return "billing.transfer." + id }

// openDB opens the read model at target (a SQLite path or a postgres URL,
// see readmodeltest.Backend.Target), closed when the test ends.
func openDB(t *testing.T, target string) *readmodel.DB {
	t.Helper()
	db, err := readmodel.Open(context.Background(), target)
	if err != nil {
		t.Fatalf("open read model: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// tempDBPath is a new SQLite read model file.
func tempDBPath(t *testing.T) string { return filepath.Join(t.TempDir(), "readmodel.db") }

func lastPosition(t *testing.T, s eventstore.Store) uint64 {
	t.Helper()
	p, err := s.LastPosition(context.Background())
	if err != nil {
		t.Fatalf("last position: %v", err)
	}
	return p
}
