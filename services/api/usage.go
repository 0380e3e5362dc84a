package api

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/auth"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// MaxIngestBatch bounds the records of one IngestBatch request or one
// POST /v1/usage body, and the ids of one RedriveDeadLetters request. Larger
// inputs are split by the client (billctl sends 500 per batch by default).
const MaxIngestBatch = 10_000

// Per-record statuses of RecordResult.status.
const (
	// StatusAccepted: the record was booked.
	StatusAccepted = "ACCEPTED"
	// StatusDuplicate: a record with the same usage_id and content was booked
	// before; nothing changed (U2).
	StatusDuplicate = "DUPLICATE"
	// StatusRejected: the record went to the dead letter (U4); reason says why.
	StatusRejected = "REJECTED"
)

// Origins handed to the UsageIngester and the MalformedSink; they are kept on
// dead letters so an operator can tell where a bad record came from.
const (
	originIngestBatch = "http"
	originJSONLines   = "http:" + UsageJSONLinesPath
)

// IngestBatch implements UsageService.IngestBatch: it hands the records to the
// usage ingester and answers per record. Per-record problems are answered as
// REJECTED results, not as an RPC error; the RPC fails only for the batch as a
// whole (too many records, ingestion unavailable).
func (s *service) IngestBatch(ctx context.Context, req *connect.Request[billingv1.IngestBatchRequest]) (*connect.Response[billingv1.IngestBatchResponse], error) {
	if s.opts.Usage == nil {
		return nil, unimplemented("usage ingestion")
	}
	records := req.Msg.GetRecords()
	if len(records) > MaxIngestBatch {
		return nil, domain.Reject(domain.CodeInvalidArgument,
			"the batch holds %d records; at most %d per request: split it", len(records), MaxIngestBatch)
	}
	actor, err := principalName(ctx, "ingest usage")
	if err != nil {
		return nil, err
	}
	out, err := s.ingest(ctx, actor, originIngestBatch, records)
	if err != nil {
		return nil, err
	}
	res := connect.NewResponse(out)
	res.Header().Set(PositionHeader, strconv.FormatUint(out.GetPosition(), 10))
	return res, nil
}

// ingest calls the ingester, except for an empty batch, and never returns a
// nil response with a nil error.
func (s *service) ingest(ctx context.Context, actor, origin string, records []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, error) {
	if len(records) == 0 {
		return &billingv1.IngestBatchResponse{}, nil
	}
	out, err := s.opts.Usage.Ingest(ctx, actor, origin, records)
	if err != nil {
		return nil, withOp("ingest usage", err)
	}
	if out == nil {
		return nil, withOp("ingest usage", errors.New("the ingester returned no response"))
	}
	return out, nil
}

// ListDeadLetters implements UsageService.ListDeadLetters. It validates the
// reason, waits for the read model like every query, and reads it.
func (s *service) ListDeadLetters(ctx context.Context, req *connect.Request[billingv1.ListDeadLettersRequest]) (*connect.Response[billingv1.ListDeadLettersResponse], error) {
	if s.opts.DeadLetters == nil {
		return nil, unimplemented("the usage dead letter")
	}
	reason := strings.ToUpper(strings.TrimSpace(req.Msg.GetReason()))
	if reason != "" && !slices.Contains(domain.UsageReasons, reason) {
		return nil, domain.Reject(domain.CodeInvalidArgument, "reason %q is not one of %s",
			req.Msg.GetReason(), strings.Join(domain.UsageReasons, ", "))
	}
	if _, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader)); err != nil {
		return nil, err
	}
	res, err := s.opts.DeadLetters.ListDeadLetters(ctx, reason)
	if err != nil {
		return nil, withOp("list dead letters", err)
	}
	if res == nil {
		res = &billingv1.ListDeadLettersResponse{}
	}
	return connect.NewResponse(res), nil
}

// RedriveDeadLetters implements UsageService.RedriveDeadLetters: the named
// dead letters (trimmed, deduplicated), or every unresolved one when none is
// named, are re-ingested.
func (s *service) RedriveDeadLetters(ctx context.Context, req *connect.Request[billingv1.RedriveDeadLettersRequest]) (*connect.Response[billingv1.RedriveDeadLettersResponse], error) {
	if s.opts.DeadLetters == nil {
		return nil, unimplemented("the usage dead letter")
	}
	raw := req.Msg.GetDeadLetterIds()
	if len(raw) > MaxIngestBatch {
		return nil, domain.Reject(domain.CodeInvalidArgument,
			"%d dead letter ids; at most %d per request", len(raw), MaxIngestBatch)
	}
	ids := make([]string, 0, len(raw))
	seen := make(map[string]bool, len(raw))
	for i, id := range raw {
		id = strings.TrimSpace(id)
		if id == "" {
			return nil, domain.Reject(domain.CodeInvalidArgument, "dead_letter_ids[%d] is empty", i)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	actor, err := principalName(ctx, "redrive dead letters")
	if err != nil {
		return nil, err
	}
	res, err := s.opts.DeadLetters.RedriveDeadLetters(ctx, actor, ids)
	if err != nil {
		return nil, withOp("redrive dead letters", err)
	}
	if res == nil {
		res = &billingv1.RedriveDeadLettersResponse{}
	}
	return connect.NewResponse(res), nil
}

// principalName is the authenticated principal's name, the actor of writes.
func principalName(ctx context.Context, op string) (string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return "", withOp(op, errors.New("no principal in the request context"))
	}
	return p.Name, nil
}
