// Package auth authenticates API callers with bearer tokens (DESIGN §5 A1).
//
// Tokens are random strings ("blt_" + 52 base32 characters). Only their SHA-256
// hashes are stored, in DATA_DIR/tokens.json (mode 0600); a presented token is
// hashed and compared in constant time with every stored hash. A matching token
// yields a Principal (name, role, account) that the API puts in the request
// context; the command side records its name as the event actor.
//
// Map of the package:
//   - auth.go    Principal, roles, context helpers, Policy
//   - verify.go  Verifier: bearer header parsing and constant-time matching
//   - store.go   tokens.json, token generation, EnsureAdminToken
//
// Issue 2 has one role, admin, whose token is created on first start. The token
// record already carries a role and an account id so that issue 7 (roles admin,
// payer, source, auditor, ingest, per account) adds records and policies, not a
// new shape.
package auth

import (
	"context"

	"github.com/billtransfer/ledger/domain"
)

// Roles a token can carry (DESIGN §5 A1). Only RoleAdmin is issued so far.
const (
	// RoleAdmin may call every procedure.
	RoleAdmin = "admin"
	// RolePayer is a bill transfer account reading its own organizations.
	RolePayer = "payer"
	// RoleSource is a bill source organization reading its own pro forma view.
	RoleSource = "source"
	// RoleAuditor reads everything and writes nothing.
	RoleAuditor = "auditor"
	// RoleIngest only publishes usage.
	RoleIngest = "ingest"
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

// Policy decides whether principal p may call procedure (a Connect procedure
// name such as "/billing.v1.CommandService/Execute"). It returns nil to allow and
// a *domain.Error (PERMISSION_DENIED) to deny. Finer checks that depend on the
// request's content (a payer reading its own organizations) belong in the
// handlers, which find the principal with FromContext.
type Policy func(p Principal, procedure string) error

// AdminOnly is the policy of issue 2: every procedure requires the admin role.
func AdminOnly(p Principal, procedure string) error {
	if p.Role == RoleAdmin {
		return nil
	}
	return domain.Reject(domain.CodePermissionDenied,
		"%s requires the %s role; token %q has role %q", procedure, RoleAdmin, p.Name, p.Role)
}
