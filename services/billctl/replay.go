package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/esdb"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/clock"
)

// replayCmd is `billctl replay --month M [--as-of T] [--verify]` (DESIGN R2):
// rebuild a month's read models (billable, deadletters, proforma, cost,
// invoices, tax, payments) from the events, here in billctl's own memory (a scratch store the server cannot
// influence), print a digest and totals per read model, and with --verify
// compare them with the live tables (QueryService.MonthDigest), each replayed
// up to the checkpoint its live digest reflects, exiting 1 on any difference.
//
// The events are read straight from NATS JetStream (--nats-url, or the address
// billingd advertises), so an auditor checks the server's read models against
// the log rather than trusting the server. Memory is bounded by the number of
// rows of the month, not the number of events.
type replayCmd struct {
	Month  string `required:"" help:"Month to rebuild, YYYY-MM." placeholder:"YYYY-MM"`
	AsOf   string `name:"as-of" help:"Only events recorded at or before this time (RFC 3339 or YYYY-MM-DD)." placeholder:"T"`
	Verify bool   `help:"Compare with the live read models; exit status 1 on any difference."`
	logFlags
}

// Run replays the month.
func (c *replayCmd) Run(a *app) error {
	if _, err := domain.ParseMonth(c.Month); err != nil {
		return domain.Reject(domain.CodeInvalidArgument, "--month: %v", err)
	}
	var asOf time.Time
	if c.AsOf != "" {
		t, err := clock.Parse(c.AsOf)
		if err != nil {
			return domain.Reject(domain.CodeInvalidArgument, "--as-of: %v", err)
		}
		asOf = t
	}
	store, closeStore, err := a.openEventStore(c.logFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx := a.ctx

	// With --verify, replay exactly the prefix of the log the live tables reflect.
	var live *billingv1.MonthDigestResponse
	var upTo, proformaUpTo, invoicesUpTo, paymentsUpTo uint64
	if c.Verify {
		cctx, cancel := a.callCtx()
		res, err := a.queryClient().MonthDigest(cctx, connect.NewRequest(&billingv1.MonthDigestRequest{Month: c.Month}))
		cancel()
		if err != nil {
			return err
		}
		live = res.Msg
		upTo = live.GetCheckpoint()
		if upTo == 0 {
			upTo = ^uint64(0) >> 1 // the live tables reported no checkpoint: replay everything
		}
		// The pro forma and cost, the invoices and tax, and the payments read
		// models each have their own projection and checkpoint.
		for _, d := range live.GetDigests() {
			switch d.GetName() {
			case readmodel.DigestProforma:
				proformaUpTo = d.GetCheckpoint()
			case readmodel.DigestInvoices:
				invoicesUpTo = d.GetCheckpoint()
			case readmodel.DigestPayments:
				paymentsUpTo = d.GetCheckpoint()
			}
		}
	}
	bar := a.newProgress("replaying "+c.Month, -1)
	start := time.Now()
	var events, records uint64
	got, err := projections.ReplayMonthWith(ctx, store, c.Month, projections.ReplayOptions{
		AsOf: asOf, UpTo: upTo, Proforma: true, ProformaUpTo: proformaUpTo,
		Invoices: true, InvoicesUpTo: invoicesUpTo, PaymentsUpTo: paymentsUpTo,
		Progress: func(e, r uint64) { events, records = e, r; bar.set(int64(r)) },
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("replay %s: %w", c.Month, err)
	}
	elapsed := time.Since(start)
	diffs := compareDigests(got, live)
	if a.output == "json" {
		out := map[string]any{"month": c.Month, "events": events, "records": records, "seconds": elapsed.Seconds(), "replay": digestMap(got)}
		if c.AsOf != "" {
			out["as_of"] = asOf.Format(time.RFC3339Nano)
		}
		if live != nil {
			out["live"] = digestMap(live)
			out["verified"] = len(diffs) == 0
			out["differences"] = diffs
		}
		if err := writeJSONLine(a.stdout, out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "month %s: %d events, %d records in %s (checkpoint %d)\n", c.Month, events, records, elapsed.Round(time.Millisecond), got.GetCheckpoint())
		fmt.Fprintln(tw, "READ MODEL\tROWS\tDIGEST\tTOTALS")
		for _, d := range got.GetDigests() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", d.GetName(), d.GetRows(), d.GetDigest(), totals(d))
		}
		_ = tw.Flush()
		if live != nil {
			if len(diffs) == 0 {
				fmt.Fprintf(a.stdout, "verified: the live read models equal the replay (checkpoint %d)\n", live.GetCheckpoint())
			}
			for _, d := range diffs {
				fmt.Fprintln(a.stdout, "DIFFERENCE:", d)
			}
		}
	}
	if len(diffs) > 0 {
		return exitStatus(1)
	}
	return nil
}

func totals(d *billingv1.ReadModelDigest) string {
	keys := make([]string, 0, len(d.GetTotals()))
	for k := range d.GetTotals() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + d.GetTotals()[k]
	}
	return strings.Join(parts, " ")
}

func digestMap(r *billingv1.MonthDigestResponse) map[string]any {
	out := map[string]any{"checkpoint": r.GetCheckpoint()}
	for _, d := range r.GetDigests() {
		out[d.GetName()] = map[string]any{"digest": d.GetDigest(), "rows": d.GetRows(), "totals": d.GetTotals()}
	}
	return out
}

// logFlags say where billctl reads the log itself, for the commands that
// read it straight from the event store rather than trusting the server.
type logFlags struct {
	NATSURL       string `name:"nats-url" help:"NATS URL of the JetStream event store (default: the address billingd advertises)." placeholder:"URL"`
	EventStoreURL string `name:"eventstore-url" env:"BILLING_EVENTSTORE_URL" help:"KurrentDB connection string, when billingd runs with --store eventstoredb (billingd does not advertise it)." placeholder:"URL"`
}

// openEventStore opens the event store itself, so audits and replays read
// the log rather than trusting the server: KurrentDB at --eventstore-url, or
// JetStream on NATS (--nats-url, or the address billingd advertises; if
// billingd says it runs on KurrentDB, --eventstore-url is required). The
// returned func closes it.
func (a *app) openEventStore(f logFlags) (eventstore.Store, func(), error) {
	if url := strings.TrimSpace(f.EventStoreURL); url != "" {
		s, err := esdb.Open(a.ctx, esdb.Config{URL: url, GuardFamilies: domain.GuardFamilies()})
		if err != nil {
			return nil, nil, unavailable("open the KurrentDB event store (--eventstore-url): %v", err)
		}
		return s, func() { _ = s.Close() }, nil
	}
	if strings.TrimSpace(f.NATSURL) == "" {
		ctx, cancel := a.callCtx()
		defer cancel()
		res, err := a.adminClient().GetServerInfo(ctx, connect.NewRequest(&billingv1.GetServerInfoRequest{}))
		if err != nil {
			return nil, nil, err
		}
		if res.Msg.GetEventStore() == "eventstoredb" {
			return nil, nil, domain.Reject(domain.CodeFailedPrecondition,
				"billingd at %s runs on KurrentDB (--store eventstoredb): pass --eventstore-url URL (or BILLING_EVENTSTORE_URL) to read the log", a.server)
		}
	}
	url, err := a.natsURL(f.NATSURL)
	if err != nil {
		return nil, nil, err
	}
	nc, err := connectNATS(url)
	if err != nil {
		return nil, nil, err
	}
	store, err := jetstream.Open(a.ctx, nc, jetstream.Config{})
	if err != nil {
		nc.Close()
		return nil, nil, unavailable("open the event store at %s: %v", url, err)
	}
	return store, nc.Close, nil
}

// compareDigests lists every difference between the replay and the live tables.
func compareDigests(replay, live *billingv1.MonthDigestResponse) []string {
	if live == nil {
		return nil
	}
	var diffs []string
	byName := map[string]*billingv1.ReadModelDigest{}
	for _, d := range live.GetDigests() {
		byName[d.GetName()] = d
	}
	for _, d := range replay.GetDigests() {
		l, ok := byName[d.GetName()]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing from the live read models", d.GetName()))
			continue
		}
		if l.GetDigest() != d.GetDigest() {
			diffs = append(diffs, fmt.Sprintf("%s: digest %s live, %s replayed (rows %d live, %d replayed; totals %s live, %s replayed)",
				d.GetName(), l.GetDigest(), d.GetDigest(), l.GetRows(), d.GetRows(), totals(l), totals(d)))
		}
		delete(byName, d.GetName())
	}
	for name := range byName {
		diffs = append(diffs, fmt.Sprintf("%s: missing from the replay", name))
	}
	sort.Strings(diffs)
	return diffs
}
