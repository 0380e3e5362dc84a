package main

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func TestParseCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		line     string
		want     *billingv1.ExecuteRequest // nil with wantCode "" = skipped line
		wantName string
		wantCode domain.Code
	}{
		{
			name: "invite with every field",
			line: `{"command":"InviteBillSource","transfer_id":"rt-demo1","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09","pricing_plan_id":"","notes":"optional"}`,
			want: &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_InviteBillSource{InviteBillSource: &billingv1.InviteBillSource{
				TransferId: "rt-demo1", PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-09", Notes: "optional",
			}}},
			wantName: "InviteBillSource",
		},
		{
			name: "repeated field and surrounding space",
			line: "  {\"command\":\"RegisterOrganization\",\"management_account_id\":\"111111111111\",\"name\":\"Partner Co\",\"member_account_ids\":[\"111111111112\"]}\r\n",
			want: &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
				ManagementAccountId: "111111111111", Name: "Partner Co", MemberAccountIds: []string{"111111111112"},
			}}},
			wantName: "RegisterOrganization",
		},
		{
			name:     "command only",
			line:     `{"command":"AcceptTransfer"}`,
			want:     &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_AcceptTransfer{AcceptTransfer: &billingv1.AcceptTransfer{}}},
			wantName: "AcceptTransfer",
		},
		{
			name: "withdraw",
			line: `{"command":"WithdrawTransfer","transfer_id":"rt-demo1","end_month":"2026-10","request_id":"r1"}`,
			want: &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_WithdrawTransfer{WithdrawTransfer: &billingv1.WithdrawTransfer{
				TransferId: "rt-demo1", EndMonth: "2026-10", RequestId: "r1",
			}}},
			wantName: "WithdrawTransfer",
		},
		{name: "blank line", line: "   \t"},
		{name: "empty line", line: ""},
		{name: "comment", line: `# {"command":"AcceptTransfer"}`},
		{name: "indented comment", line: `   # note`},
		{name: "unknown command", line: `{"command":"InviteEveryone"}`, wantName: "InviteEveryone", wantCode: domain.CodeInvalidArgument},
		{name: "snake-case command is not a message name", line: `{"command":"accept_transfer","transfer_id":"x"}`, wantName: "accept_transfer", wantCode: domain.CodeInvalidArgument},
		{name: "unknown field", line: `{"command":"AcceptTransfer","transfer_id":"rt-1","transferid":"x"}`, wantName: "AcceptTransfer", wantCode: domain.CodeInvalidArgument},
		{name: "field of another command", line: `{"command":"AcceptTransfer","transfer_id":"rt-1","end_month":"2026-10"}`, wantName: "AcceptTransfer", wantCode: domain.CodeInvalidArgument},
		{name: "wrong field type", line: `{"command":"AcceptTransfer","transfer_id":5}`, wantName: "AcceptTransfer", wantCode: domain.CodeInvalidArgument},
		{name: "malformed JSON", line: `{"command":"AcceptTransfer",`, wantCode: domain.CodeInvalidArgument},
		{name: "two objects on a line", line: `{"command":"AcceptTransfer"}{"command":"AcceptTransfer"}`, wantCode: domain.CodeInvalidArgument},
		{name: "array", line: `[{"command":"AcceptTransfer"}]`, wantCode: domain.CodeInvalidArgument},
		{name: "missing command", line: `{"transfer_id":"rt-1"}`, wantCode: domain.CodeInvalidArgument},
		{name: "command not a string", line: `{"command":7}`, wantCode: domain.CodeInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, name, err := parseCommandLine([]byte(tc.line))
			if domain.CodeOf(err) != tc.wantCode || (tc.wantCode == "" && err != nil) {
				t.Fatalf("error = %v, want code %q", err, tc.wantCode)
			}
			if name != tc.wantName {
				t.Fatalf("name = %q, want %q", name, tc.wantName)
			}
			if tc.wantCode != "" {
				if got != nil {
					t.Fatalf("request %v returned with an error", got)
				}
				return
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("request = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEveryCommandOfTheProtoIsAccepted(t *testing.T) {
	t.Parallel()
	oneof := (&billingv1.ExecuteRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("command")
	for i := range oneof.Fields().Len() {
		name := string(oneof.Fields().Get(i).Message().Name())
		req, got, err := parseCommandLine([]byte(`{"command":"` + name + `"}`))
		if err != nil || got != name || req == nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
