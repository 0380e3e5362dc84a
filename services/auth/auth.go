// Package auth authenticates API callers with bearer tokens (DESIGN §5 A1).
//
// Tokens are random strings ("blt_" + 52 base32 characters). Only their SHA-256
// hashes are ever stored; a presented token is hashed and compared in constant
// time with every valid stored hash. A matching token yields a Principal
// (name, role, account) that the API puts in the request context; the command
// side records its name as the event actor. What a principal may do is decided
// in one place, services/api (authz.go).
//
// Two sources of tokens feed one Verifier:
//   - the ledger: AdminService.CreateToken appends TokenCreated (id, name, role,
//     account, SHA-256) to the stream billing.token.<id>, RevokeToken appends
//     TokenRevoked. Every billingd process follows billing.token.> (Follow), so
//     a token created or revoked through one process is valid or invalid on all
//     of them within the subscription lag (milliseconds); the process that
//     served the request applies it at once. The event log holds no usable
//     credential: only hashes.
//   - the data directory: the first-start admin token's hash in
//     DATA_DIR/tokens.json (mode 0600), so a fresh ledger can be administered
//     before any token event exists. It is local to the process's data
//     directory (id "file:admin") and is replaced by deleting tokens.json.
//
// Map of the package:
//   - auth.go    Principal, roles, context helpers
//   - verify.go  Verifier: bearer header parsing, constant-time matching, the
//     token list, revocation
//   - follow.go  Follow: the Verifier kept current from billing.token.> events
//   - sign.go    payload signatures for messages stored before they are
//     checked (the durable NATS path), so no token rests in a stream
//   - store.go   tokens.json, token generation, EnsureAdminToken
package auth

import (
	"context"

	"github.com/billtransfer/ledger/domain"
)

// Roles a token can carry (DESIGN §5 A1); the names are domain's, which
// validates them on CreateToken.
const (
	// RoleAdmin may call every procedure.
	RoleAdmin = domain.RoleAdmin
	// RolePayer is a bill transfer account: it acts on what it owns and reads
	// the organizations it paid for, in the months it paid for them.
	RolePayer = domain.RolePayer
	// RoleSource is a bill source organization reading its own pro forma view.
	RoleSource = domain.RoleSource
	// RoleAuditor reads everything and writes nothing.
	RoleAuditor = domain.RoleAuditor
	// RoleIngest only publishes usage.
	RoleIngest = domain.RoleIngest
)

// Principal is the authenticated caller of a request.
type Principal struct {
	// Name identifies the caller; it becomes the actor of the events it causes.
	Name string
	// Role is one of the Role constants.
	Role string
	// AccountID is the account the token is bound to (payer or source roles);
	// empty for admin, auditor and unbound tokens.
	AccountID string
}

type principalKey struct{}

// NewContext returns a copy of ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal stored by NewContext, and whether there was one.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
