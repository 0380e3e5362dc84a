package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

const rerateSetup = `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner GmbH"}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223"]}
{"command":"CreatePricingRule","pricing_rule_id":"r-up","owner_account_id":"111111111111","name":"markup","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"10"}
{"command":"CreatePricingPlan","pricing_plan_id":"pp-up","owner_account_id":"111111111111","name":"markup","pricing_rule_ids":["r-up"]}
{"command":"CreatePricingRule","pricing_rule_id":"r-down","owner_account_id":"111111111111","name":"discount","type":"DISCOUNT","scope":"GLOBAL","modifier_percentage":"20"}
{"command":"CreatePricingPlan","pricing_plan_id":"pp-down","owner_account_id":"111111111111","name":"discount","pricing_rule_ids":["r-down"]}
{"command":"InviteBillSource","transfer_id":"rt-1","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09","pricing_plan_id":"pp-up"}
{"command":"AcceptTransfer","transfer_id":"rt-1"}
{"command":"SetTaxSettings","account_id":"111111111111","legal_name":"Partner GmbH","country":"DE"}
{"command":"SetTaxRate","jurisdiction":"DE","rate_percentage":"19","effective_from":"2026-01-01"}
{"command":"SetExchangeRate","from":"USD","to":"EUR","rate":"0.9","effective_date":"2026-09-01"}
`

type proformaReport struct {
	Rows []struct {
		Group        string `json:"billing_group_id"`
		Account      string `json:"account_id"`
		ProformaCost string `json:"proforma_cost"`
	} `json:"rows"`
	Total string `json:"total"`
}

type rerateOut struct {
	Lines []struct {
		Account string `json:"account_id"`
		Before  string `json:"proforma_cost_before"`
		After   string `json:"proforma_cost_after"`
		Delta   string `json:"delta"`
	} `json:"lines"`
	AsOfClose string `json:"configuration_as_of_close"`
}

// TestRerateDryRunAndClosedMonths (P4, R3, issue #6 item 4): a closed month
// keeps its pro forma when the plan changes afterwards (live and replay
// agree); rerate --dry-run shows the closed month under another plan without
// changing anything; without --dry-run only the current month can change.
func TestRerateDryRunAndClosedMonths(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, filepath.Join(t.TempDir(), "data"))
	d.ctlOK("", "apply", "-f", writeFile(t, "setup.jsonl", rerateSetup))
	d.ctlOK("", "clock", "set", "2026-09-20")
	d.ctlOK("", "usage", "send", "-f", writeFile(t, "usage.jsonl", closeUsage))
	d.ctlOK("", "clock", "set", "2026-10-01T08:00:00Z")
	d.ctlOK("", "close", "--payer", "111111111111", "--month", "2026-09")
	var sep proformaReport
	decode(t, d.ctlOK("", "report", "proforma", "--month", "2026-09"), &sep)
	if sep.Total == "" || sep.Total == "0" {
		t.Fatalf("September pro forma: %+v", sep)
	}

	// Without --dry-run, only the current month.
	if r := d.ctl("", "rerate", "--month", "2026-09", "--group", "tbg-rt-1", "--plan", "pp-down"); r.code == 0 || !strings.Contains(r.stderr, "current open month (2026-10)") {
		t.Fatalf("rerate of a past month:\n%s", r)
	}
	d.ctlOK("", "rerate", "--month", "2026-10", "--group", "tbg-rt-1", "--plan", "pp-down")
	var after proformaReport
	decode(t, d.ctlOK("", "report", "proforma", "--month", "2026-09"), &after)
	if after.Total != sep.Total {
		t.Fatalf("the closed month was re-rated: %s → %s", sep.Total, after.Total)
	}
	if rep := replay(t, d, 0, "--month", "2026-09", "--verify"); rep.Verified == nil || !*rep.Verified {
		t.Fatalf("replay of the closed month after the plan change: %+v", rep)
	}

	// The what-if for the closed month: before = as closed, after = with the discount plan.
	var out rerateOut
	decode(t, d.ctlOK("", "rerate", "--month", "2026-09", "--group", "tbg-rt-1", "--plan", "pp-down", "--dry-run"), &out)
	if out.AsOfClose == "" || len(out.Lines) != 3 {
		t.Fatalf("dry run: %+v", out)
	}
	total := out.Lines[len(out.Lines)-1]
	if total.Account != "TOTAL" || total.Before != sep.Total || total.After == total.Before || !strings.HasPrefix(total.Delta, "-") {
		t.Fatalf("dry run total %+v, live September %s", total, sep.Total)
	}
	var still proformaReport
	decode(t, d.ctlOK("", "report", "proforma", "--month", "2026-09"), &still)
	if still.Total != sep.Total {
		t.Fatalf("the dry run changed the pro forma: %s", still.Total)
	}
}
