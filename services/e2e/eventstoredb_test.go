package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billtransfer/ledger/eventstore/esdb/esdbfake"
)

// TestBillingdOnKurrentDB runs the real binaries with --store eventstoredb
// (issue #8 item 4) against esdbfake, the in-memory model of KurrentDB 25.1's
// gRPC services (no KurrentDB can run here; eventstore/esdb's
// TestConformance runs against a real one when EVENTSTORE_URL is set):
// commands (multi-stream appends), usage booking under the partition guards
// with a duplicate batch counted once, a month close with its invoice and
// tax, a payment, replay --verify and audit verify reading the log from
// KurrentDB with --eventstore-url (and refusing to guess without it), the
// sealed export verified offline, and a restart that resumes every
// projection from its checkpoint (a KurrentDB $all position).
func TestBillingdOnKurrentDB(t *testing.T) {
	t.Parallel()
	fake, err := esdbfake.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	dir := filepath.Join(t.TempDir(), "data")
	flags := []string{"--store", "eventstoredb", "--eventstore-url", fake.URL()}
	d := startDaemon(t, dir, flags...)
	esURL := "--eventstore-url=" + fake.URL()

	d.ctlOK("", "apply", "-f", writeFile(t, "setup.jsonl", closeSetup))
	d.ctlOK("", "clock", "set", "2026-09-20")
	usage := writeFile(t, "usage.jsonl", closeUsage)
	d.ctlOK("", "usage", "send", "-f", usage)
	d.ctlOK("", "usage", "send", "-f", usage) // the same records again: duplicates
	if b := d.billable("2026-09"); b.records() != 2 || b.Total != "11.115" {
		t.Fatalf("billable after sending the batch twice: %d records, total %s; want 2 and 11.115", b.records(), b.Total)
	}

	d.ctlOK("", "clock", "set", "2026-10-01T08:00:00Z")
	d.ctlOK("", "close", "--payer", "111111111111", "--month", "2026-09")
	if r := d.ctl("", "close", "--payer", "111111111111", "--month", "2026-09"); r.code == 0 || !strings.Contains(r.stderr, "MONTH_ALREADY_CLOSED") {
		t.Fatalf("second close:\n%s", r)
	}
	var inv invoiceReport
	decode(t, d.ctlOK("", "report", "invoices", "--month", "2026-09"), &inv)
	if len(inv.Rows) != 1 || inv.Rows[0].Subtotal != "10.00" || inv.Rows[0].Tax != "1.90" || inv.Rows[0].Total != "11.90" || inv.Rows[0].Currency != "EUR" || len(inv.Rows[0].Lines) != 2 {
		t.Fatalf("September invoice: %+v", inv)
	}
	d.ctlOK(`{"command":"RecordPayment","payment_id":"pay-1","payer_account_id":"111111111111","amount":"5.00","currency":"EUR","method":"BANK_TRANSFER"}`+"\n", "apply", "-f", "-")
	var pay paymentReport
	decode(t, d.ctlOK("", "report", "payments", "--payer", "111111111111"), &pay)
	if len(pay.Invoices) != 1 || pay.Invoices[0].Outstanding != "6.90" || pay.Invoices[0].Status != "PARTIALLY_PAID" {
		t.Fatalf("after a partial payment: %+v", pay)
	}

	// billctl reads the log itself: on KurrentDB it needs the connection
	// string, which billingd does not advertise.
	if r := d.ctl("", "replay", "--month", "2026-09"); r.code == 0 || !strings.Contains(r.stderr, "--eventstore-url") {
		t.Fatalf("replay without --eventstore-url:\n%s", r)
	}
	if rep := replay(t, d, 0, "--month", "2026-09", "--verify", esURL); rep.Verified == nil || !*rep.Verified || rep.Records != 2 {
		t.Fatalf("replay --verify: %+v", rep)
	}
	if r := d.ctlOK("", "-o", "table", "audit", "verify", esURL); !strings.Contains(r.stdout, "intact") {
		t.Fatalf("audit verify:\n%s", r)
	}
	out := filepath.Join(t.TempDir(), "audit")
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := d.ctl("", "-o", "table", "audit", "export", "--month", "2026-09", "--out", out, esURL)
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) || !strings.Contains(r.stderr, "no sealed close") {
			t.Fatalf("audit export:\n%s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := d.ctlOK("", "-o", "table", "audit", "verify", "--dir", out); !strings.Contains(r.stdout, "intact") {
		t.Fatalf("audit verify --dir:\n%s", r)
	}

	// A restart resumes from the checkpoints: nothing counted twice, and new
	// usage is booked after the old.
	d.stop()
	d = startDaemon(t, dir, flags...)
	d.ctlOK(`{"usage_id":"c-oct","account_id":"222222222223","charge_period_start":"2026-10-01T00:00:00Z","charge_period_end":"2026-10-01T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage","quantity":"1","unit":"Hrs","list_unit_price":"1","billed_cost":"3","currency":"USD"}`+"\n", "usage", "send", "-f", "-")
	if b := d.billable("2026-09"); b.records() != 2 || b.Total != "11.115" {
		t.Fatalf("September after the restart: %d records, total %s", b.records(), b.Total)
	}
	if b := d.billable("2026-10"); b.records() != 1 || b.Total != "3" {
		t.Fatalf("October after the restart: %d records, total %s; want 1 and 3", b.records(), b.Total)
	}
	inv = invoiceReport{}
	decode(t, d.ctlOK("", "report", "invoices", "--month", "2026-09"), &inv)
	if len(inv.Rows) != 1 || inv.Rows[0].Total != "11.90" || inv.Rows[0].Outstanding != "6.90" {
		t.Fatalf("September invoice after the restart: %+v", inv)
	}
	for _, m := range []string{"2026-09", "2026-10"} {
		if rep := replay(t, d, 0, "--month", m, "--verify", esURL); rep.Verified == nil || !*rep.Verified {
			t.Fatalf("replay %s --verify after the restart: %+v", m, rep)
		}
	}
}
