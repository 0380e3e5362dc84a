package main

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/api"
)

// waitAll waits until every projection has applied a position.
type waitAll []api.Waiter

// WaitFor implements api.Waiter.
func (w waitAll) WaitFor(ctx context.Context, position uint64) error {
	for _, x := range w {
		if err := x.WaitFor(ctx, position); err != nil {
			return err
		}
	}
	return nil
}

// billableReader adapts the read model to the API port.
type billableReader struct{ db *readmodel.DB }

// ReportBillable implements api.BillableReader.
func (b billableReader) ReportBillable(ctx context.Context, r *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error) {
	return b.db.ReportBillable(ctx, r.GetMonth(), r.GetPayerAccountId(), r.GetSourceAccountId())
}

// MonthDigest implements api.BillableReader: the usage read models' digests
// (billable, deadletters) at the usage projection's checkpoint, then the pro
// forma and cost digests, each carrying the proforma projection's checkpoint
// (replay --verify replays each read model up to its own).
func (b billableReader) MonthDigest(ctx context.Context, month string) (*billingv1.MonthDigestResponse, error) {
	res, err := b.db.MonthDigest(ctx, month)
	if err != nil {
		return nil, err
	}
	pf, err := b.db.ProformaDigests(ctx, month)
	if err != nil {
		return nil, err
	}
	res.Digests = append(res.Digests, pf...)
	return res, nil
}

// proformaReader adapts the read model to the API port.
type proformaReader struct{ db *readmodel.DB }

// ReportProforma implements api.ProformaReader.
func (p proformaReader) ReportProforma(ctx context.Context, r *billingv1.ReportProformaRequest) (*billingv1.ReportProformaResponse, error) {
	return p.db.ReportProforma(ctx, r.GetMonth(), r.GetPayerAccountId(), r.GetBillingGroupId(), r.GetAccountId())
}

// ReportCost implements api.ProformaReader.
func (p proformaReader) ReportCost(ctx context.Context, r *billingv1.ReportCostRequest) (*billingv1.ReportCostResponse, error) {
	return p.db.ReportCost(ctx, r.GetMonth(), r.GetPayerAccountId())
}

// deadLetters lists dead letters from the read model and re-drives them through
// the usage writer (U4): a re-driven record either goes in (the dead letter is
// resolved) or is dead-lettered again under a new id with its current reason.
// Listing is a query (the query role, list); re-driving writes usage (the
// ingest role, writer): a process without the role refuses and names it.
type deadLetters struct {
	db     *readmodel.DB
	list   bool
	writer *commands.UsageWriter
	waiter api.Waiter
}

// ListDeadLetters implements api.DeadLetters.
func (d deadLetters) ListDeadLetters(ctx context.Context, reason string) (*billingv1.ListDeadLettersResponse, error) {
	if !d.list {
		return nil, domain.Reject(domain.CodeFailedPrecondition, "this billingd does not serve queries: list dead letters through a process with the query role")
	}
	return d.db.ListDeadLetters(ctx, reason)
}

// RedriveDeadLetters implements api.DeadLetters.
func (d deadLetters) RedriveDeadLetters(ctx context.Context, actor string, ids []string) (*billingv1.RedriveDeadLettersResponse, error) {
	if d.writer == nil {
		return nil, domain.Reject(domain.CodeFailedPrecondition, "this billingd does not ingest usage: re-drive dead letters through a process with the ingest role")
	}
	entries, err := d.db.DeadLetterRecords(ctx, ids)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return nil, de
		}
		return nil, err
	}
	items := make([]commands.UsageItem, 0, len(entries))
	for _, e := range entries {
		it := commands.UsageItem{Record: e.GetRecord(), Origin: "redrive of " + e.GetDeadLetterId() + " (" + e.GetOrigin() + ")", RedriveOf: e.GetDeadLetterId()}
		if it.Record == nil {
			rec := &billingv1.UsageRecord{}
			if err := protojson.Unmarshal(e.GetRaw(), rec); err != nil {
				it.Raw, it.MalformedReason = e.GetRaw(), "still malformed: "+strings.TrimSpace(err.Error())
			} else {
				it.Record = rec
			}
		}
		items = append(items, it)
	}
	out := &billingv1.RedriveDeadLettersResponse{}
	if len(items) == 0 {
		return out, nil
	}
	res, err := d.writer.IngestItems(ctx, actor, items)
	if err != nil {
		return nil, err
	}
	for _, r := range res.GetResults() {
		if r.GetStatus() == commands.StatusRejected {
			out.StillFailing++
		} else {
			out.Resolved++
		}
	}
	out.Results = res.GetResults()
	// Let the caller's next listing see the resolution.
	if d.waiter != nil && res.GetPosition() > 0 {
		_ = d.waiter.WaitFor(ctx, res.GetPosition())
	}
	return out, nil
}
