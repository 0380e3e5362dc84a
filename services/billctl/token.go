package main

import (
	"fmt"
	"strings"

	"connectrpc.com/connect"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// tokenCmd groups the token administration (A1, admin tokens only).
type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"Issue a bearer token (admin). Only its SHA-256 is stored: the token is printed this once."`
	List   tokenListCmd   `cmd:"" help:"List tokens: id, name, role, account, created, revoked (never the token itself)."`
	Revoke tokenRevokeCmd `cmd:"" help:"Revoke a token on every billingd process sharing the ledger."`
}

// tokenCreateCmd is `billctl token create --role R [--account ID] [--name N]`.
type tokenCreateCmd struct {
	Role    string `required:"" enum:"admin,payer,source,auditor,ingest" help:"Role: ${enum}." placeholder:"ROLE"`
	Account string `help:"For payer and source: the organization (registered management account) the token acts for." placeholder:"ID"`
	Name    string `help:"Holder's name, recorded as the actor of the events the token causes (default: the token id)." placeholder:"NAME"`
}

// Run creates the token and prints it alone on stdout (so that
// TOKEN=$(billctl token create …) works), with a note on stderr; with -o json
// {"token":…,"info":{…},"position":…}.
func (c *tokenCreateCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.adminClient().CreateToken(ctx, connect.NewRequest(&billingv1.CreateTokenRequest{
		Role: c.Role, AccountId: strings.TrimSpace(c.Account), Name: strings.TrimSpace(c.Name),
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	info := res.Msg.GetInfo()
	what := info.GetRole()
	if info.GetAccountId() != "" {
		what += " of " + info.GetAccountId()
	}
	fmt.Fprintf(a.stderr, "created token %s (%s, name %q); it is shown only this once: store it now\n", info.GetTokenId(), what, info.GetName())
	_, err = fmt.Fprintln(a.stdout, res.Msg.GetToken())
	return err
}

// tokenListCmd is `billctl token list [--all]`.
type tokenListCmd struct {
	All bool `help:"Also list revoked tokens."`
}

// Run prints one row per token, or with -o json {"tokens":[…]}.
func (c *tokenListCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.adminClient().ListTokens(ctx, connect.NewRequest(&billingv1.ListTokensRequest{IncludeRevoked: c.All}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"TOKEN_ID", "NAME", "ROLE", "ACCOUNT", "CREATED", "CREATED_BY", "REVOKED", "ORIGIN"}}
	for _, t := range res.Msg.GetTokens() {
		revoked := t.GetRevokedAt()
		if revoked != "" && t.GetRevokedReason() != "" {
			revoked += " (" + t.GetRevokedReason() + ")"
		}
		rows = append(rows, []string{t.GetTokenId(), t.GetName(), t.GetRole(), t.GetAccountId(), t.GetCreatedAt(), t.GetCreatedBy(), revoked, t.GetOrigin()})
	}
	return writeTable(a.stdout, rows)
}

// tokenRevokeCmd is `billctl token revoke ID [--reason R]`.
type tokenRevokeCmd struct {
	ID     string `arg:"" help:"Token id (see billctl token list)." placeholder:"ID"`
	Reason string `help:"Why, recorded on the TokenRevoked event." placeholder:"TEXT"`
}

// Run revokes the token and confirms.
func (c *tokenRevokeCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.adminClient().RevokeToken(ctx, connect.NewRequest(&billingv1.RevokeTokenRequest{TokenId: strings.TrimSpace(c.ID), Reason: c.Reason}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	_, err = fmt.Fprintf(a.stdout, "revoked %s at %s\n", res.Msg.GetInfo().GetTokenId(), res.Msg.GetInfo().GetRevokedAt())
	return err
}
