package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/billtransfer/ledger/services/usagejson"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// NATS subjects of usage ingestion (the payload formats are in the package
// comment of main.go and in the README).
const (
	// subjectBatch is the request-reply batch path: the request is JSON
	// Lines, the reply an IngestBatchResponse in JSON.
	subjectBatch = "usage.v1.batch"
	// subjectRecords is the durable path: one UsageRecord in JSON per
	// JetStream message.
	subjectRecords = "usage.v1.records"
)

// Headers of NATS error replies, as written by nats.go/micro services. billingd's
// responder (services/ingest) answers errors as a JSON body {"error":"…"}
// instead; both are understood.
const (
	natsServiceErrorHeader     = "Nats-Service-Error"
	natsServiceErrorCodeHeader = "Nats-Service-Error-Code"
)

// durableWindow bounds the JetStream publishes awaiting their ack.
const durableWindow = 256

// connectTimeout bounds the NATS connection attempt.
const connectTimeout = 5 * time.Second

// batchSender sends one batch: a JSON Lines payload, one record per line.
type batchSender interface {
	// send returns the server's answer; its results[].index is the 1-based
	// line of the record inside payload.
	send(ctx context.Context, payload []byte) (*billingv1.IngestBatchResponse, error)
	// maxPayload is the largest payload the transport takes, in bytes.
	maxPayload() int
	// target names the destination in messages.
	target() string
	// close releases the connection.
	close()
}

// unavailable is the error of a transport that cannot deliver.
func unavailable(format string, args ...any) error {
	return domain.Reject("UNAVAILABLE", format, args...)
}

// batchSender returns the sender chosen by the flags: HTTP, or NATS
// request-reply at --nats-url or the address billingd advertises.
func (a *app) batchSender(t usageTransport) (batchSender, error) {
	if t.HTTP {
		return &httpSender{a: a}, nil
	}
	url, err := a.natsURL(t.NATSURL)
	if err != nil {
		return nil, err
	}
	nc, err := connectNATS(url)
	if err != nil {
		return nil, err
	}
	return &natsSender{nc: nc, url: url, token: a.token}, nil
}

// natsURL is --nats-url, or else the NATS address billingd advertises
// (GetServerInfo.nats_url).
func (a *app) natsURL(flag string) (string, error) {
	if flag = strings.TrimSpace(flag); flag != "" {
		return flag, nil
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.adminClient().GetServerInfo(ctx, connect.NewRequest(&billingv1.GetServerInfoRequest{}))
	if err != nil {
		return "", err
	}
	if res.Msg.GetNatsUrl() == "" {
		return "", domain.Reject(domain.CodeFailedPrecondition,
			"billingd at %s advertises no NATS address: pass --nats-url URL, or --http to send over HTTP", a.server)
	}
	return res.Msg.GetNatsUrl(), nil
}

// connectNATS connects as "billctl". The connection itself is not
// authenticated: every message carries the bearer token (Authorization header),
// which billingd's ingest checks.
func connectNATS(url string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name("billctl"), nats.Timeout(connectTimeout))
	if err != nil {
		return nil, unavailable("cannot reach NATS at %s: %v (pass --nats-url, or --http to send over HTTP)", url, err)
	}
	return nc, nil
}

// natsSender is the NATS request-reply batch path (subject usage.v1.batch).
type natsSender struct {
	nc    *nats.Conn
	url   string
	token string
}

func (s *natsSender) maxPayload() int { return int(s.nc.MaxPayload()) }
func (s *natsSender) target() string  { return "NATS " + subjectBatch + " at " + s.url }
func (s *natsSender) close()          { s.nc.Close() }

// send publishes the batch as a request and decodes the reply. The bearer
// token travels in an Authorization header, which the responder checks (an
// ingest or admin token).
func (s *natsSender) send(ctx context.Context, payload []byte) (*billingv1.IngestBatchResponse, error) {
	msg := nats.NewMsg(subjectBatch)
	msg.Data = payload
	if s.token != "" {
		msg.Header.Set("Authorization", "Bearer "+s.token)
	}
	reply, err := s.nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, unavailable("no ingest service answers on %s at %s (is billingd running with the ingest role?)", subjectBatch, s.url)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return nil, unavailable("no answer on %s at %s within %s", subjectBatch, s.url, requestTimeout)
	case err != nil:
		return nil, fmt.Errorf("request on %s at %s: %w", subjectBatch, s.url, err)
	}
	if desc := reply.Header.Get(natsServiceErrorHeader); desc != "" {
		return nil, serverError(reply.Header.Get(natsServiceErrorCodeHeader), desc)
	}
	var failure struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(reply.Data, &failure) == nil && failure.Error != "" {
		return nil, serverError("UNAVAILABLE", failure.Error)
	}
	res := &billingv1.IngestBatchResponse{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(reply.Data, res); err != nil {
		return nil, fmt.Errorf("the reply on %s is not an IngestBatchResponse in JSON: %s", subjectBatch, protoJSONError(err))
	}
	return res, nil
}

// codePrefix matches the "CODE: " the ledger puts in front of error messages.
var codePrefix = regexp.MustCompile(`^([A-Z][A-Z_]+): `)

// serverError turns an error the server answered into a *domain.Error that
// billctl prints as "CODE: message". code is the transport's code (a NATS
// service error code or a Connect code), used when the message names none.
func serverError(code, message string) error {
	if m := codePrefix.FindStringSubmatch(message); m != nil {
		return domain.Reject(domain.Code(m[1]), "%s", message[len(m[0]):])
	}
	code = strings.ToUpper(strings.TrimSpace(code))
	if code == "" || strings.Trim(code, "0123456789") == "" { // none, or a numeric status
		code = "INGEST_FAILED"
	}
	return domain.Reject(domain.Code(code), "%s", message)
}

// httpSender posts batches to billingd's POST /v1/usage.
type httpSender struct {
	a *app
}

func (s *httpSender) maxPayload() int { return api.MaxJSONLinesBytes }
func (s *httpSender) target() string  { return "POST " + s.a.server + api.UsageJSONLinesPath }
func (s *httpSender) close()          {}

// send posts the batch with the bearer token and decodes the answer.
func (s *httpSender) send(ctx context.Context, payload []byte) (*billingv1.IngestBatchResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.a.server+api.UsageJSONLinesPath, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/jsonl")
	if s.a.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.a.token)
	}
	res, err := s.a.httpClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, unavailable("cannot reach billingd at %s: connection refused (is it running? point --server / BILLING_SERVER at it)", s.a.server)
		}
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", s.target(), err)
	}
	if res.StatusCode != http.StatusOK {
		var wire struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &wire) != nil || wire.Message == "" {
			return nil, fmt.Errorf("%s: HTTP %s", s.target(), res.Status)
		}
		return nil, serverError(wire.Code, wire.Message)
	}
	out := &billingv1.IngestBatchResponse{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, out); err != nil {
		return nil, fmt.Errorf("the answer of %s is not an IngestBatchResponse: %s", s.target(), protoJSONError(err))
	}
	return out, nil
}

// durableStats counts the outcome of usage send --durable.
type durableStats struct {
	records   int
	published int
	failed    int
	rejected  int
	byReason  map[string]int
}

// durableSummaryJSON is the -o json summary of usage send --durable.
type durableSummaryJSON struct {
	Records          int            `json:"records"`
	Published        int            `json:"published"`
	Failed           int            `json:"failed"`
	Rejected         int            `json:"rejected"`
	RejectedByReason map[string]int `json:"rejected_by_reason"`
}

// sendDurable publishes every item as its own JetStream message on
// usage.v1.records and waits for each publisher ack (at most durableWindow in
// flight). Malformed lines are counted as rejected MALFORMED and published
// all the same, so the server dead-letters them. The message id
// (Nats-Msg-Id) is a hash of the payload: JetStream drops an identical
// re-publish within its duplicate window, and the ledger's own deduplication
// by usage_id catches the rest for ever. The message is stored before
// billingd checks it, so it carries no token (A1: tokens rest only hashed)
// but "Authorization: Billing-HMAC-SHA256 <key id>:<signature>", an HMAC of
// its payload keyed by the token's SHA-256 (auth.SignPayload); billingd's
// consumer terminates messages without a valid signature of an ingest or
// admin token.
func (a *app) sendDurable(natsFlag string, next itemSource, size int64) error {
	url, err := a.natsURL(natsFlag)
	if err != nil {
		return err
	}
	nc, err := connectNATS(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(2*durableWindow),
		jetstream.WithPublishAsyncTimeout(requestTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	prog := a.newProgress("usage send --durable", size)
	st := &durableStats{byReason: map[string]int{}}
	var fatal error
	failed := func(it usageItem, err error) {
		st.failed++
		if fatal != nil {
			return
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			fatal = unavailable("no JetStream stream stores %s at %s (is billingd running with the ingest role?)", subjectRecords, url)
			return
		}
		prog.clear()
		fmt.Fprintf(a.stderr, "line %d: PUBLISH_FAILED: %v\n", it.line, err)
	}
	type inFlight struct {
		it  usageItem
		fut jetstream.PubAckFuture
	}
	var queue []inFlight
	resolve := func(p inFlight) {
		select {
		case <-p.fut.Ok():
			st.published++
		case err := <-p.fut.Err():
			failed(p.it, err)
		case <-a.ctx.Done():
			failed(p.it, fmt.Errorf("no ack before billctl was interrupted: %w", a.ctx.Err()))
		}
		prog.set(p.it.end)
	}
	var readErr error
	for fatal == nil {
		it, ok, err := next()
		if err != nil {
			readErr = err
			break
		}
		if !ok {
			break
		}
		st.records++
		if it.bad != "" {
			st.rejected++
			st.byReason[domain.ReasonMalformed]++
			prog.clear()
			fmt.Fprintf(a.stderr, "line %d: %s: %s\n", it.line, domain.ReasonMalformed, it.bad)
		}
		msg := nats.NewMsg(subjectRecords)
		msg.Data = it.payload
		if a.token != "" {
			msg.Header.Set("Authorization", auth.SignPayload(a.token, it.payload))
		}
		fut, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(payloadID(it.payload)))
		if err != nil {
			failed(it, err)
			continue
		}
		queue = append(queue, inFlight{it, fut})
		if len(queue) >= durableWindow {
			resolve(queue[0])
			queue = queue[1:]
		}
	}
	for _, p := range queue {
		resolve(p)
	}
	prog.finish()

	if a.output == "json" {
		err = writeJSONLine(a.stdout, durableSummaryJSON{Records: st.records, Published: st.published,
			Failed: st.failed, Rejected: st.rejected, RejectedByReason: st.byReason})
	} else {
		_, err = fmt.Fprintf(a.stdout, "published %d, failed %d, rejected %d%s\n",
			st.published, st.failed, st.rejected, reasonCounts(st.byReason))
	}
	switch {
	case fatal != nil:
		return fatal
	case readErr != nil:
		return readErr
	case err != nil:
		return err
	case st.failed > 0 || st.rejected > 0:
		return reported{fmt.Errorf("%d records failed, %d rejected", st.failed, st.rejected)}
	}
	return nil
}

// payloadID is the Nats-Msg-Id of a durable message: the first 128 bits of
// the payload's SHA-256, in hex.
func payloadID(payload []byte) string {
	sum := sha256.Sum256(payload)
	return "sha256-" + hex.EncodeToString(sum[:16])
}

// protoJSONError renders a protojson parse error of a one-line payload for a
// person, in the words every usage path uses (usagejson.DescribeError).
func protoJSONError(err error) string { return usagejson.DescribeError(err) }
