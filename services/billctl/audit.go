package main

import (
	"fmt"

	"github.com/billtransfer/ledger/eventstore"
)

// auditCmd groups the auditor's commands (issue 6).
type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Walk every stream's hash chain and report the first broken link of each; exit status 1 on any break."`
}

// auditVerifyCmd is `billctl audit verify [--nats-url URL] [--filter F]`
// (DESIGN §2): one pass over the log, read straight from NATS JetStream like
// replay, checking every stream's versions, prev_hash links and hashes
// (eventstore.VerifyAll). It prints one BROKEN line per broken stream (the
// first break of each) and exits 1, or a summary line and exits 0.
type auditVerifyCmd struct {
	NATSURL string `name:"nats-url" help:"NATS URL of the event store (default: the address billingd advertises)." placeholder:"URL"`
	Filter  string `help:"Only the streams matching this subject filter." default:"billing.>" placeholder:"FILTER"`
}

// Run verifies the chains.
func (c *auditVerifyCmd) Run(a *app) error {
	store, closeStore, err := a.openEventStore(c.NATSURL)
	if err != nil {
		return err
	}
	defer closeStore()
	bar := a.newProgress("verifying hash chains", -1)
	rep, err := eventstore.VerifyAll(a.ctx, store, c.Filter, func(n uint64) { bar.set(int64(n)) })
	bar.finish()
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if a.output == "json" {
		breaks := make([]map[string]any, len(rep.Breaks))
		for i, b := range rep.Breaks {
			breaks[i] = map[string]any{"stream": b.Stream, "version": b.Version, "reason": b.Reason}
		}
		if err := writeJSONLine(a.stdout, map[string]any{
			"filter": c.Filter, "streams": rep.Streams, "events": rep.Events,
			"intact": rep.Intact(), "broken_streams": rep.BrokenStreams, "breaks": breaks,
		}); err != nil {
			return err
		}
	} else if rep.Intact() {
		fmt.Fprintf(a.stdout, "verified %d streams, %d events: every hash chain intact\n", rep.Streams, rep.Events)
	} else {
		for _, b := range rep.Breaks {
			fmt.Fprintf(a.stdout, "BROKEN: stream %s at version %d: %s\n", b.Stream, b.Version, b.Reason)
		}
		if more := rep.BrokenStreams - uint64(len(rep.Breaks)); more > 0 {
			fmt.Fprintf(a.stdout, "... and %d more broken streams\n", more)
		}
	}
	if !rep.Intact() {
		return exitStatus(1)
	}
	return nil
}
