package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
)

// auditCmd groups the auditor's commands (issue 6).
type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Walk every stream's hash chain and report the first broken link of each; exit status 1 on any break. With --dir, verify an exported month offline."`
	Export auditExportCmd `cmd:"" help:"Write a closed month's sealed events and seals to a directory, for offline verification."`
}

// Files of an export directory.
const (
	exportEventsFile  = "events.binpb"
	exportSummaryFile = "seals.json"
)

// auditVerifyCmd is `billctl audit verify [--nats-url URL] [--filter F]`
// (DESIGN §2): one pass over the log, read straight from NATS JetStream like
// replay, checking every stream's versions, prev_hash links and hashes
// (eventstore.VerifyAll). It prints one BROKEN line per broken stream (the
// first break of each) and exits 1, or a summary line and exits 0.
type auditVerifyCmd struct {
	logFlags
	Filter string `help:"Only the streams matching this subject filter." default:"billing.>" placeholder:"FILTER"`
	Dir    string `help:"Verify the export in this directory (billctl audit export) with no server: hash chains, seal heads, roots and signatures." placeholder:"DIR" type:"path"`
	KeyID  string `name:"key-id" help:"With --dir: require every seal to be signed by this key id (billingd prints it at start)." placeholder:"ID"`
}

// Run verifies the chains.
func (c *auditVerifyCmd) Run(a *app) error {
	if c.Dir != "" {
		return c.verifyDir(a)
	}
	if c.KeyID != "" {
		return domain.Reject(domain.CodeInvalidArgument, "--key-id needs --dir")
	}
	store, closeStore, err := a.openEventStore(c.logFlags)
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

// verifyDir verifies an export offline.
func (c *auditVerifyCmd) verifyDir(a *app) error {
	f, err := os.Open(filepath.Join(c.Dir, exportEventsFile))
	if err != nil {
		return fmt.Errorf("audit verify --dir: %w", err)
	}
	defer f.Close()
	sum, err := eventstore.VerifyExport(f)
	if err == nil && c.KeyID != "" {
		for _, s := range sum.Seals {
			if s.KeyID != c.KeyID {
				err = fmt.Errorf("the seal of %s for payer %s is signed by key %s, not %s", s.Month, s.Payer, s.KeyID, c.KeyID)
				break
			}
		}
	}
	if err != nil {
		if a.output == "json" {
			_ = writeJSONLine(a.stdout, map[string]any{"dir": c.Dir, "intact": false, "error": err.Error()})
		} else {
			fmt.Fprintf(a.stdout, "BROKEN: %v\n", err)
		}
		return exitStatus(1)
	}
	if a.output == "json" {
		return writeJSONLine(a.stdout, map[string]any{"dir": c.Dir, "intact": true, "month": sum.Month, "streams": sum.Streams, "events": sum.Events, "seals": sum.Seals})
	}
	fmt.Fprintf(a.stdout, "verified %d streams, %d events and %d seals of %s offline: intact\n", sum.Streams, sum.Events, len(sum.Seals), sum.Month)
	for _, s := range sum.Seals {
		fmt.Fprintf(a.stdout, "  payer %s: root %s, signed by key %s\n", s.Payer, s.Root, s.KeyID)
	}
	return nil
}

// auditExportCmd is `billctl audit export --month M [--payer ID] --out DIR`:
// the sealed events of the month (every stream a seal names, from version 1 to
// its sealed head, and the seals) as length-delimited protobuf, and a summary.
type auditExportCmd struct {
	logFlags
	Month string `required:"" help:"Closed month, YYYY-MM." placeholder:"YYYY-MM"`
	Payer string `help:"Only this payer's seal (default: every payer that closed the month)." placeholder:"ID"`
	Out   string `required:"" help:"Directory to write (created; must not hold an export already)." placeholder:"DIR" type:"path"`
}

// Run writes the export.
func (c *auditExportCmd) Run(a *app) error {
	if _, err := domain.ParseMonth(c.Month); err != nil {
		return domain.Reject(domain.CodeInvalidArgument, "--month: %v", err)
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	path := filepath.Join(c.Out, exportEventsFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return domain.Reject(domain.CodeInvalidArgument, "--out %s already holds an export (%s)", c.Out, exportEventsFile)
	}
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	store, closeStore, err := a.openEventStore(c.logFlags)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	defer closeStore()
	sum, err := eventstore.ExportMonth(a.ctx, store, c.Month, c.Payer, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("audit export: %w", err)
	}
	sf, err := os.Create(filepath.Join(c.Out, exportSummaryFile))
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if err := writeJSONLine(sf, sum); err != nil {
		_ = sf.Close()
		return err
	}
	if err := sf.Close(); err != nil {
		return err
	}
	if a.output == "json" {
		return writeJSONLine(a.stdout, sum)
	}
	fmt.Fprintf(a.stdout, "exported %d seals, %d streams, %d events of %s to %s\n", len(sum.Seals), sum.Streams, sum.Events, sum.Month, c.Out)
	return nil
}
