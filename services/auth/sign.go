package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"github.com/billtransfer/ledger/domain"
)

// SignatureScheme is the Authorization scheme of messages that are stored
// before they are checked (the durable NATS ingestion path): instead of the
// token, which would then rest in the stream in clear, the message carries
//
//	Authorization: Billing-HMAC-SHA256 <key id>:<signature>
//
// where the key is the token's SHA-256 (what the server stores), the key id is
// the first 16 hex digits of SHA-256("billing-key-id" + key), and the
// signature is the hex HMAC-SHA256 of the message payload under the key. A
// stored message thus holds nothing that authenticates anything else: not the
// token, not its hash, and its signature only vouches for its own payload
// (whose re-ingestion is a duplicate, U2).
//
// Whoever knows a token's stored hash can sign; the hashes live in the event
// log and DATA_DIR/tokens.json, which only those with direct store access read
// (and they can write the log anyway).
const SignatureScheme = "Billing-HMAC-SHA256"

// Sentinel rejections of signatures, UNAUTHENTICATED.
var (
	// ErrMalformedSignature: the header is not "Billing-HMAC-SHA256 <key id>:<signature>".
	ErrMalformedSignature = &domain.Error{Code: domain.CodeUnauthenticated,
		Message: `malformed signature: want "Authorization: ` + SignatureScheme + ` <key id>:<hex HMAC-SHA256 of the payload>"`}
	// ErrInvalidSignature: no valid token's key signs this payload so.
	ErrInvalidSignature = &domain.Error{Code: domain.CodeUnauthenticated,
		Message: "invalid signature: it matches no token of this server for this payload (unknown or revoked token, or altered payload)"}
)

// keyID is the public name of a token's key (its SHA-256).
func keyID(hash []byte) string {
	sum := sha256.Sum256(append([]byte("billing-key-id"), hash...))
	return hex.EncodeToString(sum[:8])
}

func signature(hash, payload []byte) []byte {
	mac := hmac.New(sha256.New, hash)
	mac.Write(payload)
	return mac.Sum(nil)
}

// SignPayload returns the Authorization header value that authenticates
// payload as sent by the holder of token (see SignatureScheme).
func SignPayload(token string, payload []byte) string {
	key := sha256.Sum256([]byte(token))
	return SignatureScheme + " " + keyID(key[:]) + ":" + hex.EncodeToString(signature(key[:], payload))
}

// VerifySignature returns the principal whose valid token signed payload
// with the header value authorization ("Billing-HMAC-SHA256 <key id>:<sig>").
func (v *Verifier) VerifySignature(authorization string, payload []byte) (Principal, error) {
	authorization = strings.TrimSpace(authorization)
	if authorization == "" {
		return Principal{}, ErrMissingToken
	}
	scheme, rest, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, SignatureScheme) {
		return Principal{}, ErrMalformedSignature
	}
	kid, sigHex, ok := strings.Cut(strings.TrimSpace(rest), ":")
	sig, err := hex.DecodeString(sigHex)
	if !ok || err != nil || len(sig) != sha256.Size {
		return Principal{}, ErrMalformedSignature
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for i := range v.entries {
		e := &v.entries[i]
		if e.record.Revoked() || keyID(e.hash[:]) != kid {
			continue
		}
		if subtle.ConstantTimeCompare(signature(e.hash[:], payload), sig) == 1 {
			r := e.record
			return Principal{Name: r.Name, Role: r.Role, AccountID: r.AccountID}, nil
		}
	}
	return Principal{}, ErrInvalidSignature
}
