package main

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/projections"
)

// explainCmd is `billctl explain --invoice ID [--line N]` (issue #6 item 3):
// the usage records, exchange rate and tax rate behind an invoice line, with
// the arithmetic, read straight from the event store like replay.
type explainCmd struct {
	logFlags
	Invoice string `required:"" help:"Invoice id (INV-YYYYMM-<payer>-<hash>)." placeholder:"ID"`
	Line    int    `help:"Only this line (1-based; default every line)." placeholder:"N"`
	Records int    `help:"Usage records to list per line (0 = all)." default:"20" placeholder:"N"`
}

// Run explains the invoice.
func (c *explainCmd) Run(a *app) error {
	store, closeStore, err := a.openEventStore(c.logFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	ex, err := projections.ExplainInvoice(a.ctx, store, c.Invoice, c.Line)
	if err != nil {
		return err
	}
	inv := ex.Invoice
	if a.output == "json" {
		lines := make([]map[string]any, len(ex.Lines))
		for i, l := range ex.Lines {
			recs := make([]map[string]any, len(l.Records))
			for j, b := range l.Records {
				r := b.GetRecord()
				recs[j] = map[string]any{"usage_id": r.GetUsageId(), "charge_period_start": r.GetChargePeriodStart().AsTime(),
					"quantity": r.GetQuantity(), "unit": r.GetUnit(), "billed_cost": r.GetBilledCost(), "currency": r.GetCurrency()}
			}
			lj, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(l.Line)
			lines[i] = map[string]any{"line": json.RawMessage(lj), "usage_records": recs, "sum": l.Sum, "steps": l.Steps}
		}
		return writeJSONLine(a.stdout, map[string]any{"invoice_id": inv.GetInvoiceId(), "currency": inv.GetCurrency(),
			"lines": lines, "tax_steps": ex.TaxSteps, "total_steps": ex.TotalSteps})
	}
	fmt.Fprintf(a.stdout, "invoice %s: payer %s, source %s, unit %q, seller %s, %s, issued %s\n",
		inv.GetInvoiceId(), inv.GetPayerAccountId(), inv.GetSourceAccountId(), inv.GetInvoiceUnitId(), inv.GetSeller(), inv.GetCurrency(), inv.GetInvoiceDate())
	for _, l := range ex.Lines {
		ln := l.Line
		fmt.Fprintf(a.stdout, "\nline %d: account %s, %s, %s %s\n", ln.GetLineNumber(), ln.GetAccountId(), ln.GetService(), ln.GetAmount(), inv.GetCurrency())
		for i, b := range l.Records {
			if c.Records > 0 && i == c.Records {
				fmt.Fprintf(a.stdout, "  … %d more records (--records 0 lists all)\n", len(l.Records)-i)
				break
			}
			r := b.GetRecord()
			fmt.Fprintf(a.stdout, "  usage %s  %s  %s %s  %s %s\n", r.GetUsageId(), r.GetChargePeriodStart().AsTime().Format("2006-01-02T15:04Z"),
				r.GetQuantity(), r.GetUnit(), r.GetBilledCost(), r.GetCurrency())
		}
		for _, s := range l.Steps {
			fmt.Fprintf(a.stdout, "  %s\n", s)
		}
	}
	fmt.Fprintln(a.stdout, "\ntax:")
	for _, s := range ex.TaxSteps {
		fmt.Fprintf(a.stdout, "  %s\n", s)
	}
	for _, s := range ex.TotalSteps {
		fmt.Fprintf(a.stdout, "%s\n", s)
	}
	return nil
}
