package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// connectCodes maps each stable domain code to its Connect code. This table is
// the one place where rejections meet the wire (STYLE "Errors").
var connectCodes = map[domain.Code]connect.Code{
	domain.CodeInvalidArgument:            connect.CodeInvalidArgument,
	domain.CodeRequestIDConflict:          connect.CodeInvalidArgument,
	domain.CodeEndDateInvalid:             connect.CodeInvalidArgument,
	domain.CodeStartDateTooEarly:          connect.CodeInvalidArgument,
	domain.CodeStartDateTooLate:           connect.CodeInvalidArgument,
	domain.CodeSourceAndTargetCannotMatch: connect.CodeInvalidArgument,
	domain.CodeNotFound:                   connect.CodeNotFound,
	domain.CodePermissionDenied:           connect.CodePermissionDenied,
	domain.CodeUnauthenticated:            connect.CodeUnauthenticated,
	domain.CodeTransferAlreadyExists:      connect.CodeAlreadyExists,
	domain.CodeAlreadyExists:              connect.CodeAlreadyExists,
	domain.CodeInvalidStateTransition:     connect.CodeFailedPrecondition,
	domain.CodeInvitationExpired:          connect.CodeFailedPrecondition,
	domain.CodeChainTooDeep:               connect.CodeFailedPrecondition,
	domain.CodeTransferCycle:              connect.CodeFailedPrecondition,
	domain.CodeFailedPrecondition:         connect.CodeFailedPrecondition,
	domain.CodeCurrencyMismatch:           connect.CodeFailedPrecondition,
	domain.CodeQuotaExceeded:              connect.CodeResourceExhausted,
	domain.CodeAborted:                    connect.CodeAborted,
}

// ConnectCode returns the Connect code for a domain rejection code. A code
// missing from the table (added to domain but not here yet) is a business rule
// rejection and maps to FailedPrecondition.
func ConnectCode(c domain.Code) connect.Code {
	if cc, ok := connectCodes[c]; ok {
		return cc
	}
	return connect.CodeFailedPrecondition
}

// InternalCode is the ErrorInfo code of errors that are not domain rejections.
const InternalCode = "INTERNAL"

// newError builds a Connect error whose message is "CODE: message" and which
// carries ErrorInfo{code, message}.
func newError(cc connect.Code, code, message string) *connect.Error {
	ce := connect.NewError(cc, errors.New(code+": "+message))
	if d, err := connect.NewErrorDetail(&billingv1.ErrorInfo{Code: code, Message: message}); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

// opError names the operation that failed, for the generic Internal message
// and the server log. Domain rejections inside it are still found by errors.As.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// withOp wraps err (if any) with the operation name.
func withOp(op string, err error) error {
	if err == nil {
		return nil
	}
	return &opError{op: op, err: err}
}

// errorMapper is the Connect interceptor (outermost) that turns every error a
// handler returns into a well-formed Connect error.
type errorMapper struct {
	log *slog.Logger
}

var _ connect.Interceptor = (*errorMapper)(nil)

// WrapUnary implements connect.Interceptor.
func (m *errorMapper) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil {
			return nil, m.toConnect(ctx, req.Spec().Procedure, err)
		}
		return res, nil
	}
}

// WrapStreamingClient implements connect.Interceptor; clients are not touched.
func (m *errorMapper) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (m *errorMapper) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := next(ctx, conn); err != nil {
			return m.toConnect(ctx, conn.Spec().Procedure, err)
		}
		return nil
	}
}

// toConnect maps err: Connect errors pass through, domain rejections get their
// code, message and ErrorInfo, context ends become Canceled/DeadlineExceeded,
// and anything else is logged and answered with a generic Internal error.
func (m *errorMapper) toConnect(ctx context.Context, procedure string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var de *domain.Error
	if errors.As(err, &de) {
		return newError(ConnectCode(de.Code), string(de.Code), de.Message)
	}
	op := operation(procedure, err)
	switch {
	case errors.Is(err, context.Canceled):
		return newError(connect.CodeCanceled, "CANCELED", op+": canceled by the client")
	case errors.Is(err, context.DeadlineExceeded):
		return newError(connect.CodeDeadlineExceeded, "DEADLINE_EXCEEDED", op+": deadline exceeded")
	}
	ref := newRef()
	m.log.ErrorContext(ctx, "rpc failed", "op", op, "procedure", procedure, "ref", ref, "err", err)
	return newError(connect.CodeInternal, InternalCode,
		fmt.Sprintf("%s failed (reference %s; details are in the server log)", op, ref))
}

// recovered answers a handler panic like any internal error; the stack goes to
// the log only.
func (m *errorMapper) recovered(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
	ref := newRef()
	op := operation(spec.Procedure, nil)
	m.log.ErrorContext(ctx, "rpc panicked", "op", op, "procedure", spec.Procedure, "ref", ref,
		"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return newError(connect.CodeInternal, InternalCode,
		fmt.Sprintf("%s failed (reference %s; details are in the server log)", op, ref))
}

// operation is the name of the failed operation: the one the handler wrapped
// with withOp, else the method part of the procedure.
func operation(procedure string, err error) string {
	var oe *opError
	if errors.As(err, &oe) {
		return oe.op
	}
	if i := strings.LastIndexByte(procedure, '/'); i >= 0 {
		return procedure[i+1:]
	}
	return procedure
}

// newRef returns a short random id tying a client's error to the server log.
func newRef() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
