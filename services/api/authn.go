package api

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/auth"
)

// authenticator is the HTTP middleware in front of every Connect service,
// POST /v1/usage and GET /metrics. It runs before the request body is read, so
// an unauthenticated caller learns nothing about the request schema: it
// verifies the bearer token, applies step 1 of the authorization (the role's
// access to the procedure, authz.go), and writes errors in the caller's
// protocol (Connect, gRPC or gRPC-Web) with connect.ErrorWriter.
type authenticator struct {
	verifier *auth.Verifier
	errors   *connect.ErrorWriter
	mapper   *errorMapper
}

// wrap puts the middleware in front of a Connect service handler; it takes and
// returns the (path, handler) pair of the generated New…Handler functions.
func (a *authenticator) wrap(path string, next http.Handler) (string, http.Handler) {
	return a.wrapAs("", path, next)
}

// wrapAs is wrap for a route that is not a Connect procedure: the policy
// authorizes it as procedure ("" = the request path).
func (a *authenticator) wrapAs(procedure, pattern string, next http.Handler) (string, http.Handler) {
	return pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		procedure := procedure
		if procedure == "" {
			procedure = r.URL.Path
		}
		p, err := a.verifier.Authenticate(r.Header.Get("Authorization"))
		if err == nil {
			err = checkRole(p, procedure)
		}
		if err != nil {
			a.reject(w, r, procedure, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
	})
}

// reject writes err, mapped like any handler error, in the caller's protocol.
func (a *authenticator) reject(w http.ResponseWriter, r *http.Request, procedure string, err error) {
	code := domain.CodeOf(err)
	a.mapper.log.InfoContext(r.Context(), "request rejected", "procedure", procedure,
		"code", string(code), "reason", err.Error(), "remote", r.RemoteAddr)
	if code == domain.CodeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="billing"`)
	}
	_ = a.errors.Write(w, r, a.mapper.toConnect(r.Context(), procedure, err))
}
