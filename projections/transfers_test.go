package projections_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// requestedRow is the row BillSourceInvited("rt-1", payerA, sourceX) at position 3 makes.
func requestedRow() *readmodel.TransferRow {
	return &readmodel.TransferRow{
		TransferID:      "rt-1",
		PayerAccountID:  payerA,
		SourceAccountID: sourceX,
		Status:          readmodel.TransferRequested,
		StartTime:       startSep,
		PricingPlanID:   "plan-rt-1",
		ExpiresAt:       expiresAt,
		Notes:           "notes for rt-1",
		EventCount:      1,
		UpdatedPosition: 3,
		UpdatedAt:       t0,
	}
}

// with returns a copy of r changed by fn.
func with(r *readmodel.TransferRow, fn func(*readmodel.TransferRow)) *readmodel.TransferRow {
	c := *r
	fn(&c)
	return &c
}

func rec(pos uint64, ev *billingv1.Event) eventstore.Record {
	ev.Stream = "billing.transfer.rt-1"
	return eventstore.Record{Event: ev, Position: pos}
}

// TestEvolveTransfer covers every event of the transfer lifecycle (DESIGN T3, T5)
// and the histories the reducer refuses.
func TestEvolveTransfer(t *testing.T) {
	t.Parallel()
	t1 := t0.Add(24 * time.Hour)
	acceptedRow := with(requestedRow(), func(r *readmodel.TransferRow) {
		r.Status, r.EventCount, r.UpdatedPosition, r.UpdatedAt = readmodel.TransferAccepted, 2, 7, t1
	})
	cases := []struct {
		name    string
		prev    *readmodel.TransferRow
		rec     eventstore.Record
		want    *readmodel.TransferRow
		wantErr string
	}{
		{
			name: "T1 invitation creates a REQUESTED row",
			rec:  rec(3, invited("rt-1", payerA, sourceX, t0)),
			want: requestedRow(),
		},
		{
			name: "invitation without expiry stores none",
			rec: func() eventstore.Record {
				ev := invited("rt-1", payerA, sourceX, t0)
				ev.GetBillSourceInvited().ExpiresAt = nil
				ev.GetBillSourceInvited().PricingPlanId = ""
				return rec(3, ev)
			}(),
			want: with(requestedRow(), func(r *readmodel.TransferRow) { r.ExpiresAt, r.PricingPlanID = time.Time{}, "" }),
		},
		{
			name: "T3 accept",
			prev: requestedRow(),
			rec:  rec(7, accepted("rt-1", t1)),
			want: acceptedRow,
		},
		{
			name: "T3 decline",
			prev: requestedRow(),
			rec:  rec(7, declined("rt-1", t1)),
			want: with(acceptedRow, func(r *readmodel.TransferRow) { r.Status = readmodel.TransferDeclined }),
		},
		{
			name: "T3 cancel",
			prev: requestedRow(),
			rec:  rec(7, canceled("rt-1", t1)),
			want: with(acceptedRow, func(r *readmodel.TransferRow) { r.Status = readmodel.TransferCanceled }),
		},
		{
			name: "T3 expire",
			prev: requestedRow(),
			rec:  rec(7, expired("rt-1", t1)),
			want: with(acceptedRow, func(r *readmodel.TransferRow) { r.Status = readmodel.TransferExpired }),
		},
		{
			name: "T5 withdraw sets the end time",
			prev: acceptedRow,
			rec:  rec(9, withdrawn("rt-1", endOct, t1.Add(time.Hour))),
			want: with(acceptedRow, func(r *readmodel.TransferRow) {
				r.Status, r.EndTime, r.EventCount, r.UpdatedPosition, r.UpdatedAt =
					readmodel.TransferWithdrawn, endOct, 3, 9, t1.Add(time.Hour)
			}),
		},
		{
			name: "other payloads are ignored",
			prev: requestedRow(),
			rec:  rec(8, orgRegistered(sourceX, t1)),
			want: nil,
		},
		{
			name: "event without payload is ignored",
			rec:  rec(8, at(t1, &billingv1.Event{})),
			want: nil,
		},
		{
			name:    "change of a transfer never invited",
			rec:     rec(7, accepted("rt-1", t1)),
			wantErr: `TransferAccepted for transfer "rt-1", which was never invited`,
		},
		{
			name:    "second invitation of the same id",
			prev:    requestedRow(),
			rec:     rec(7, invited("rt-1", payerA, sourceX, t1)),
			wantErr: `transfer "rt-1" invited again`,
		},
		{
			name:    "event applied twice",
			prev:    acceptedRow,
			rec:     rec(7, accepted("rt-1", t1)),
			wantErr: "event at position 7 is not after the row's position 7 (applied twice?)",
		},
		{
			name: "missing recorded_at",
			prev: requestedRow(),
			rec: func() eventstore.Record {
				ev := accepted("rt-1", t1)
				ev.RecordedAt = nil
				return rec(7, ev)
			}(),
			wantErr: "recorded_at is missing",
		},
		{
			name: "withdrawal without end time",
			prev: acceptedRow,
			rec: func() eventstore.Record {
				ev := withdrawn("rt-1", endOct, t1)
				ev.GetTransferWithdrawn().EndTime = nil
				return rec(9, ev)
			}(),
			wantErr: "TransferWithdrawn: end_time is missing",
		},
		{
			name: "invitation without start time",
			rec: func() eventstore.Record {
				ev := invited("rt-1", payerA, sourceX, t0)
				ev.GetBillSourceInvited().StartTime = nil
				return rec(3, ev)
			}(),
			wantErr: "BillSourceInvited: start_time is missing",
		},
		{
			name:    "invitation without payer",
			rec:     rec(3, invited("rt-1", "", sourceX, t0)),
			wantErr: "payer_account_id \"\" and source_account_id \"333333333333\" must both be set",
		},
		{
			name:    "event without transfer id",
			rec:     rec(3, accepted("", t0)),
			wantErr: "has no transfer_id",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var before *readmodel.TransferRow
			if tc.prev != nil {
				before = with(tc.prev, func(*readmodel.TransferRow) {})
			}
			got, err := projections.EvolveTransfer(tc.prev, tc.rec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if got != nil {
					t.Fatalf("row = %+v alongside an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("row\n got %+v\nwant %+v", got, tc.want)
			}
			if tc.prev != nil && !reflect.DeepEqual(tc.prev, before) {
				t.Fatalf("reducer modified its input: %+v, was %+v", tc.prev, before)
			}
		})
	}
}
