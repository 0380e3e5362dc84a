package domain

import (
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Dead-letter reasons for usage records (U4). Stable: never rename one.
const (
	ReasonMalformed       = "MALFORMED"
	ReasonMissingField    = "MISSING_FIELD"
	ReasonUnknownAccount  = "UNKNOWN_ACCOUNT"
	ReasonInvalidQuantity = "INVALID_QUANTITY"
	ReasonInvalidAmount   = "INVALID_AMOUNT"
	ReasonInvalidPeriod   = "INVALID_PERIOD"
	ReasonUnknownCurrency = "UNKNOWN_CURRENCY"
	ReasonUsageIDConflict = "USAGE_ID_CONFLICT"
)

// UsageReasons lists every dead-letter reason.
var UsageReasons = []string{ReasonMalformed, ReasonMissingField, ReasonUnknownAccount, ReasonInvalidQuantity,
	ReasonInvalidAmount, ReasonInvalidPeriod, ReasonUnknownCurrency, ReasonUsageIDConflict}

// UsageRejection says why a usage record goes to the dead letter.
type UsageRejection struct {
	// Reason is one of the Reason constants.
	Reason string
	// Message names the field and the value.
	Message string
}

func rejectUsage(reason, format string, args ...any) *UsageRejection {
	return &UsageRejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// MaxUsageIDLength bounds usage ids.
const MaxUsageIDLength = 256

// ValidateUsage checks a record's own content (U1, U4): required fields, decimal
// amounts, quantities ≥ 0, a charge period whose end is not before its start and
// whose start is not in the future, a known currency. Account existence is
// checked by the caller, which knows the organizations.
func ValidateUsage(r *billingv1.UsageRecord, now time.Time) *UsageRejection {
	id := r.GetUsageId()
	switch {
	case id == "":
		return rejectUsage(ReasonMissingField, "usage_id is required")
	case len(id) > MaxUsageIDLength:
		return rejectUsage(ReasonMalformed, "usage_id is %d bytes long; at most %d", len(id), MaxUsageIDLength)
	case strings.IndexFunc(id, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0:
		return rejectUsage(ReasonMalformed, "usage_id %q contains non-printable characters", id)
	}
	if r.GetAccountId() == "" {
		return rejectUsage(ReasonMissingField, "account_id is required")
	}
	if !ValidAccountID(r.GetAccountId()) {
		return rejectUsage(ReasonUnknownAccount, "account_id %q is not a 12-digit account id", r.GetAccountId())
	}
	if r.GetService() == "" {
		return rejectUsage(ReasonMissingField, "service is required")
	}
	if r.GetChargePeriodStart() == nil || r.GetChargePeriodEnd() == nil {
		return rejectUsage(ReasonMissingField, "charge_period_start and charge_period_end are required")
	}
	if err := r.GetChargePeriodStart().CheckValid(); err != nil {
		return rejectUsage(ReasonInvalidPeriod, "charge_period_start: %v", err)
	}
	if err := r.GetChargePeriodEnd().CheckValid(); err != nil {
		return rejectUsage(ReasonInvalidPeriod, "charge_period_end: %v", err)
	}
	start, end := r.GetChargePeriodStart().AsTime(), r.GetChargePeriodEnd().AsTime()
	if end.Before(start) {
		return rejectUsage(ReasonInvalidPeriod, "charge_period_end %s is before charge_period_start %s", end.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
	}
	if start.After(now) {
		return rejectUsage(ReasonInvalidPeriod, "charge_period_start %s is in the future (ledger time %s)", start.Format(time.RFC3339Nano), now.Format(time.RFC3339))
	}
	if start.Year() < 2000 {
		return rejectUsage(ReasonInvalidPeriod, "charge_period_start %s is before the year 2000", start.Format(time.RFC3339))
	}
	if r.GetQuantity() == "" {
		return rejectUsage(ReasonMissingField, "quantity is required")
	}
	q, err := ParseDecimal(r.GetQuantity())
	if err != nil {
		return rejectUsage(ReasonInvalidQuantity, "quantity: %v", err)
	}
	if q.Negative && !q.IsZero() {
		return rejectUsage(ReasonInvalidQuantity, "quantity %s is negative", r.GetQuantity())
	}
	if r.GetBilledCost() == "" {
		return rejectUsage(ReasonMissingField, "billed_cost is required")
	}
	if _, err := ParseDecimal(r.GetBilledCost()); err != nil {
		return rejectUsage(ReasonInvalidAmount, "billed_cost: %v", err)
	}
	if r.GetListUnitPrice() != "" {
		p, err := ParseDecimal(r.GetListUnitPrice())
		if err != nil {
			return rejectUsage(ReasonInvalidAmount, "list_unit_price: %v", err)
		}
		if p.Negative && !p.IsZero() {
			return rejectUsage(ReasonInvalidAmount, "list_unit_price %s is negative", r.GetListUnitPrice())
		}
	}
	if r.GetCurrency() == "" {
		return rejectUsage(ReasonMissingField, "currency is required")
	}
	if _, ok := Currencies[r.GetCurrency()]; !ok {
		return rejectUsage(ReasonUnknownCurrency, "currency %q is not a known ISO 4217 code", r.GetCurrency())
	}
	return nil
}

// UsageContentHash is SHA-256 over the record's deterministic encoding: two
// records with the same usage_id are duplicates exactly when their hashes match.
func UsageContentHash(r *billingv1.UsageRecord) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("domain: encode usage record: %v", err)) // cannot happen for a valid message
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// UsagePartition maps a usage id to one of n partitions (FNV-1a). Every copy of a
// usage id lands in the same partition, whose single writer deduplicates it (U2).
func UsagePartition(usageID string, n int) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(usageID))
	return h.Sum32() % uint32(n)
}

// UsageStream is the stream of a usage partition for a booking month:
// "billing.usage.<YYYY-MM>.<pp>" (month first, so one month replays with a filter).
func UsageStream(month string, partition uint32) string {
	return fmt.Sprintf("billing.usage.%s.%02d", month, partition)
}

// UsagePartitionFilter matches every month of one partition: the family of
// streams its single writer guards.
func UsagePartitionFilter(partition uint32) string {
	return fmt.Sprintf("billing.usage.*.%02d", partition)
}

// UsagePartitionFilters lists UsagePartitionFilter of every partition: the
// families of streams that usage writers and the month close guard (an event
// store that must be told its guard families, as the KurrentDB adapter must,
// is given these).
func UsagePartitionFilters() []string {
	out := make([]string, UsagePartitions)
	for pp := range out {
		out[pp] = UsagePartitionFilter(uint32(pp))
	}
	return out
}

// UsageMonthFilter matches every partition of one booking month.
func UsageMonthFilter(month string) string { return "billing.usage." + month + ".>" }

// MonthClosed tells whether a payer has closed a month (X5; the usage writer
// learns closes from the UsageMonthClosed markers in its partition).
type MonthClosed func(payerAccountID string, m Month) bool

// BookUsage resolves a valid record's billing month and payer (U3, T6, T7):
// the charge month is the month of the charge period start; the bill receiver is
// the top payer in force that month; a month the payer already closed books the
// record into the payer's next open month as a correction.
func BookUsage(v View, r *billingv1.UsageRecord, closed MonthClosed) (*billingv1.BookedUsage, *UsageRejection, error) {
	return BookUsageHashed(v, r, UsageContentHash(r), closed)
}

// BookUsageHashed is BookUsage for a caller that already computed the record's
// content hash (the usage writer needs it first, to deduplicate).
func BookUsageHashed(v View, r *billingv1.UsageRecord, contentHash []byte, closed MonthClosed) (*billingv1.BookedUsage, *UsageRejection, error) {
	owner, err := v.AccountOwner(r.GetAccountId())
	if err != nil {
		return nil, nil, err
	}
	if owner == "" {
		return nil, rejectUsage(ReasonUnknownAccount, "account %s belongs to no registered organization", r.GetAccountId()), nil
	}
	month := MonthOf(r.GetChargePeriodStart().AsTime())
	org, err := v.Org(owner)
	if err != nil {
		return nil, nil, err
	}
	direct := org.DirectPayerIn(month)
	payer, err := ResolvePayer(v, owner, month)
	if err != nil {
		return nil, nil, err
	}
	booking := month
	if closed != nil {
		for i := 0; closed(payer, booking) && i < 1200; i++ {
			booking = booking.AddMonths(1)
		}
	}
	return &billingv1.BookedUsage{
		Record:               r,
		ContentHash:          contentHash,
		ChargeMonth:          month.String(),
		BookingMonth:         booking.String(),
		PayerAccountId:       payer,
		SourceAccountId:      owner,
		DirectPayerAccountId: direct,
		Correction:           booking != month,
	}, nil, nil
}
