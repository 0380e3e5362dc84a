package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/ingest"
)

// Scratch stream of the raw baselines.
const (
	rawStream       = "BENCH_RAW"
	rawSubject      = "bench.raw"
	rawBatchSubject = "bench.raw500"
)

// publishResult is one async-publish run.
type publishResult struct {
	msgs    int
	bytes   int
	elapsed time.Duration // first publish to last ack
	errors  int64
}

// ingestToken is the token the ingestion paths are authenticated with (an
// admin token of the billingd under test): requests on the batch subject
// carry it as a bearer token, messages on the durable subject its signature
// of their payload (services/ingest). Set before the first publish.
var ingestToken string

// publishAsync publishes every payload to subject with at most window
// unacknowledged, and returns when every ack has arrived. Payloads for the
// durable ingestion subject are signed with ingestToken, as a real publisher
// must; the raw baselines are not.
func publishAsync(ctx context.Context, nc *nats.Conn, subject string, payloads [][]byte, window int) (publishResult, error) {
	var failed atomic.Int64
	var firstErr atomic.Value
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncTimeout(2*time.Minute),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}))
	if err != nil {
		return publishResult{}, err
	}
	res := publishResult{msgs: len(payloads)}
	start := time.Now()
	for _, p := range payloads {
		res.bytes += len(p)
		for {
			msg := nats.NewMsg(subject)
			msg.Data = p
			if subject == ingest.DurableSubject {
				msg.Header.Set(ingest.AuthorizationHeader, auth.SignPayload(ingestToken, p))
			}
			_, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute))
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return res, fmt.Errorf("publish to %s: %w", subject, err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(5 * time.Minute):
		return res, fmt.Errorf("publish to %s: acks missing after 5 minutes (%d pending)", subject, js.PublishAsyncPending())
	}
	res.elapsed = time.Since(start)
	res.errors = failed.Load()
	if res.errors > 0 {
		return res, fmt.Errorf("publish to %s: %d publishes failed, first: %v", subject, res.errors, firstErr.Load())
	}
	return res, nil
}

// publishAsyncFor repeats publishAsync of payloads until at least minDur has
// passed (at most maxRounds rounds), so that a baseline of few, large messages
// is not measured over a few milliseconds.
func publishAsyncFor(ctx context.Context, nc *nats.Conn, subject string, payloads [][]byte, window int, minDur time.Duration, maxRounds int) (publishResult, error) {
	var total publishResult
	for round := 0; round < maxRounds && total.elapsed < minDur; round++ {
		r, err := publishAsync(ctx, nc, subject, payloads, window)
		total.msgs += r.msgs
		total.bytes += r.bytes
		total.elapsed += r.elapsed
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// createRawStream creates the scratch stream with the event store's storage
// settings (file storage, limits retention, no per-message processing).
func createRawStream(ctx context.Context, nc *nats.Conn) (func(), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      rawStream,
		Subjects:  []string{rawSubject, rawBatchSubject},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", rawStream, err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := js.DeleteStream(dctx, rawStream); err != nil {
			logf("delete %s: %v", rawStream, err)
		}
	}, nil
}

// counts is what the ingest replies said.
type counts struct {
	accepted, duplicates, rejected atomic.Int64
}

// batchReply is the part of an IngestBatchResponse (protojson) the benchmark reads.
type batchReply struct {
	Error      string `json:"error"`
	Accepted   int64  `json:"accepted"`
	Duplicates int64  `json:"duplicates"`
	Rejected   int64  `json:"rejected"`
	Results    []struct {
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"results"`
}

// sendBatches sends every payload as a request on the batch subject, with
// requesters requests in flight, and returns when every reply has arrived.
func sendBatches(ctx context.Context, nc *nats.Conn, payloads [][]byte, requesters int) (*counts, error) {
	var c counts
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, requesters)
	for range requesters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(payloads) || ctx.Err() != nil {
					return
				}
				req := nats.NewMsg(ingest.BatchSubject)
				req.Data = payloads[i]
				req.Header.Set(ingest.AuthorizationHeader, "Bearer "+ingestToken)
				msg, err := nc.RequestMsg(req, 2*time.Minute)
				if err != nil {
					errc <- fmt.Errorf("request %d on %s: %w", i, ingest.BatchSubject, err)
					return
				}
				var r batchReply
				if err := json.Unmarshal(msg.Data, &r); err != nil {
					errc <- fmt.Errorf("reply %d: %w: %.200s", i, err, msg.Data)
					return
				}
				if r.Error != "" {
					errc <- fmt.Errorf("reply %d: %s", i, r.Error)
					return
				}
				if r.Rejected > 0 {
					for _, x := range r.Results {
						if x.Status == "REJECTED" {
							errc <- fmt.Errorf("reply %d: %d records rejected, e.g. %s: %s", i, r.Rejected, x.Reason, x.Message)
							return
						}
					}
				}
				c.accepted.Add(r.Accepted)
				c.duplicates.Add(r.Duplicates)
				c.rejected.Add(r.Rejected)
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return &c, err
	}
	return &c, nil
}

// recordCounter waits until the billable read model has applied every event
// appended so far, then reports how many records of month it holds and their
// billed_cost total. It is called once per completed ingest (plus a slow poll
// if the count is short), so the measurement does not load the server.
type recordCounter func(ctx context.Context, month string) (uint64, string, error)

// waitRecords returns once the read model holds want records of month, with
// the billed_cost total it reports.
func waitRecords(ctx context.Context, count recordCounter, month string, want uint64, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, cost, err := count(ctx, month)
		if err != nil {
			return "", fmt.Errorf("read model of %s: %w", month, err)
		}
		if n == want {
			return cost, nil
		}
		if n > want {
			return cost, fmt.Errorf("read model of %s holds %d records, more than the %d sent", month, n, want)
		}
		if time.Now().After(deadline) {
			return cost, fmt.Errorf("read model of %s holds %d of %d records after %s", month, n, want, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// waitDrained polls (cheaply: a JetStream stream info every 2 ms) until the
// work-queue stream USAGE_INGEST is empty: billingd acknowledges a durable
// message, which removes it, only after the ledger appended its record.
func waitDrained(ctx context.Context, nc *nats.Conn, timeout time.Duration) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, ingest.DurableStream)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still holds %d messages after %s", ingest.DurableStream, info.State.Msgs, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// checkCost compares the read model's billed_cost total with the exact sum sent.
func checkCost(month, got string, wantMicros int64) error {
	g, err := domain.ParseDecimal(got)
	if err != nil {
		return fmt.Errorf("read model of %s: billed_cost total %q: %w", month, got, err)
	}
	w, err := domain.ParseDecimal(microsString(wantMicros))
	if err != nil {
		return err
	}
	if g.Cmp(w) != 0 {
		return fmt.Errorf("read model of %s: billed_cost total %s, sent %s", month, got, microsString(wantMicros))
	}
	return nil
}

// e2eResult is one end-to-end ingest run.
type e2eResult struct {
	acked   time.Duration // first send to last reply / ack
	total   time.Duration // first send to every record in the read model
	records int
}

// ingestBatchE2E runs the batch path end to end.
func ingestBatchE2E(ctx context.Context, nc *nats.Conn, w *workload, requesters int, count recordCounter, before uint64) (e2eResult, error) {
	start := time.Now()
	c, err := sendBatches(ctx, nc, w.batches, requesters)
	if err != nil {
		return e2eResult{}, err
	}
	acked := time.Since(start)
	if got := int(c.accepted.Load()); got != len(w.lines) {
		return e2eResult{}, fmt.Errorf("batch path: %d accepted, %d duplicates, %d rejected of %d", got, c.duplicates.Load(), c.rejected.Load(), len(w.lines))
	}
	cost, err := waitRecords(ctx, count, w.month, before+uint64(len(w.lines)), 10*time.Minute)
	if err != nil {
		return e2eResult{}, err
	}
	total := time.Since(start)
	if before == 0 {
		if err := checkCost(w.month, cost, w.micros); err != nil {
			return e2eResult{}, err
		}
	}
	return e2eResult{acked: acked, total: total, records: len(w.lines)}, nil
}

// ingestDurableE2E runs the durable path end to end.
func ingestDurableE2E(ctx context.Context, nc *nats.Conn, w *workload, window int, count recordCounter) (e2eResult, error) {
	start := time.Now()
	if _, err := publishAsync(ctx, nc, ingest.DurableSubject, w.lines, window); err != nil {
		return e2eResult{}, err
	}
	acked := time.Since(start)
	if err := waitDrained(ctx, nc, 10*time.Minute); err != nil {
		return e2eResult{}, err
	}
	cost, err := waitRecords(ctx, count, w.month, uint64(len(w.lines)), 10*time.Minute)
	if err != nil {
		return e2eResult{}, err
	}
	total := time.Since(start)
	if err := checkCost(w.month, cost, w.micros); err != nil {
		return e2eResult{}, err
	}
	return e2eResult{acked: acked, total: total, records: len(w.lines)}, nil
}
