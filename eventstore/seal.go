package eventstore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Month seals (issue #6): a MonthSealed event names the head of every stream a
// close committed, a root over those heads and an Ed25519 signature. Because
// each stream is a hash chain, the head commits to every earlier event, so the
// exported prefixes of those streams plus the seal can be verified offline.

// SealAlgorithm is the only signature algorithm of a seal.
const SealAlgorithm = "ed25519"

// SealRoot is SHA-256 over the lines "<stream> <version> <hex hash>\n" of the
// heads, in the order given (sorted by stream name in a seal).
func SealRoot(heads []*billingv1.SealedStream) []byte {
	h := sha256.New()
	for _, s := range heads {
		fmt.Fprintf(h, "%s %d %s\n", s.GetStream(), s.GetVersion(), hex.EncodeToString(s.GetHash()))
	}
	return h.Sum(nil)
}

// SealMessage is what the seal key signs.
func SealMessage(payer, month string, root []byte) []byte {
	return []byte("billing-ledger month seal v1\n" + payer + "\n" + month + "\n" + hex.EncodeToString(root) + "\n")
}

// SealKeyID names a seal key: the first 16 hex digits of SHA-256(public key).
func SealKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])[:16]
}

// NewMonthSeal builds and signs the seal of payer's month over heads (sorted here).
func NewMonthSeal(payer, month string, heads []*billingv1.SealedStream, key ed25519.PrivateKey) *billingv1.MonthSealed {
	heads = slices.Clone(heads)
	slices.SortFunc(heads, func(a, b *billingv1.SealedStream) int { return strings.Compare(a.GetStream(), b.GetStream()) })
	root := SealRoot(heads)
	pub := key.Public().(ed25519.PublicKey)
	return &billingv1.MonthSealed{
		PayerAccountId: payer, Month: month, Streams: heads, Root: root, Algorithm: SealAlgorithm,
		PublicKey: pub, Signature: ed25519.Sign(key, SealMessage(payer, month, root)), KeyId: SealKeyID(pub),
	}
}

// SealError says why a seal does not hold.
type SealError struct {
	// Payer and Month of the seal.
	Payer, Month string
	// Reason names what is wrong.
	Reason string
}

// Error implements error.
func (e *SealError) Error() string {
	return fmt.Sprintf("seal of %s for payer %s does not hold: %s", e.Month, e.Payer, e.Reason)
}

// VerifySeal checks a seal against the streams it names: streams maps a
// stream name to its records from version 1 on (at least up to the sealed
// version), whose hash chains the caller has verified (VerifyChain). It checks
// that the heads are sorted and each matches the event at its version, that the
// root recomputes and that the signature is the seal key's.
func VerifySeal(seal *billingv1.MonthSealed, streams map[string][]Record) error {
	fail := func(format string, args ...any) error {
		return &SealError{Payer: seal.GetPayerAccountId(), Month: seal.GetMonth(), Reason: fmt.Sprintf(format, args...)}
	}
	if seal.GetAlgorithm() != SealAlgorithm {
		return fail("algorithm %q is not %s", seal.GetAlgorithm(), SealAlgorithm)
	}
	if len(seal.GetPublicKey()) != ed25519.PublicKeySize {
		return fail("public key has %d bytes, not %d", len(seal.GetPublicKey()), ed25519.PublicKeySize)
	}
	pub := ed25519.PublicKey(seal.GetPublicKey())
	if SealKeyID(pub) != seal.GetKeyId() {
		return fail("key id %s does not name the public key (%s)", seal.GetKeyId(), SealKeyID(pub))
	}
	if len(seal.GetStreams()) == 0 {
		return fail("it names no stream")
	}
	for i, h := range seal.GetStreams() {
		if i > 0 && seal.GetStreams()[i-1].GetStream() >= h.GetStream() {
			return fail("streams are not sorted and distinct at %s", h.GetStream())
		}
		recs := streams[h.GetStream()]
		if h.GetVersion() == 0 || uint64(len(recs)) < h.GetVersion() {
			return fail("stream %s: version %d is not among the %d events given", h.GetStream(), h.GetVersion(), len(recs))
		}
		ev := recs[h.GetVersion()-1].Event
		if ev.GetStreamVersion() != h.GetVersion() || !bytes.Equal(ev.GetHash(), h.GetHash()) {
			return fail("stream %s: the event at version %d has hash %x, the seal says %x", h.GetStream(), h.GetVersion(), ev.GetHash(), h.GetHash())
		}
	}
	root := SealRoot(seal.GetStreams())
	if !bytes.Equal(root, seal.GetRoot()) {
		return fail("root %x does not match the heads (%x)", seal.GetRoot(), root)
	}
	if !ed25519.Verify(pub, SealMessage(seal.GetPayerAccountId(), seal.GetMonth(), root), seal.GetSignature()) {
		return fail("the signature does not verify with key %s", seal.GetKeyId())
	}
	return nil
}
