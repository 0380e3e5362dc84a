package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"connectrpc.com/connect"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// deadletterCmd groups the usage dead-letter commands (DESIGN U4).
type deadletterCmd struct {
	List    deadletterListCmd    `cmd:"" help:"List unresolved dead-lettered usage records, with counts by reason."`
	Redrive deadletterRedriveCmd `cmd:"" help:"Re-ingest dead-lettered records after their cause was fixed (e.g. the account was registered)."`
}

// deadletterListCmd is `billctl deadletter list [--reason R]`.
type deadletterListCmd struct {
	Reason string `help:"Only this reason: MALFORMED, MISSING_FIELD, UNKNOWN_ACCOUNT, INVALID_QUANTITY, INVALID_AMOUNT, INVALID_PERIOD, UNKNOWN_CURRENCY or USAGE_ID_CONFLICT." placeholder:"R"`
}

// Run prints the dead letters (ID REASON USAGE_ID MESSAGE ORIGIN RECORDED_AT)
// then the counts by reason; -o json prints the ListDeadLettersResponse.
func (c *deadletterListCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.usageClient().ListDeadLetters(ctx, connect.NewRequest(&billingv1.ListDeadLettersRequest{Reason: c.Reason}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"ID", "REASON", "USAGE_ID", "MESSAGE", "ORIGIN", "RECORDED_AT"}}
	for _, d := range res.Msg.GetDeadLetters() {
		rows = append(rows, []string{d.GetDeadLetterId(), d.GetReason(), d.GetUsageId(), d.GetMessage(), d.GetOrigin(), d.GetRecordedAt()})
	}
	if err := writeTable(a.stdout, rows); err != nil {
		return err
	}
	counts := [][]string{{"REASON", "COUNT"}}
	var total uint32
	for _, r := range slices.Sorted(maps.Keys(res.Msg.GetByReason())) {
		n := res.Msg.GetByReason()[r]
		total += n
		counts = append(counts, []string{r, strconv.FormatUint(uint64(n), 10)})
	}
	fmt.Fprintln(a.stdout)
	return writeTableWithFooter(a.stdout, counts, []string{"TOTAL", strconv.FormatUint(uint64(total), 10)})
}

// deadletterRedriveCmd is `billctl deadletter redrive [--id ID ...]`.
type deadletterRedriveCmd struct {
	ID []string `name:"id" help:"Dead letter to re-drive; repeat the flag for several. Default: every unresolved dead letter." placeholder:"ID"`
}

// Run re-drives and prints each record's new outcome, then "resolved N, still
// failing M"; exit status 1 when any is still failing.
func (c *deadletterRedriveCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.usageClient().RedriveDeadLetters(ctx, connect.NewRequest(&billingv1.RedriveDeadLettersRequest{DeadLetterIds: c.ID}))
	if err != nil {
		return err
	}
	m := res.Msg
	if a.output == "json" {
		if err := writeProtoJSON(a.stdout, m); err != nil {
			return err
		}
	} else {
		if len(m.GetResults()) > 0 {
			rows := [][]string{{"USAGE_ID", "STATUS", "REASON", "MESSAGE", "DEAD_LETTER"}}
			for _, r := range m.GetResults() {
				rows = append(rows, []string{r.GetUsageId(), r.GetStatus(), r.GetReason(), r.GetMessage(), r.GetDeadLetterId()})
			}
			if err := writeTable(a.stdout, rows); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(a.stdout, "resolved %d, still failing %d\n", m.GetResolved(), m.GetStillFailing()); err != nil {
			return err
		}
	}
	if m.GetStillFailing() > 0 {
		return reported{fmt.Errorf("%d dead letters still failing", m.GetStillFailing())}
	}
	return nil
}
