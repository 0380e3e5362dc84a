// Package api serves the ledger's Connect API (gRPC, gRPC-Web and Connect JSON
// over HTTP) from proto/billing/v1: CommandService, QueryService and
// AdminService, plus GET /healthz.
//
// The handlers are written against small ports (Executor, TransferReader,
// Waiter, Clock, PositionSource) so billingd wires the real command pipeline,
// read models and clock, and tests wire fakes.
//
// Two concerns are handled once, here, for every RPC:
//   - authentication (DESIGN §5 A1): an HTTP middleware in front of the Connect
//     handlers requires "Authorization: Bearer <token>", verifies it with an
//     auth.Verifier, applies an auth.Policy and puts the auth.Principal in the
//     context (authn.go);
//   - error mapping (STYLE "Errors"): a *domain.Error becomes a Connect error
//     with the matching code, the message "CODE: message" and a
//     billingv1.ErrorInfo detail; any other error becomes Internal with a
//     generic message naming the operation and a reference to the server log
//     (errors.go).
//
// Map of the package:
//   - api.go       ports, Options, NewHandler, /healthz
//   - handlers.go  the three Connect services
//   - errors.go    domain → Connect error mapping
//   - authn.go     bearer-token middleware
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"

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

// DefaultWaitTimeout bounds how long a query waits for the read model.
const DefaultWaitTimeout = 5 * time.Second

// Options wires the API to the rest of billingd. Verifier is required; a
// service whose port is nil answers Unimplemented.
type Options struct {
	// Executor runs commands (CommandService.Execute).
	Executor Executor
	// Transfers reads the transfers read model (QueryService.ListTransfers).
	Transfers TransferReader
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
	// Verifier authenticates bearer tokens. Required: NewHandler panics
	// without it so that an API is never served unauthenticated by mistake.
	Verifier *auth.Verifier
	// Policy authorizes a principal per procedure; nil = auth.AdminOnly.
	Policy auth.Policy
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

// NewHandler returns a mux serving the three Connect services (behind bearer
// authentication) and GET /healthz (open). The caller may mount more routes on
// the returned mux, e.g. mux.Handle("GET /metrics", …) and mux.Handle("/", …)
// for the dashboard; Connect routes are more specific and keep precedence.
// Mount the dashboard as "/", not "GET /": net/http rejects "GET /" as
// conflicting with the method-less Connect routes.
func NewHandler(opts Options) *http.ServeMux {
	if opts.Verifier == nil {
		panic("api.NewHandler: Options.Verifier is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Wall{}
	}
	if opts.Policy == nil {
		opts.Policy = auth.AdminOnly
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}

	m := &errorMapper{log: opts.Logger}
	handlerOpts := append([]connect.HandlerOption{
		connect.WithInterceptors(m),
		connect.WithRecover(m.recovered),
		connect.WithReadMaxBytes(maxRequestBytes),
	}, opts.HandlerOptions...)

	authn := &authenticator{
		verifier: opts.Verifier,
		policy:   opts.Policy,
		errors:   connect.NewErrorWriter(handlerOpts...),
		mapper:   m,
	}
	svc := &service{opts: opts}

	mux := http.NewServeMux()
	mux.Handle(authn.wrap(billingv1connect.NewCommandServiceHandler(svc, handlerOpts...)))
	mux.Handle(authn.wrap(billingv1connect.NewQueryServiceHandler(svc, handlerOpts...)))
	mux.Handle(authn.wrap(billingv1connect.NewAdminServiceHandler(svc, handlerOpts...)))
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
