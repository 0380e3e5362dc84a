package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/clock"
)

// viewCommands set up P (111111111111) sharing views with S (222222222222)
// through `billctl apply`, RevokeBillingView and DeleteBillingView included.
const viewCommands = `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"P"}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"S","member_account_ids":["222222222223"]}
{"command":"CreateBillingView","billing_view_id":"bv-all","owner_account_id":"111111111111","type":"CUSTOM","name":"everything"}
{"command":"CreateBillingView","billing_view_id":"bv-s","owner_account_id":"111111111111","type":"CUSTOM","name":"S web","source_view_ids":["bv-all"],"filter":{"account_ids":["222222222223"],"tags":[{"key":"team","values":["web"]}]}}
{"command":"CreateBillingView","billing_view_id":"bv-old","owner_account_id":"111111111111","type":"CUSTOM","filter":{"account_ids":["222222222223"]}}
{"command":"GrantBillingView","billing_view_id":"bv-s","account_id":"222222222222"}
{"command":"GrantBillingView","billing_view_id":"bv-old","account_id":"222222222222"}
{"command":"RevokeBillingView","billing_view_id":"bv-old","account_id":"222222222222","request_id":"rq-revoke"}
{"command":"DeleteBillingView","billing_view_id":"bv-old"}
`

// TestViewList: the new commands work through apply, and view list prints
// the views as a table, with --include-deleted, --owner, --grantee and -o json,
// from a real ledger (in-memory store, command pipeline, directory).
func TestViewList(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	url := newServer(t, api.Options{
		Executor: commands.New(store, clock.NewSimulated(time.Date(2026, 8, 10, 12, 0, 0, 0, time.UTC), nil), commands.Options{}),
		Ledger:   commands.NewDirectory(store),
	})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "apply", "-f", writeFile(t, viewCommands))
	if code != 0 || !strings.Contains(stdout, "line 8: RevokeBillingView ok id=bv-old events=1\n") || !strings.HasSuffix(stdout, "line 9: DeleteBillingView ok id=bv-old events=1\n") {
		t.Fatalf("apply: exit %d\n%s%s", code, stdout, stderr)
	}
	list := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, "", append([]string{"--server", url, "--token", testToken}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, stderr)
		}
		return stdout
	}
	want := `BILLING_VIEW  OWNER         TYPE    NAME        BILLING_GROUP  SOURCE_VIEWS  ACCOUNTS      TAGS      GRANTEES      DELETED
bv-all        111111111111  CUSTOM  everything  -              -             -             -         -             -
bv-s          111111111111  CUSTOM  S web       -              bv-all        222222222223  team=web  222222222222  -
`
	if got := list("view", "list"); got != want {
		t.Fatalf("view list:\n%s\nwant:\n%s", got, want)
	}
	want = `BILLING_VIEW  OWNER         TYPE    NAME        BILLING_GROUP  SOURCE_VIEWS  ACCOUNTS      TAGS      GRANTEES      DELETED
bv-all        111111111111  CUSTOM  everything  -              -             -             -         -             -
bv-old        111111111111  CUSTOM  -           -              -             222222222223  -         -             yes
bv-s          111111111111  CUSTOM  S web       -              bv-all        222222222223  team=web  222222222222  -
`
	if got := list("view", "list", "--include-deleted", "--owner", "111111111111"); got != want {
		t.Fatalf("view list --include-deleted --owner:\n%s\nwant:\n%s", got, want)
	}
	if got := list("view", "list", "--owner", "222222222222"); got != "BILLING_VIEW  OWNER  TYPE  NAME  BILLING_GROUP  SOURCE_VIEWS  ACCOUNTS  TAGS  GRANTEES  DELETED\n" {
		t.Fatalf("view list --owner S:\n%s", got)
	}
	var doc struct {
		Views []struct {
			ID       string   `json:"billing_view_id"`
			Owner    string   `json:"owner_account_id"`
			Type     string   `json:"type"`
			Sources  []string `json:"source_view_ids"`
			Grantees []string `json:"grantee_account_ids"`
			Deleted  bool     `json:"deleted"`
			Filter   struct {
				Accounts []string `json:"account_ids"`
			} `json:"filter"`
		} `json:"views"`
	}
	out := list("-o", "json", "view", "list", "--grantee", "222222222222", "--include-deleted")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	if len(doc.Views) != 1 || doc.Views[0].ID != "bv-s" || doc.Views[0].Owner != "111111111111" || doc.Views[0].Type != "CUSTOM" ||
		strings.Join(doc.Views[0].Sources, ",") != "bv-all" || strings.Join(doc.Views[0].Grantees, ",") != "222222222222" ||
		doc.Views[0].Deleted || strings.Join(doc.Views[0].Filter.Accounts, ",") != "222222222223" {
		t.Fatalf("view list -o json --grantee S:\n%s", out)
	}
	// A bad filter is the server's INVALID_ARGUMENT.
	if code, _, stderr := runCLI(t, "", "--server", url, "--token", testToken, "view", "list", "--owner", "12"); code != 1 || !strings.HasPrefix(stderr, `INVALID_ARGUMENT: owner_account_id "12"`) {
		t.Fatalf("bad owner: exit %d %q", code, stderr)
	}
	// A deleted view is gone for every command, and its id stays taken.
	code, _, stderr = runCLI(t, `{"command":"CreateBillingView","billing_view_id":"bv-old","owner_account_id":"111111111111","type":"CUSTOM"}`+"\n",
		"--server", url, "--token", testToken, "apply", "-f", "-")
	if code != 1 || !strings.Contains(stderr, "line 1: CreateBillingView: ALREADY_EXISTS: billing view bv-old existed and was deleted") {
		t.Fatalf("re-create a deleted view: exit %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, `{"command":"DeleteBillingView","billing_view_id":"bv-all"}`+"\n", "--server", url, "--token", testToken, "apply", "-f", "-")
	if code != 1 || !strings.Contains(stderr, "FAILED_PRECONDITION: billing view bv-all is a source view of live CUSTOM view(s) bv-s of 111111111111") {
		t.Fatalf("delete a source view in use: exit %d %q", code, stderr)
	}
}
