package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"github.com/billtransfer/ledger/services/usagejson"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/domain"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// UsageJSONLinesPath is the HTTP batch endpoint for upstream systems without
// NATS or a Connect client:
//
//	POST /v1/usage
//	Authorization: Bearer <token>
//	Content-Type: application/jsonl       (not checked)
//	Content-Encoding: gzip                (optional)
//
//	{"usage_id":"u-1","account_id":"222222222223",...}
//	{"usage_id":"u-2",...}
//
// One UsageRecord per line in JSON with proto field names (protojson; unknown
// fields are an error); blank lines are skipped; at most MaxIngestBatch records
// and MaxJSONLinesBytes bytes per request. The answer is an IngestBatchResponse
// in JSON (proto field names, every field present) with HTTP 200 even when
// records were rejected: results[].index is the 1-based line number in the
// body. A line that does not parse is answered REJECTED with reason MALFORMED
// and the message "line N: …", and is dead-lettered with its raw bytes through
// Options.Malformed, so nothing is silently dropped (U4). Errors about the
// request as a whole (unreadable body, too many records, authentication) are
// Connect JSON errors ({"code":"invalid_argument","message":…}) with the
// matching HTTP status.
const UsageJSONLinesPath = "/v1/usage"

// MaxJSONLinesBytes bounds a POST /v1/usage body, after decompression.
const MaxJSONLinesBytes = 32 << 20

// jsonLinesHandler serves POST /v1/usage; it runs behind the authenticator.
type jsonLinesHandler struct {
	svc    *service
	errors *connect.ErrorWriter
	mapper *errorMapper
}

// ServeHTTP answers an IngestBatchResponse, or a Connect JSON error. A panic
// is answered like in the Connect handlers: a generic Internal error, the
// stack in the log only.
func (h *jsonLinesHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			_ = h.errors.Write(w, r, h.mapper.recovered(r.Context(), connect.Spec{Procedure: UsageJSONLinesPath}, nil, p))
		}
	}()
	out, err := h.serve(r)
	if err != nil {
		_ = h.errors.Write(w, r, h.mapper.toConnect(r.Context(), UsageJSONLinesPath, err))
		return
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(out)
	if err != nil {
		_ = h.errors.Write(w, r, h.mapper.toConnect(r.Context(), UsageJSONLinesPath, withOp("encode the ingest response", err)))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(PositionHeader, strconv.FormatUint(out.GetPosition(), 10))
	_, _ = w.Write(append(body, '\n'))
}

// malformedLine is a body line that is not a UsageRecord.
type malformedLine struct {
	line int
	raw  []byte
	msg  string
}

// serve reads, parses and ingests the body.
func (h *jsonLinesHandler) serve(r *http.Request) (*billingv1.IngestBatchResponse, error) {
	ctx := r.Context()
	s := h.svc
	if s.opts.Usage == nil {
		return nil, unimplemented("usage ingestion")
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	records, lines, bad, err := parseJSONLines(body)
	if err != nil {
		return nil, err
	}
	actor, err := principalName(ctx, "ingest usage")
	if err != nil {
		return nil, err
	}
	// Dead-letter the malformed lines first: when that fails the request fails
	// before anything was ingested, and the caller re-sends the whole body.
	malformed, err := s.deadLetterMalformed(ctx, actor, bad)
	if err != nil {
		return nil, err
	}
	in, err := s.ingest(ctx, actor, originJSONLines, records)
	if err != nil {
		return nil, err
	}
	return mergeLineResults(in, lines, malformed), nil
}

// readBody reads the (possibly gzip-compressed) body, up to MaxJSONLinesBytes.
func readBody(r *http.Request) ([]byte, error) {
	var body io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, domain.Reject(domain.CodeInvalidArgument, "the body is not readable: gzip: %v", err)
		}
		defer func() { _ = zr.Close() }()
		body = zr
	default:
		return nil, domain.Reject(domain.CodeInvalidArgument, "Content-Encoding %q is not supported (gzip or none)", enc)
	}
	b, err := io.ReadAll(io.LimitReader(body, MaxJSONLinesBytes+1))
	if err != nil {
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, domain.Reject(domain.CodeInvalidArgument, "the body is not readable: %v", err)
	}
	if len(b) > MaxJSONLinesBytes {
		return nil, domain.Reject(domain.CodeInvalidArgument,
			"the body exceeds %d bytes; split it into several requests", MaxJSONLinesBytes)
	}
	return b, nil
}

// parseJSONLines splits body into lines and parses each non-blank one as a
// UsageRecord. It returns the records with their 1-based line numbers, and the
// lines that do not parse. More than MaxIngestBatch non-blank lines is an
// error about the whole request.
func parseJSONLines(body []byte) (records []*billingv1.UsageRecord, lines []int, bad []malformedLine, err error) {
	body = bytes.TrimPrefix(body, []byte("\ufeff")) // a BOM from an editor
	n := 0
	for i := 1; len(body) > 0; i++ {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if n++; n > MaxIngestBatch {
			return nil, nil, nil, domain.Reject(domain.CodeInvalidArgument,
				"the body holds more than %d records; at most %d per request: split it", MaxIngestBatch, MaxIngestBatch)
		}
		rec := &billingv1.UsageRecord{}
		if perr := protojson.Unmarshal(line, rec); perr != nil {
			bad = append(bad, malformedLine{line: i, raw: line, msg: fmt.Sprintf("line %d: %s", i, protoJSONError(perr))})
			continue
		}
		records = append(records, rec)
		lines = append(lines, i)
	}
	return records, lines, bad, nil
}

// deadLetterMalformed hands each malformed line to the MalformedSink and
// returns their results. Without a sink the lines are only reported (and
// logged).
func (s *service) deadLetterMalformed(ctx context.Context, actor string, bad []malformedLine) ([]*billingv1.RecordResult, error) {
	results := make([]*billingv1.RecordResult, 0, len(bad))
	for _, b := range bad {
		res := &billingv1.RecordResult{
			Status:  StatusRejected,
			Reason:  domain.ReasonMalformed,
			Message: b.msg,
			Index:   uint32(b.line),
		}
		if s.opts.Malformed == nil {
			s.opts.Logger.WarnContext(ctx, "malformed usage line not dead-lettered: no sink wired",
				"origin", originJSONLines, "actor", actor, "line", b.line, "reason", b.msg)
		} else {
			id, err := s.opts.Malformed.DeadLetterMalformed(ctx, actor,
				fmt.Sprintf("%s line %d", originJSONLines, b.line), b.raw, b.msg)
			if err != nil {
				return nil, withOp(fmt.Sprintf("dead-letter malformed line %d", b.line), err)
			}
			res.DeadLetterId = id
		}
		results = append(results, res)
	}
	return results, nil
}

// mergeLineResults turns the ingester's answer (indexes = positions in the
// records slice) into an answer about the body (indexes = line numbers), adds
// the malformed lines and orders everything by line.
func mergeLineResults(in *billingv1.IngestBatchResponse, lines []int, malformed []*billingv1.RecordResult) *billingv1.IngestBatchResponse {
	out := &billingv1.IngestBatchResponse{
		Results:          make([]*billingv1.RecordResult, 0, len(in.GetResults())+len(malformed)),
		Accepted:         in.GetAccepted(),
		Duplicates:       in.GetDuplicates(),
		Rejected:         in.GetRejected() + uint32(len(malformed)),
		RejectedByReason: make(map[string]uint32, len(in.GetRejectedByReason())+1),
		Position:         in.GetPosition(),
	}
	for reason, n := range in.GetRejectedByReason() {
		out.RejectedByReason[reason] = n
	}
	if len(malformed) > 0 {
		out.RejectedByReason[domain.ReasonMalformed] += uint32(len(malformed))
	}
	// The ingester answers one result per record in request order; when it
	// does not, its index (the 0-based position) tells which record it is.
	positional := len(in.GetResults()) == len(lines)
	for i, r := range in.GetResults() {
		pos := i
		if !positional {
			pos = int(r.GetIndex())
		}
		if pos >= 0 && pos < len(lines) {
			r.Index = uint32(lines[pos])
		}
		out.Results = append(out.Results, r)
	}
	out.Results = append(out.Results, malformed...)
	slices.SortStableFunc(out.Results, func(a, b *billingv1.RecordResult) int {
		return int(a.GetIndex()) - int(b.GetIndex())
	})
	return out
}

// protoJSONError renders a protojson parse error of a one-line payload for a
// person, in the words every usage path uses (usagejson.DescribeError).
func protoJSONError(err error) string { return usagejson.DescribeError(err) }
