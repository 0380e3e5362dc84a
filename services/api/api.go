// Package api serves the ledger's Connect API (gRPC, gRPC-Web and Connect JSON
// over HTTP) from proto/billing/v1: CommandService, QueryService, UsageService
// and AdminService, plus GET /healthz and the JSON Lines usage endpoint
// POST /v1/usage for upstream systems without NATS.
//
// The handlers are written against small ports (Executor, TransferReader,
// BillableReader, ProformaReader, InvoiceReader, UsageIngester, MalformedSink,
// DeadLetters, Waiter, Clock, PositionSource) so billingd wires the real command pipeline, usage partition
// writers, read models and clock, and tests wire fakes.
//
// Two concerns are handled once, here, for every RPC:
//   - authentication (DESIGN §5 A1): an HTTP middleware in front of the Connect
//     handlers requires "Authorization: Bearer <token>", verifies it with an
//     auth.Verifier and puts the auth.Principal in the context (authn.go);
//   - authorization (A2, A3): one table of procedure × role, applied by the
//     middleware (may the role call the procedure at all?) and by a Connect
//     interceptor that checks and narrows the requests of payer and source
//     tokens to their own data (authz.go);
//   - error mapping (STYLE "Errors"): a *domain.Error becomes a Connect error
//     with the matching code, the message "CODE: message" and a
//     billingv1.ErrorInfo detail; any other error becomes Internal with a
//     generic message naming the operation and a reference to the server log
//     (errors.go).
//
// Map of the package:
//   - api.go         ports, Options, NewHandler, /healthz
//   - handlers.go    CommandService, QueryService and AdminService
//   - invoices.go    QueryService.ReportInvoices, ReportPayments and ReportTax
//   - usage.go       UsageService (IngestBatch, dead letters)
//   - usage_jsonl.go POST /v1/usage (JSON Lines ingestion)
//   - errors.go      domain → Connect error mapping
//   - authn.go       bearer-token middleware
//   - authz.go       the authorization table and the per-request scope rules
//   - tokens.go      AdminService.CreateToken, ListTokens and RevokeToken
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Executor runs one command through the command pipeline (commands/).
type Executor interface {
	// Execute validates, decides and appends req's command on behalf of actor
	// (the authenticated principal's name). Rejections are *domain.Error.
	Execute(ctx context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error)
}

// TransferReader reads the transfers read model.
type TransferReader interface {
	// ListTransfers returns the transfers matching the request's filters (empty
	// fields match all; status is upper case), ordered by transfer id.
	ListTransfers(ctx context.Context, filter *billingv1.ListTransfersRequest) ([]*billingv1.Transfer, error)
}

// Waiter gives read-your-writes: it blocks until the read models have applied
// every event up to a store position.
type Waiter interface {
	// WaitFor returns nil once the projection has applied position, or the
	// context's error when ctx ends first.
	WaitFor(ctx context.Context, position uint64) error
}

// PositionSource tells the store's newest position.
type PositionSource interface {
	// LastPosition is the position of the newest event in the store (0 = empty).
	LastPosition(ctx context.Context) (uint64, error)
}

// BillableReader reads the billable read model (DESIGN R1) and the month
// digests that replay --verify compares with (R2).
type BillableReader interface {
	// ReportBillable returns the rows of req.month matching the filters (empty
	// fields match all) and their total. The request reaching it is validated:
	// month is YYYY-MM, account ids have 12 digits, spaces are trimmed.
	ReportBillable(ctx context.Context, req *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error)
	// MonthDigest returns the digest and totals of each read model of month
	// (YYYY-MM, validated).
	MonthDigest(ctx context.Context, month string) (*billingv1.MonthDigestResponse, error)
}

// ProformaReader reads the pro forma read model (DESIGN R1, P3–P5, P7) and the
// cost report (P6). The requests reaching it are validated: month is YYYY-MM,
// account ids have 12 digits, a billing group id is a valid id, spaces are
// trimmed; empty filters match all.
type ProformaReader interface {
	// ReportProforma returns the pro forma rows of req.month (usage and custom
	// line items) matching the filters, and their total.
	ReportProforma(ctx context.Context, req *billingv1.ReportProformaRequest) (*billingv1.ReportProformaResponse, error)
	// ReportCost returns the cost report of req.month, one row per billing group.
	ReportCost(ctx context.Context, req *billingv1.ReportCostRequest) (*billingv1.ReportCostResponse, error)
}

// InvoiceReader reads the invoices, payments and tax read models (DESIGN R1,
// X5, Y2, Y3) and their month digests (R2). The requests reaching it are
// validated: months are YYYY-MM (required where the request says so),
// account ids have 12 digits, spaces are trimmed; empty filters match all.
// *readmodel.DB implements it.
type InvoiceReader interface {
	// ReportInvoices returns the invoices of req.month with their payment state.
	ReportInvoices(ctx context.Context, req *billingv1.ReportInvoicesRequest) (*billingv1.ReportInvoicesResponse, error)
	// ReportPayments returns the invoices' payment states, the balances and the payments.
	ReportPayments(ctx context.Context, req *billingv1.ReportPaymentsRequest) (*billingv1.ReportPaymentsResponse, error)
	// ReportTax returns the tax rows of req.month.
	ReportTax(ctx context.Context, req *billingv1.ReportTaxRequest) (*billingv1.ReportTaxResponse, error)
	// InvoiceDigests returns the "invoices", "tax" and "payments" digests of
	// month, each with the checkpoint of the projection it reflects;
	// QueryService.MonthDigest adds them to the Billable port's digests.
	InvoiceDigests(ctx context.Context, month string) ([]*billingv1.ReadModelDigest, error)
}

// UsageIngester is the ingestion side of usage (the usage partition writers of
// the commands package): it deduplicates by usage_id for ever (U2), books or
// dead-letters every record (U3, U4) and answers per record.
type UsageIngester interface {
	// Ingest ingests records on behalf of actor (the authenticated principal's
	// name); origin says where they came from ("http", "http:/v1/usage") and is
	// kept on dead letters. The response holds one RecordResult per record, in
	// request order, with index = the record's 0-based position in records,
	// and the counters. An error means the batch as a whole failed (nothing
	// can be assumed about it; re-sending is safe, duplicates are detected).
	Ingest(ctx context.Context, actor, origin string, records []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, error)
}

// MalformedSink durably dead-letters payloads that are not usage records at
// all (U4: nothing is silently dropped), e.g. a line of POST /v1/usage that
// is not a UsageRecord in JSON.
type MalformedSink interface {
	// DeadLetterMalformed records raw under reason (a human-readable parse
	// error) with reason code MALFORMED and returns the dead letter id.
	DeadLetterMalformed(ctx context.Context, actor, origin string, raw []byte, reason string) (deadLetterID string, err error)
}

// DeadLetters lists and re-drives the usage dead letter (U4).
type DeadLetters interface {
	// ListDeadLetters lists unresolved dead letters, oldest first, with counts
	// per reason; reason "" = all, else one of domain.UsageReasons.
	ListDeadLetters(ctx context.Context, reason string) (*billingv1.ListDeadLettersResponse, error)
	// RedriveDeadLetters re-ingests the named dead letters (every unresolved
	// one when ids is empty) on behalf of actor.
	RedriveDeadLetters(ctx context.Context, actor string, ids []string) (*billingv1.RedriveDeadLettersResponse, error)
}

// Clock is the ledger clock as the admin API sees it; clock.Wall and
// *clock.Simulated implement it.
type Clock interface {
	// Now is the current ledger time.
	Now() time.Time
	// Set moves a simulated clock forward; a *domain.Error when it cannot.
	Set(ctx context.Context, t time.Time) error
	// Simulated reports whether the clock is simulated (settable).
	Simulated() bool
}

// Compile-time checks that the clocks of services/clock fit the port.
var (
	_ Clock = clock.Wall{}
	_ Clock = (*clock.Simulated)(nil)
)

// MinPositionHeader is the request header with which a client asks a query to
// reflect at least a store position, e.g. the CommandResult.position of its last
// command. Without it, queries wait for the store's last position at the time
// of the query (best effort, see Options.WaitTimeout).
const MinPositionHeader = "Billing-Min-Position"

// PositionHeader is set on Execute responses to the CommandResult.position.
const PositionHeader = "Billing-Position"

// CorrelationHeader is set on Execute responses to the correlation id of the
// events appended (the request_id when given), the key that joins a client's
// request, billingd's log line and the events.
const CorrelationHeader = "Billing-Correlation-Id"

// DefaultWaitTimeout bounds how long a query waits for the read model.
const DefaultWaitTimeout = 5 * time.Second

// Options wires the API to the rest of billingd. Verifier is required; a
// service whose port is nil answers Unimplemented.
type Options struct {
	// Executor runs commands (CommandService.Execute).
	Executor Executor
	// Transfers reads the transfers read model (QueryService.ListTransfers).
	Transfers TransferReader
	// Billable reads the billable read model and month digests
	// (QueryService.ReportBillable and MonthDigest).
	Billable BillableReader
	// Proforma reads the pro forma read model and the cost report
	// (QueryService.ReportProforma and ReportCost).
	Proforma ProformaReader
	// Invoices reads the invoices, payments and tax read models
	// (QueryService.ReportInvoices, ReportPayments and ReportTax) and adds
	// their digests to MonthDigest.
	Invoices InvoiceReader
	// Usage ingests usage records (UsageService.IngestBatch and
	// POST /v1/usage).
	Usage UsageIngester
	// Malformed dead-letters the lines of POST /v1/usage that do not parse;
	// nil = such lines are only reported to the caller (REJECTED MALFORMED
	// without a dead letter id) and logged.
	Malformed MalformedSink
	// DeadLetters lists and re-drives the usage dead letter
	// (UsageService.ListDeadLetters and RedriveDeadLetters).
	DeadLetters DeadLetters
	// Waiter makes queries wait for the projection (read-your-writes); nil =
	// queries do not wait.
	Waiter Waiter
	// Positions tells the store's last position (GetServerInfo, and the
	// default target of a query's wait); nil = 0.
	Positions PositionSource
	// Clock is the ledger clock; nil = clock.Wall{}.
	Clock Clock
	// NATSURL is the NATS address clients should publish usage to.
	NATSURL string
	// EventStore names the event store billingd runs on, as GetServerInfo
	// tells it: "jetstream" (the default when empty) or "eventstoredb".
	EventStore string
	// Verifier authenticates bearer tokens and lists them (AdminService
	// ListTokens); CreateToken and RevokeToken update it at once. Required:
	// NewHandler panics without it so that an API is never served
	// unauthenticated by mistake.
	Verifier *auth.Verifier
	// Ledger reads organizations, transfers, billing groups and billing views
	// for the authorization of payer and source requests (authz.go), for
	// ReportProforma's billing_view_id and, when it is also a
	// domain.FamilyReader, for ListBillingViews; nil = those requests answer
	// Unimplemented. billingd wires its commands.Directory.
	Ledger domain.View
	// Metrics, when set, is served on GET /metrics behind authentication
	// (admin and auditor tokens).
	Metrics http.Handler
	// Ready reports readiness for GET /healthz; nil = always ready.
	Ready func() bool
	// Logger receives internal errors and authentication failures; nil =
	// slog.Default().
	Logger *slog.Logger
	// WaitTimeout bounds a query's wait for the read model; 0 =
	// DefaultWaitTimeout.
	WaitTimeout time.Duration
	// HandlerOptions are appended to the Connect handler options (e.g. an
	// OpenTelemetry or metrics interceptor).
	HandlerOptions []connect.HandlerOption
}

// NewHandler returns a mux serving the Connect services, POST /v1/usage and
// (with Options.Metrics) GET /metrics behind bearer authentication and
// authorization, and GET /healthz (open). HandlerOptions apply to the Connect
// services only. The caller may mount more routes on the returned mux, e.g.
// mux.Handle("/", …) for the dashboard; Connect routes are more specific and
// keep precedence. A route mounted by the caller is not authenticated.
// Mount the dashboard as "/", not "GET /": net/http rejects "GET /" as
// conflicting with the method-less Connect routes.
func NewHandler(opts Options) *http.ServeMux {
	if opts.Verifier == nil {
		panic("api.NewHandler: Options.Verifier is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Wall{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}

	m := &errorMapper{log: opts.Logger}
	handlerOpts := append([]connect.HandlerOption{
		// The error mapper is outermost, so the authorizer's rejections are
		// answered like any handler's.
		connect.WithInterceptors(m, &authorizer{ledger: opts.Ledger}),
		connect.WithRecover(m.recovered),
		connect.WithReadMaxBytes(maxRequestBytes),
	}, opts.HandlerOptions...)

	authn := &authenticator{
		verifier: opts.Verifier,
		errors:   connect.NewErrorWriter(handlerOpts...),
		mapper:   m,
	}
	svc := &service{opts: opts}

	mux := http.NewServeMux()
	mux.Handle(authn.wrap(billingv1connect.NewCommandServiceHandler(svc, handlerOpts...)))
	mux.Handle(authn.wrap(billingv1connect.NewQueryServiceHandler(svc, handlerOpts...)))
	mux.Handle(authn.wrap(billingv1connect.NewUsageServiceHandler(svc, handlerOpts...)))
	mux.Handle(authn.wrap(billingv1connect.NewAdminServiceHandler(svc, handlerOpts...)))
	// POST /v1/usage is the same operation as IngestBatch, so a policy sees it
	// under that procedure name.
	mux.Handle(authn.wrapAs(billingv1connect.UsageServiceIngestBatchProcedure,
		"POST "+UsageJSONLinesPath, &jsonLinesHandler{svc: svc, errors: authn.errors, mapper: m}))
	if opts.Metrics != nil {
		mux.Handle(authn.wrapAs(MetricsProcedure, "GET /metrics", opts.Metrics))
	}
	// GET /healthz stays open: liveness probes carry no token, and it tells
	// nothing but "ok".
	mux.HandleFunc("GET /healthz", healthz(opts.Ready))
	return mux
}

// maxRequestBytes bounds a request body; commands and queries are small.
const maxRequestBytes = 4 << 20

// healthz answers 200 "ok" when ready and 503 otherwise.
func healthz(ready func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}
