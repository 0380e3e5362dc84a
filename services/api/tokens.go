package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/auth"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TokenIDPrefix starts the id of every token created through the API.
const TokenIDPrefix = "tok-"

// CreateToken implements AdminService.CreateToken (A1): it generates a
// token, records CreateToken (id, name, role, account and the token's SHA-256,
// never the token) through the command pipeline, makes the token valid on
// this process at once (the other processes follow billing.token.>) and
// returns it, the only time it is shown.
func (s *service) CreateToken(ctx context.Context, req *connect.Request[billingv1.CreateTokenRequest]) (*connect.Response[billingv1.CreateTokenResponse], error) {
	if s.opts.Executor == nil {
		return nil, unimplemented("commands (tokens are recorded as events)")
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, withOp("create token", errors.New("no principal in the request context"))
	}
	role := strings.ToLower(strings.TrimSpace(req.Msg.GetRole()))
	account := strings.TrimSpace(req.Msg.GetAccountId())
	id, err := newTokenID()
	if err != nil {
		return nil, withOp("create token", err)
	}
	name := strings.TrimSpace(req.Msg.GetName())
	if name == "" {
		name = id
	}
	token, err := auth.NewToken()
	if err != nil {
		return nil, withOp("create token", err)
	}
	sum := auth.HashToken(token)
	result, err := s.opts.Executor.Execute(ctx, p.Name, &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_CreateToken{CreateToken: &billingv1.CreateToken{
		TokenId: id, Name: name, Role: role, AccountId: account, TokenSha256: sum,
	}}})
	if err != nil {
		return nil, withOp("create token", err)
	}
	rec := auth.TokenRecord{ID: id, Name: name, Role: role, AccountID: account, SHA256: sum,
		CreatedAt: s.opts.Clock.Now().UTC(), CreatedBy: p.Name, Origin: auth.OriginLedger}
	if err := s.opts.Verifier.Put(rec); err != nil {
		return nil, withOp("create token", err)
	}
	return connect.NewResponse(&billingv1.CreateTokenResponse{Token: token, Info: tokenInfo(rec), Position: result.GetPosition()}), nil
}

// ListTokens implements AdminService.ListTokens: the records of the tokens
// this process accepts (the ledger's and its data directory's), never a token.
func (s *service) ListTokens(_ context.Context, req *connect.Request[billingv1.ListTokensRequest]) (*connect.Response[billingv1.ListTokensResponse], error) {
	res := &billingv1.ListTokensResponse{}
	for _, r := range s.opts.Verifier.Tokens(req.Msg.GetIncludeRevoked()) {
		res.Tokens = append(res.Tokens, tokenInfo(r))
	}
	return connect.NewResponse(res), nil
}

// RevokeToken implements AdminService.RevokeToken: it records RevokeToken and
// makes the token invalid on this process at once; the other processes
// follow within the subscription lag.
func (s *service) RevokeToken(ctx context.Context, req *connect.Request[billingv1.RevokeTokenRequest]) (*connect.Response[billingv1.RevokeTokenResponse], error) {
	if s.opts.Executor == nil {
		return nil, unimplemented("commands (tokens are recorded as events)")
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, withOp("revoke token", errors.New("no principal in the request context"))
	}
	id := strings.TrimSpace(req.Msg.GetTokenId())
	if strings.HasPrefix(id, auth.FileIDPrefix) {
		return nil, domain.Reject(domain.CodeFailedPrecondition,
			"token %s is the first-start token of this process's data directory (DATA_DIR/%s), not a ledger token; to replace it, stop billingd, delete that file and start again", id, auth.TokensFile)
	}
	result, err := s.opts.Executor.Execute(ctx, p.Name, &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RevokeToken{RevokeToken: &billingv1.RevokeToken{
		TokenId: id, Reason: req.Msg.GetReason(),
	}}})
	if err != nil {
		return nil, withOp("revoke token", err)
	}
	s.opts.Verifier.Revoke(id, s.opts.Clock.Now(), req.Msg.GetReason())
	rec, _ := s.opts.Verifier.Lookup(id)
	if rec.ID == "" { // recorded by another process and not followed here yet
		rec = auth.TokenRecord{ID: id, RevokedAt: s.opts.Clock.Now().UTC(), RevokedReason: req.Msg.GetReason(), Origin: auth.OriginLedger}
	}
	return connect.NewResponse(&billingv1.RevokeTokenResponse{Info: tokenInfo(rec), Position: result.GetPosition()}), nil
}

// tokenInfo renders a record on the wire.
func tokenInfo(r auth.TokenRecord) *billingv1.TokenInfo {
	info := &billingv1.TokenInfo{TokenId: r.ID, Name: r.Name, Role: r.Role, AccountId: r.AccountID,
		CreatedBy: r.CreatedBy, RevokedReason: r.RevokedReason, Origin: r.Origin}
	if !r.CreatedAt.IsZero() {
		info.CreatedAt = r.CreatedAt.UTC().Format(time.RFC3339)
	}
	if r.Revoked() {
		info.RevokedAt = r.RevokedAt.UTC().Format(time.RFC3339)
	}
	return info
}

// newTokenID returns TokenIDPrefix + 12 random hex digits.
func newTokenID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return TokenIDPrefix + hex.EncodeToString(b[:]), nil
}
