package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTokensOnTheBinaries (DESIGN §5 A1, A2): `billctl token create` issues
// tokens of every kind through a real billingd, and billctl works with them
// within their role: a payer invites and reads its own billable view and is
// denied a foreign one, a source accepts and reads its pro forma and is denied
// the cost report, an ingest token publishes usage over both NATS paths. A
// revoked token is refused at once; token list never shows a token.
func TestTokensOnTheBinaries(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, filepath.Join(t.TempDir(), "data"))
	d.ctlOK("", "apply", "-f", writeFile(t, "orgs.jsonl", `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner"}
{"command":"RegisterOrganization","management_account_id":"333333333333","name":"Other payer"}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223"]}
`))

	create := func(args ...string) (token, id string) {
		t.Helper()
		var out struct {
			Token string `json:"token"`
			Info  struct {
				TokenID string `json:"token_id"`
			} `json:"info"`
		}
		decode(t, d.ctlOK("", append([]string{"token", "create"}, args...)...), &out)
		if !strings.HasPrefix(out.Token, "blt_") || out.Info.TokenID == "" {
			t.Fatalf("token create %v: %+v", args, out)
		}
		return out.Token, out.Info.TokenID
	}
	payer, payerID := create("--role", "payer", "--account", "111111111111", "--name", "partner-finance")
	source, _ := create("--role", "source", "--account", "222222222222")
	ingest, _ := create("--role", "ingest", "--name", "meter")
	// A payer token must name a registered organization.
	if r := d.ctl("", "token", "create", "--role", "payer", "--account", "999999999999"); r.code != 1 || !strings.Contains(r.stderr, "NOT_FOUND") {
		t.Fatalf("payer token of an unknown organization:\n%s", r)
	}

	as := func(token string, args ...string) result {
		t.Helper()
		r, err := runBillctl(d.cwd, "", append([]string{"--server", "http://" + d.http, "--token", token, "-o", "json"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ok := func(r result) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("want exit 0:\n%s", r)
		}
		return r
	}
	denied := func(r result, code string) {
		t.Helper()
		if r.code != 1 || !strings.HasPrefix(r.stderr, code+": ") {
			t.Fatalf("want exit 1 with %s:\n%s", code, r)
		}
	}

	// The payer invites, the source accepts: each acts for itself.
	ok(as(payer, "apply", "-f", writeFile(t, "invite.jsonl", `{"command":"InviteBillSource","transfer_id":"rt-1","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}`+"\n")))
	denied(as(payer, "apply", "-f", writeFile(t, "foreign.jsonl", `{"command":"InviteBillSource","transfer_id":"rt-2","payer_account_id":"333333333333","source_account_id":"222222222222","start_month":"2026-09"}`+"\n")), "line 1: InviteBillSource: PERMISSION_DENIED")
	ok(as(source, "apply", "-f", writeFile(t, "accept.jsonl", `{"command":"AcceptTransfer","transfer_id":"rt-1"}`+"\n")))
	d.ctlOK("", "clock", "set", "2026-09-20")

	// The ingest token publishes over NATS request-reply and JetStream.
	rec := func(id string) string {
		return `{"usage_id":"` + id + `","account_id":"222222222223","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","quantity":"1","list_unit_price":"2","billed_cost":"1.5","currency":"USD"}` + "\n"
	}
	ok(as(ingest, "usage", "send", "-f", writeFile(t, "batch.jsonl", rec("u-batch"))))
	ok(as(ingest, "usage", "send", "--durable", "-f", writeFile(t, "durable.jsonl", rec("u-durable"))))
	denied(as(source, "usage", "send", "-f", writeFile(t, "src.jsonl", rec("u-src"))), "PERMISSION_DENIED")
	denied(as(ingest, "report", "billable", "--month", "2026-09"), "PERMISSION_DENIED")

	// The payer reads its billable view: both records, and only its rows.
	var billable struct {
		Rows []struct {
			PayerAccountID string `json:"payer_account_id"`
			RecordCount    string `json:"record_count"`
		} `json:"rows"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		decode(t, ok(as(payer, "report", "billable", "--month", "2026-09")), &billable)
		if len(billable.Rows) == 1 && billable.Rows[0].RecordCount == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the durable record never reached the payer's billable view: %+v", billable)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if billable.Rows[0].PayerAccountID != "111111111111" {
		t.Fatalf("payer rows %+v", billable)
	}
	denied(as(payer, "report", "billable", "--month", "2026-09", "--payer", "333333333333"), "PERMISSION_DENIED")
	denied(as(payer, "token", "list"), "PERMISSION_DENIED")

	// The source reads its pro forma, never the cost report.
	var proforma struct {
		Rows []struct {
			AccountID string `json:"account_id"`
		} `json:"rows"`
	}
	decode(t, ok(as(source, "report", "proforma", "--month", "2026-09")), &proforma)
	if len(proforma.Rows) == 0 {
		t.Fatalf("the source sees no pro forma row")
	}
	denied(as(source, "report", "cost", "--month", "2026-09"), "PERMISSION_DENIED")

	// token list shows ids, never tokens; revocation is immediate.
	list := d.ctlOK("", "token", "list")
	for _, tok := range []string{payer, source, ingest, d.token} {
		if strings.Contains(list.stdout, tok) {
			t.Fatalf("token list shows a token:\n%s", list)
		}
	}
	if !strings.Contains(list.stdout, payerID) || !strings.Contains(list.stdout, "partner-finance") || !strings.Contains(list.stdout, "file:admin") {
		t.Fatalf("token list:\n%s", list)
	}
	d.ctlOK("", "token", "revoke", payerID, "--reason", "rotated")
	denied(as(payer, "report", "billable", "--month", "2026-09"), "UNAUTHENTICATED")
}
