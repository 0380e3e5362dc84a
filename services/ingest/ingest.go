// Package ingest is the NATS side of usage ingestion (issue #3). Upstream systems
// publish usage records in one of two ways:
//
//   - Batch, request-reply: a request on subject "usage.v1.batch" whose payload is
//     JSON Lines (one UsageRecord per line, proto field names). The reply is an
//     IngestBatchResponse in JSON (proto field names) with one result per line:
//     ACCEPTED, DUPLICATE, or REJECTED with the dead-letter reason. The records are
//     in the ledger when the reply arrives. Responders form the queue group
//     "billing-ingest", so several ingest processes share the load.
//   - Durable, fire-and-forget: a JetStream publish to "usage.v1.records" (one
//     record, or JSON Lines) on the stream USAGE_INGEST. The publisher's ack means
//     the record is safely stored; an ingest consumer ("billing-ingest") then feeds
//     it to the ledger and acknowledges it only after the ledger appended it. A
//     crash in between redelivers it, and deduplication by usage_id (U2) keeps
//     the count exact.
//
// A line that is not a valid record is never dropped: it is dead-lettered as
// MALFORMED with its raw bytes and line number (U4).
//
// Authentication (DESIGN §5 A1), against the same Verifier as the HTTP API
// (ledger tokens and the first-start admin token); only admin and ingest
// tokens may publish usage (the IngestBatch rule of services/api). The
// token's name becomes the events' actor.
//   - Request-reply: the header "Authorization: Bearer <token>". The request
//     is not stored. A missing, invalid or revoked token is answered
//     {"error":"UNAUTHENTICATED: …"}, a token of another role
//     {"error":"PERMISSION_DENIED: …"}, with the headers Nats-Service-Error
//     (the same text) and Nats-Service-Error-Code (401 or 403); nothing is
//     ingested.
//   - Durable: the message is stored in USAGE_INGEST before it is checked, so
//     it must not carry the token (tokens rest only hashed, A1). It carries
//     "Authorization: Billing-HMAC-SHA256 <key id>:<signature>", an HMAC of
//     its payload keyed by the token's SHA-256 (auth.SignPayload). A message
//     without a valid signature of an ingest or admin token (a bearer token
//     included) is terminated (JetStream AckTerm with the reason, which also
//     publishes the advisory $JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED and
//     removes it from the work queue) and logged with its stream sequence. It
//     is not dead-lettered: an unauthenticated payload must not enter the
//     ledger, not even its dead letter (which an admin may re-drive under its
//     own name). The publisher got its JetStream ack before the check, so it
//     learns of the rejection from the log, the advisory or the missing rows,
//     as for any outcome on this path.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/usagejson"
)

// Authenticator verifies Authorization header values (*auth.Verifier).
type Authenticator interface {
	// Authenticate returns the principal of "Bearer <token>", or an
	// UNAUTHENTICATED *domain.Error.
	Authenticate(authorization string) (auth.Principal, error)
	// VerifySignature returns the principal whose token signed payload
	// ("Billing-HMAC-SHA256 <key id>:<signature>"), or an UNAUTHENTICATED
	// *domain.Error.
	VerifySignature(authorization string, payload []byte) (auth.Principal, error)
}

// AuthorizationHeader is the NATS message header carrying "Bearer <token>".
const AuthorizationHeader = "Authorization"

// Headers of an error reply on the batch subject (as nats.go/micro writes them).
const (
	ServiceErrorHeader     = "Nats-Service-Error"
	ServiceErrorCodeHeader = "Nats-Service-Error-Code"
)

// authorize checks that an authenticated principal may publish usage (admin or ingest).
func authorize(p auth.Principal, err error) (auth.Principal, error) {
	if err != nil {
		return auth.Principal{}, err
	}
	if p.Role != auth.RoleAdmin && p.Role != auth.RoleIngest {
		return auth.Principal{}, domain.Reject(domain.CodePermissionDenied,
			"publishing usage is not allowed for the %s role (token %q); it is for admin and ingest tokens (A2)", p.Role, p.Name)
	}
	return p, nil
}

// Subjects and names of the NATS ingestion paths. They are public contract.
const (
	BatchSubject    = "usage.v1.batch"
	DurableSubject  = "usage.v1.records"
	DurableStream   = "USAGE_INGEST"
	QueueGroup      = "billing-ingest"
	DurableConsumer = "billing-ingest"
)

// Writer is the usage writer (commands.UsageWriter).
type Writer interface {
	// IngestItems ingests items and answers per item.
	IngestItems(ctx context.Context, actor string, items []commands.UsageItem) (*billingv1.IngestBatchResponse, error)
}

// ParseLines splits a JSON Lines payload into items; blank lines are skipped, a
// line that does not parse becomes a malformed item. lineOf[i] is item i's line.
func ParseLines(payload []byte, origin string) (items []commands.UsageItem, lineOf []int) {
	line := 0
	for len(payload) > 0 {
		var raw []byte
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			raw, payload = payload[:i], payload[i+1:]
		} else {
			raw, payload = payload, nil
		}
		line++
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		o := fmt.Sprintf("%s line %d", origin, line)
		rec, err := usagejson.Parse(raw)
		if err != nil {
			items = append(items, commands.UsageItem{Raw: append([]byte(nil), raw...), MalformedReason: fmt.Sprintf("line %d: %v", line, err), Origin: o})
		} else {
			items = append(items, commands.UsageItem{Record: rec, Origin: o})
		}
		lineOf = append(lineOf, line)
	}
	return items, lineOf
}

// Server runs both NATS paths.
type Server struct {
	NC     *nats.Conn
	Writer Writer
	Log    *slog.Logger
	// Verifier checks every message's token. Required: Run refuses to serve
	// unauthenticated ingestion.
	Verifier Authenticator
	// FetchBatch is the most durable messages handled per ledger append (default 500).
	FetchBatch int
	// Workers is the number of batch requests handled at once (default 4).
	Workers int
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.FetchBatch <= 0 {
		s.FetchBatch = 500
	}
	if s.Workers <= 0 {
		s.Workers = 4
	}
	if s.Verifier == nil {
		return errors.New("ingest: Server.Verifier is required (NATS ingestion is authenticated)")
	}
	// Each subscription delivers on its own goroutine: Workers members of the
	// queue group let that many batches be decided and appended at once.
	for i := 0; i < s.Workers; i++ {
		sub, err := s.NC.QueueSubscribe(BatchSubject, QueueGroup, func(m *nats.Msg) { s.handleBatch(ctx, m) })
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ingest: subscribe %s: %w", BatchSubject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	js, err := jetstream.New(s.NC)
	if err != nil {
		return err
	}
	cons, err := EnsureDurable(ctx, js)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// The iterator keeps pulling in the background (up to 4 batches ahead), so
	// the next records are already here while the ledger appends the current ones.
	it, err := cons.Messages(jetstream.PullMaxMessages(4 * s.FetchBatch))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ingest: consume %s: %w", DurableStream, err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	for ctx.Err() == nil {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			s.Log.Warn("ingest: next", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		msgs := []jetstream.Msg{m}
		// Take what has already arrived, waiting at most a moment for more.
		for len(msgs) < s.FetchBatch {
			m, err := it.Next(jetstream.NextMaxWait(2 * time.Millisecond))
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		s.handleDurable(ctx, msgs)
	}
	return nil
}

// EnsureDurable creates (or updates) the USAGE_INGEST stream and the ingest consumer.
func EnsureDurable(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      DurableStream,
		Subjects:  []string{DurableSubject, DurableSubject + ".>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy,
		Discard:   jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: stream %s: %w", DurableStream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, DurableStream, jetstream.ConsumerConfig{
		Durable:       DurableConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second, // short, so a crashed ingest's unacknowledged records come back quickly (duplicates are caught anyway)
		MaxAckPending: 20000,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: consumer %s: %w", DurableConsumer, err)
	}
	return cons, nil
}

func (s *Server) handleBatch(ctx context.Context, m *nats.Msg) {
	p, err := authorize(s.Verifier.Authenticate(m.Header.Get(AuthorizationHeader)))
	if err != nil {
		s.Log.Info("ingest: batch rejected", "subject", BatchSubject, "code", string(domain.CodeOf(err)), "reason", err.Error())
		status := "401"
		if domain.CodeOf(err) == domain.CodePermissionDenied {
			status = "403"
		}
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(ServiceErrorHeader, err.Error())
		reply.Header.Set(ServiceErrorCodeHeader, status)
		reply.Data = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
		if err := m.RespondMsg(reply); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
			s.Log.Warn("ingest: reply", "err", err)
		}
		return
	}
	items, lineOf := ParseLines(m.Data, "nats:"+BatchSubject)
	res, err := s.Writer.IngestItems(ctx, p.Name, items)
	if err != nil {
		s.Log.Error("ingest: batch", "err", err)
		_ = m.Respond([]byte(fmt.Sprintf(`{"error":%q}`, "ingest failed, nothing was lost: retry the batch ("+err.Error()+")")))
		return
	}
	for i, r := range res.GetResults() {
		r.Index = uint32(lineOf[i])
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(res)
	if err != nil {
		s.Log.Error("ingest: encode reply", "err", err)
		return
	}
	if err := m.Respond(b); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		s.Log.Warn("ingest: reply", "err", err)
	}
}

// handleDurable authenticates each message, terminates those without a valid
// signature, and ingests the others in one call per publishing principal (the
// actor of their events).
func (s *Server) handleDurable(ctx context.Context, msgs []jetstream.Msg) {
	type batch struct {
		actor string
		items []commands.UsageItem
		msgs  []jetstream.Msg
	}
	var batches []*batch
	byActor := map[string]*batch{}
	for _, m := range msgs {
		meta, _ := m.Metadata()
		origin := "nats:" + DurableSubject
		var seq uint64
		if meta != nil {
			seq = meta.Sequence.Stream
			origin = fmt.Sprintf("nats:%s seq %d", DurableSubject, seq)
		}
		p, err := authorize(s.Verifier.VerifySignature(m.Headers().Get(AuthorizationHeader), m.Data()))
		if err != nil {
			s.Log.Warn("ingest: durable message terminated", "seq", seq, "code", string(domain.CodeOf(err)), "reason", err.Error())
			if terr := m.TermWithReason(err.Error()); terr != nil {
				s.Log.Warn("ingest: term", "seq", seq, "err", terr)
			}
			continue
		}
		b := byActor[p.Name]
		if b == nil {
			b = &batch{actor: p.Name}
			byActor[p.Name] = b
			batches = append(batches, b)
		}
		its, _ := ParseLines(m.Data(), origin)
		b.items = append(b.items, its...)
		b.msgs = append(b.msgs, m)
	}
	for _, b := range batches {
		if _, err := s.Writer.IngestItems(ctx, b.actor, b.items); err != nil {
			// Not acknowledged: JetStream redelivers, deduplication keeps it exact.
			s.Log.Error("ingest: durable batch", "messages", len(b.msgs), "err", err)
			for _, m := range b.msgs {
				_ = m.NakWithDelay(time.Second)
			}
			continue
		}
		for _, m := range b.msgs {
			if err := m.Ack(); err != nil {
				s.Log.Warn("ingest: ack", "err", err)
			}
		}
	}
}
