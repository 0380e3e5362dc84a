package readmodel

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strconv"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Read model names in digests (billingv1.ReadModelDigest.name).
const (
	// DigestBillable is the billable view of a month (R1).
	DigestBillable = "billable"
	// DigestDeadLetters is the usage dead letter of a month (U4).
	DigestDeadLetters = "deadletters"
)

// The digests (DESIGN R2) are SHA-256 over a canonical text of the read model:
// a header line naming the format, then one line per row in key order. A line's
// fields are Go-quoted strings (strconv.Quote) separated by a tab; a quoted
// string escapes tabs, newlines and invalid UTF-8, so neither separator can
// occur inside a field and no two different tables have the same text.
// Decimals are written with domain.CanonicalDecimal, so "0.80" and "0.8" are the
// same value and the same line. The live tables (MonthDigest) and the replay
// (projections.ReplayMonth) both call these functions, so equal read models
// give equal digests.
const (
	billableDigestHeader    = "billing.v1 billable digest 1\n"
	deadLetterDigestHeader  = "billing.v1 deadletters digest 1\n"
	deadLetterRecordedTag   = "recorded"
	deadLetterResolutionTag = "resolved"
)

// BillableDigest fingerprints billable rows: the hex SHA-256 of their canonical
// text (sorted by month, payer, source, account, service, currency; rows is not
// reordered), the row count, and the totals "billed_cost" (exact canonical sum)
// and "records" (sum of record_count). A decimal that does not parse is hashed
// as written and left out of the total, and the totals then hold
// "invalid_decimals" with their count: such a table can only come from a
// corrupt database, and its digest differs from any replay.
func BillableDigest(rows []*billingv1.BillableRow) *billingv1.ReadModelDigest {
	sorted := slices.Clone(rows)
	slices.SortFunc(sorted, func(a, b *billingv1.BillableRow) int {
		return cmp.Or(
			cmp.Compare(a.GetMonth(), b.GetMonth()),
			cmp.Compare(a.GetPayerAccountId(), b.GetPayerAccountId()),
			cmp.Compare(a.GetSourceAccountId(), b.GetSourceAccountId()),
			cmp.Compare(a.GetAccountId(), b.GetAccountId()),
			cmp.Compare(a.GetService(), b.GetService()),
			cmp.Compare(a.GetCurrency(), b.GetCurrency()),
		)
	})
	h := sha256.New()
	line := make([]byte, 0, 256)
	line = append(line, billableDigestHeader...)
	h.Write(line)
	total, _ := domain.ParseDecimal("0")
	var records, invalid uint64
	for _, r := range sorted {
		cost := r.GetBilledCost()
		if d, err := domain.ParseDecimal(cost); err != nil {
			invalid++
		} else {
			cost = domain.CanonicalDecimal(d)
			if sum, err := domain.AddDecimal(total, d); err != nil {
				invalid++
			} else {
				total = sum
			}
		}
		qty := r.GetUsageQuantity()
		if d, err := domain.ParseDecimal(qty); err != nil {
			invalid++
		} else {
			qty = domain.CanonicalDecimal(d)
		}
		records += r.GetRecordCount()
		line = line[:0]
		for i, f := range [...]string{r.GetMonth(), r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetAccountId(),
			r.GetService(), r.GetCurrency(), cost, qty} {
			if i > 0 {
				line = append(line, '\t')
			}
			line = strconv.AppendQuote(line, f)
		}
		line = append(line, '\t')
		line = strconv.AppendUint(line, r.GetRecordCount(), 10)
		line = append(line, '\n')
		h.Write(line)
	}
	totals := map[string]string{
		"billed_cost": domain.CanonicalDecimal(total),
		"records":     strconv.FormatUint(records, 10),
	}
	if invalid > 0 {
		totals["invalid_decimals"] = strconv.FormatUint(invalid, 10)
	}
	return &billingv1.ReadModelDigest{
		Name:   DigestBillable,
		Digest: hex.EncodeToString(h.Sum(nil)),
		Rows:   uint64(len(rows)),
		Totals: totals,
	}
}

// DeadLetterEntry is a dead letter as the month digest sees it.
type DeadLetterEntry struct {
	// ID is the dead letter id.
	ID string
	// Reason is its reason code.
	Reason string
}

// DeadLetterDigest fingerprints a month's dead letter: the dead letters
// recorded on the month's usage streams (id and reason) and the ids that
// redrives recorded on those streams resolved (each once). Resolutions are
// counted where the redrive is recorded, not where the dead letter is, so the
// digest of a month depends on that month's events only (R2). Rows is the number
// of dead letters recorded; the totals are "recorded" and "resolved". Neither
// argument is reordered; resolved may repeat an id.
func DeadLetterDigest(recorded []DeadLetterEntry, resolved []string) *billingv1.ReadModelDigest {
	rec := slices.Clone(recorded)
	slices.SortFunc(rec, func(a, b DeadLetterEntry) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Reason, b.Reason))
	})
	res := slices.Clone(resolved)
	slices.Sort(res)
	res = slices.Compact(res)

	h := sha256.New()
	line := make([]byte, 0, 128)
	line = append(line, deadLetterDigestHeader...)
	h.Write(line)
	for _, d := range rec {
		line = append(line[:0], deadLetterRecordedTag...)
		line = append(line, '\t')
		line = strconv.AppendQuote(line, d.ID)
		line = append(line, '\t')
		line = strconv.AppendQuote(line, d.Reason)
		line = append(line, '\n')
		h.Write(line)
	}
	for _, id := range res {
		line = append(line[:0], deadLetterResolutionTag...)
		line = append(line, '\t')
		line = strconv.AppendQuote(line, id)
		line = append(line, '\n')
		h.Write(line)
	}
	return &billingv1.ReadModelDigest{
		Name:   DigestDeadLetters,
		Digest: hex.EncodeToString(h.Sum(nil)),
		Rows:   uint64(len(rec)),
		Totals: map[string]string{
			"recorded": strconv.Itoa(len(rec)),
			"resolved": strconv.Itoa(len(res)),
		},
	}
}

// digester hashes a canonical text: a header line, then one line per row of
// Go-quoted fields separated by tabs (the format described above).
type digester struct {
	h    hash.Hash
	line []byte
}

func newDigest(header string) *digester {
	d := &digester{h: sha256.New(), line: make([]byte, 0, 256)}
	d.h.Write([]byte(header))
	return d
}

// add hashes one line of fields.
func (d *digester) add(fields ...string) {
	d.line = d.line[:0]
	for i, f := range fields {
		if i > 0 {
			d.line = append(d.line, '\t')
		}
		d.line = strconv.AppendQuote(d.line, f)
	}
	d.line = append(d.line, '\n')
	d.h.Write(d.line)
}

// sum is the hex SHA-256 of everything added.
func (d *digester) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// MonthDigest computes the digests of month's usage read models from the live
// tables (BillableDigest over the month's billable rows, DeadLetterDigest over
// the dead letters and resolutions recorded on the month's usage streams), with
// the usage projection's checkpoint, all from one snapshot. `billctl replay
// --verify` compares it with projections.ReplayMonth. The pro forma and cost
// digests come from ProformaDigests (their projection has its own checkpoint).
// A month that is not YYYY-MM returns an error wrapping ErrInvalidFilter.
func (db *DB) MonthDigest(ctx context.Context, month string) (*billingv1.MonthDigestResponse, error) {
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	var (
		rows     []*billingv1.BillableRow
		recorded []DeadLetterEntry
		resolved []string
		cp       uint64
	)
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if rows, err = billableRows(ctx, tx, month, "", ""); err != nil {
			return err
		}
		if recorded, resolved, err = monthDeadLetters(ctx, tx, month); err != nil {
			return err
		}
		cp, err = readCheckpoint(ctx, tx, UsageProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &billingv1.MonthDigestResponse{
		Digests:    []*billingv1.ReadModelDigest{BillableDigest(rows), DeadLetterDigest(recorded, resolved)},
		Checkpoint: cp,
	}, nil
}

// monthDeadLetters reads what DeadLetterDigest needs for month.
func monthDeadLetters(ctx context.Context, q querier, month string) ([]DeadLetterEntry, []string, error) {
	var recorded []DeadLetterEntry
	rows, err := q.QueryContext(ctx, `SELECT dead_letter_id, reason FROM dead_letters WHERE month = $1`, month)
	if err != nil {
		return nil, nil, fmt.Errorf("readmodel: read dead letters of %s: %w", month, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d DeadLetterEntry
		if err := rows.Scan(&d.ID, &d.Reason); err != nil {
			return nil, nil, fmt.Errorf("readmodel: read dead letters of %s: %w", month, err)
		}
		recorded = append(recorded, d)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("readmodel: read dead letters of %s: %w", month, err)
	}
	var resolved []string
	res, err := q.QueryContext(ctx, `SELECT dead_letter_id FROM dead_letter_resolutions WHERE month = $1`, month)
	if err != nil {
		return nil, nil, fmt.Errorf("readmodel: read dead letter resolutions of %s: %w", month, err)
	}
	defer res.Close()
	for res.Next() {
		var id string
		if err := res.Scan(&id); err != nil {
			return nil, nil, fmt.Errorf("readmodel: read dead letter resolutions of %s: %w", month, err)
		}
		resolved = append(resolved, id)
	}
	if err := res.Err(); err != nil {
		return nil, nil, fmt.Errorf("readmodel: read dead letter resolutions of %s: %w", month, err)
	}
	return recorded, resolved, nil
}
