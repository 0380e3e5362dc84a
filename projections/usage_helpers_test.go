package projections_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// More accounts for the usage tests (payerA, payerB, sourceX... are in helpers_test.go).
const (
	accountX1 = "333333333301"
	accountX2 = "333333333302"
	accountY1 = "444444444401"
)

const (
	sep = "2026-09"
	oct = "2026-10"
)

// usageRecord is a valid usage record with the given amounts.
func usageRecord(id, account, service, cost, qty string) *billingv1.UsageRecord {
	return &billingv1.UsageRecord{
		UsageId:           id,
		AccountId:         account,
		ChargePeriodStart: ts(time.Date(2026, 9, 3, 0, 0, 0, 0, time.UTC)),
		ChargePeriodEnd:   ts(time.Date(2026, 9, 3, 1, 0, 0, 0, time.UTC)),
		Service:           service,
		UsageType:         "BoxUsage:m6i.large",
		Operation:         "RunInstances",
		Region:            "us-east-1",
		Quantity:          qty,
		Unit:              "Hrs",
		ListUnitPrice:     "0.096",
		BilledCost:        cost,
		Currency:          "USD",
		Tags:              map[string]string{"team": "a"},
	}
}

// booked is r booked into month for payer and source.
func booked(month, payer, source string, r *billingv1.UsageRecord) *billingv1.BookedUsage {
	return &billingv1.BookedUsage{
		Record:               r,
		ContentHash:          domain.UsageContentHash(r),
		ChargeMonth:          month,
		BookingMonth:         month,
		PayerAccountId:       payer,
		SourceAccountId:      source,
		DirectPayerAccountId: payer,
	}
}

// rejectedRecord is a dead-lettered record.
func rejectedRecord(id, reason string, r *billingv1.UsageRecord) *billingv1.UsageRejected {
	return &billingv1.UsageRejected{DeadLetterId: id, Reason: reason, Message: "why " + id, Record: r, Origin: "test"}
}

// rejectedRaw is a dead-lettered payload that could not be parsed.
func rejectedRaw(id string, raw []byte) *billingv1.UsageRejected {
	return &billingv1.UsageRejected{DeadLetterId: id, Reason: domain.ReasonMalformed, Message: "not JSON", Raw: raw, Origin: "nats line 3"}
}

// usageBatch is a UsageBatchRecorded event recorded at t.
type usageBatch struct {
	records  []*billingv1.BookedUsage
	rejected []*billingv1.UsageRejected
	redriven []string
}

var eventSeq atomic.Int64

func (b usageBatch) event(month string, partition uint32, t time.Time) *billingv1.Event {
	return &billingv1.Event{
		EventId:    fmt.Sprintf("usage-ev-%d", eventSeq.Add(1)),
		RecordedAt: ts(t),
		Actor:      "ingest",
		Payload: &billingv1.Event_UsageBatchRecorded{UsageBatchRecorded: &billingv1.UsageBatchRecorded{
			Partition:             partition,
			Month:                 month,
			Records:               b.records,
			Rejected:              b.rejected,
			RedrivenDeadLetterIds: b.redriven,
		}},
	}
}

// appendUsage appends b on month's partition stream, recorded at t.
func appendUsage(t *testing.T, s eventstore.Store, month string, partition uint32, at time.Time, b usageBatch) eventstore.Record {
	t.Helper()
	return appendTo(t, s, domain.UsageStream(month, partition), b.event(month, partition, at))[0]
}
