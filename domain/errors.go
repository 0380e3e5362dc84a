package domain

import (
	"errors"
	"fmt"
)

// Code is a stable rejection code, mapped once at the edge to Connect/HTTP codes.
type Code string

// Stable rejection codes (issue #2 command contract). Never rename one.
const (
	CodeInvalidArgument            Code = "INVALID_ARGUMENT"
	CodeNotFound                   Code = "NOT_FOUND"
	CodePermissionDenied           Code = "PERMISSION_DENIED"
	CodeAlreadyExists              Code = "ALREADY_EXISTS"
	CodeSourceAndTargetCannotMatch Code = "SOURCE_AND_TARGET_CANNOT_MATCH"
	CodeStartDateTooEarly          Code = "START_DATE_TOO_EARLY"
	CodeStartDateTooLate           Code = "START_DATE_TOO_LATE"
	CodeTransferAlreadyExists      Code = "TRANSFER_ALREADY_EXISTS"
	CodeInvitationExpired          Code = "INVITATION_EXPIRED"
	CodeInvalidStateTransition     Code = "INVALID_STATE_TRANSITION"
	CodeChainTooDeep               Code = "CHAIN_TOO_DEEP"
	CodeTransferCycle              Code = "TRANSFER_CYCLE"
	CodeEndDateInvalid             Code = "END_DATE_INVALID"
	CodeQuotaExceeded              Code = "QUOTA_EXCEEDED"
	CodeRequestIDConflict          Code = "REQUEST_ID_CONFLICT"
	CodeUnauthenticated            Code = "UNAUTHENTICATED"
	CodeFailedPrecondition         Code = "FAILED_PRECONDITION"
	CodeAborted                    Code = "ABORTED"
	// CodeCurrencyMismatch: a payment's currency is not the currency of the
	// invoices it would pay (Y2).
	CodeCurrencyMismatch Code = "CURRENCY_MISMATCH"
	// Month close (X5).
	CodeMonthNotEnded      Code = "MONTH_NOT_ENDED"
	CodeMonthAlreadyClosed Code = "MONTH_ALREADY_CLOSED"
	CodeRateMissing        Code = "RATE_MISSING"
)

// Error is a rejection with a stable code and a message that names what is wrong.
type Error struct {
	// Code is the stable code.
	Code Code
	// Message explains the rejection to a person.
	Message string
}

// Error implements error.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is lets errors.Is match on the code alone: errors.Is(err, &Error{Code: X}).
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
	}
	return false
}

// Reject builds an *Error with a formatted message.
func Reject(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the stable code of err, or "" when err is not a domain rejection.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
