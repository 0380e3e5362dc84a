package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// usageCmd groups the usage commands.
type usageCmd struct {
	Send   usageSendCmd   `cmd:"" help:"Send usage records from a JSON Lines file (one UsageRecord per line, proto field names)."`
	Import usageImportCmd `cmd:"" help:"Import a FOCUS 1.2 cost and usage CSV file as usage records."`
}

// usageTransport are the flags shared by usage send and usage import: where
// the batches go.
type usageTransport struct {
	NATSURL string `name:"nats-url" env:"BILLING_NATS_URL" help:"NATS server to publish to. Default: the address billingd advertises (billctl info)." placeholder:"URL"`
	Batch   int    `default:"500" help:"Records per batch request, 1-10000 (default ${default}); a batch is also cut at the transport's payload limit." placeholder:"N"`
	HTTP    bool   `name:"http" help:"Send the batches over HTTP (POST /v1/usage on --server) instead of NATS request-reply."`
}

// usageSendCmd is `billctl usage send -f FILE`.
type usageSendCmd struct {
	File    string `short:"f" required:"" help:"JSON Lines file, one UsageRecord per line with proto field names; - reads stdin. Blank lines and lines starting with # are skipped." placeholder:"FILE"`
	Durable bool   `help:"Publish each record as its own JetStream message on usage.v1.records and count publisher acks: an ack means the record is stored safely, but its outcome (booked, duplicate, dead-lettered) is decided later: see billctl deadletter list and billctl report billable. Default: NATS request-reply on usage.v1.batch, answered per record."`
	usageTransport
}

// Run sends the file and prints the summary. Exit status 1 when any record was
// rejected (or, with --durable, not acknowledged).
func (c *usageSendCmd) Run(a *app) error {
	if c.Durable && c.HTTP {
		return invalid("--durable publishes to JetStream; it cannot be combined with --http")
	}
	if err := c.check(); err != nil {
		return err
	}
	in, size, closeIn, err := a.openInput(c.File)
	if err != nil {
		return err
	}
	defer closeIn()
	next := jsonLinesSource(in)
	if c.Durable {
		return a.sendDurable(c.NATSURL, next, size)
	}
	sender, err := a.batchSender(c.usageTransport)
	if err != nil {
		return err
	}
	defer sender.close()
	prog := a.newProgress("usage send", size)
	st := newSendStats()
	sendErr := a.sendBatches(next, sender, c.Batch, prog, st)
	prog.finish()
	return a.finishSend(st, nil, sendErr)
}

// check validates the transport flags.
func (t *usageTransport) check() error {
	if t.Batch < 1 || t.Batch > api.MaxIngestBatch {
		return invalid("--batch %d: want 1 to %d records per batch", t.Batch, api.MaxIngestBatch)
	}
	return nil
}

// openInput opens path ("-" = stdin) and returns its size in bytes (-1 when
// unknown) for the progress bar.
func (a *app) openInput(path string) (io.Reader, int64, func(), error) {
	if path == "-" {
		if f, ok := a.stdin.(*os.File); ok {
			return f, fileSize(f), func() {}, nil
		}
		return a.stdin, -1, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, err
	}
	return f, fileSize(f), func() { _ = f.Close() }, nil
}

// usageItem is one record to send: a line of a JSON Lines file or a mapped
// FOCUS row.
type usageItem struct {
	// line is the 1-based line of the input where the item starts.
	line int
	// payload is one line of JSON without the newline, sent as it is.
	payload []byte
	// bad tells why the item is malformed ("" = it parses as a UsageRecord).
	// A malformed item is still sent, so that the server dead-letters it
	// durably (U4), and the server's answer for it is MALFORMED.
	bad string
	// end is the input's byte offset after the item, for the progress bar.
	end int64
}

// itemSource yields the items of an input in order; ok is false at the end.
type itemSource func() (item usageItem, ok bool, err error)

// utf8BOM is skipped at the start of an input (editors and spreadsheets write it).
var utf8BOM = []byte("\ufeff")

// jsonLinesSource reads JSON Lines: every non-blank line that does not start
// with # is an item, parsed as a UsageRecord (protojson, proto field names,
// unknown fields are an error) only to find malformed lines early.
func jsonLinesSource(r io.Reader) itemSource {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int
	var off int64
	eof := false
	return func() (usageItem, bool, error) {
		for !eof {
			raw, err := br.ReadBytes('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return usageItem{}, false, fmt.Errorf("read line %d: %w", n+1, err)
			}
			eof = err != nil
			if len(raw) == 0 && eof {
				break
			}
			n++
			off += int64(len(raw))
			if n == 1 {
				raw = bytes.TrimPrefix(raw, utf8BOM)
			}
			line := bytes.TrimSpace(raw)
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			it := usageItem{line: n, payload: line, end: off}
			if perr := protojson.Unmarshal(line, &billingv1.UsageRecord{}); perr != nil {
				it.bad = protoJSONError(perr)
			}
			return it, true, nil
		}
		return usageItem{}, false, nil
	}
}

// Reasons billctl adds to the server's (domain.UsageReasons) for lines the
// server never answered for.
const (
	// reasonTooLarge: the line alone exceeds the transport's payload limit,
	// so it was not sent.
	reasonTooLarge = "TOO_LARGE"
	// reasonNoResult: the server's answer to a batch did not mention the line.
	reasonNoResult = "NO_RESULT"
	// reasonUnknownStatus: the server answered a status billctl does not know.
	reasonUnknownStatus = "UNKNOWN_STATUS"
)

// sendStats counts the outcome of the records sent so far.
type sendStats struct {
	records    int
	accepted   int
	duplicates int
	rejected   int
	byReason   map[string]int
	rejections []rejectionJSON
}

func newSendStats() *sendStats { return &sendStats{byReason: map[string]int{}} }

// rejectionJSON is one rejected line in the -o json summary.
type rejectionJSON struct {
	Line         int    `json:"line"`
	UsageID      string `json:"usage_id,omitempty"`
	Reason       string `json:"reason"`
	Message      string `json:"message"`
	DeadLetterID string `json:"dead_letter_id,omitempty"`
}

// reject counts a rejected line and prints "line N: REASON: message" on stderr.
func (a *app) reject(st *sendStats, prog *progress, r rejectionJSON) {
	st.rejected++
	st.byReason[r.Reason]++
	st.rejections = append(st.rejections, r)
	prog.clear()
	fmt.Fprintf(a.stderr, "line %d: %s: %s\n", r.Line, r.Reason, r.Message)
}

// sendBatches reads items and sends them in batches of at most batchSize
// records and sender.maxPayload() bytes, one request at a time, and tallies
// the answers in st. It returns the first error that stops it (a read error
// after the batch before it was sent, or a batch that got no answer).
func (a *app) sendBatches(next itemSource, sender batchSender, batchSize int, prog *progress, st *sendStats) error {
	var batch []usageItem
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := a.sendBatch(sender, batch, size, prog, st)
		batch, size = batch[:0], 0
		return err
	}
	for {
		it, ok, err := next()
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
		if !ok {
			return flush()
		}
		st.records++
		n := len(it.payload) + 1
		if n > sender.maxPayload() {
			a.reject(st, prog, rejectionJSON{Line: it.line, Reason: reasonTooLarge,
				Message: fmt.Sprintf("the record is %d bytes; %s takes at most %d per message: it was not sent", n, sender.target(), sender.maxPayload())})
			continue
		}
		if len(batch) > 0 && (len(batch) == batchSize || size+n > sender.maxPayload()) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, it)
		size += n
	}
}

// sendBatch sends one batch and tallies its answer. results[].index is the
// 1-based line of the record in the payload.
func (a *app) sendBatch(sender batchSender, batch []usageItem, size int, prog *progress, st *sendStats) error {
	payload := make([]byte, 0, size)
	for _, it := range batch {
		payload = append(payload, it.payload...)
		payload = append(payload, '\n')
	}
	ctx, cancel := context.WithTimeout(a.ctx, requestTimeout)
	res, err := sender.send(ctx, payload)
	cancel()
	if err != nil {
		// Keep the code of a server rejection; say which lines are in doubt.
		context := fmt.Sprintf("lines %d-%d not confirmed (the lines before were; sending the file again is safe: duplicates are detected)",
			batch[0].line, batch[len(batch)-1].line)
		var de *domain.Error
		if errors.As(err, &de) {
			return domain.Reject(de.Code, "%s: %s", context, de.Message)
		}
		return fmt.Errorf("%s: %w", context, err)
	}
	byLine := make([]*billingv1.RecordResult, len(batch))
	positional := len(res.GetResults()) == len(batch)
	for i, r := range res.GetResults() {
		k := int(r.GetIndex()) - 1
		if k < 0 && positional {
			k = i
		}
		if k >= 0 && k < len(batch) && byLine[k] == nil {
			byLine[k] = r
		}
	}
	for k, it := range batch {
		r := byLine[k]
		switch {
		case r == nil:
			a.reject(st, prog, rejectionJSON{Line: it.line, Reason: reasonNoResult,
				Message: "the server's answer did not mention this line; its fate is unknown: send it again"})
		case r.GetStatus() == api.StatusAccepted:
			st.accepted++
		case r.GetStatus() == api.StatusDuplicate:
			st.duplicates++
		case r.GetStatus() == api.StatusRejected:
			reason, msg := r.GetReason(), stripLinePrefix(r.GetMessage())
			if reason == "" {
				reason = "UNKNOWN"
			}
			if it.bad != "" && reason == domain.ReasonMalformed {
				msg = it.bad // billctl's own parse error names the column in the file's line
			}
			a.reject(st, prog, rejectionJSON{Line: it.line, UsageID: r.GetUsageId(), Reason: reason, Message: msg, DeadLetterID: r.GetDeadLetterId()})
		default:
			a.reject(st, prog, rejectionJSON{Line: it.line, UsageID: r.GetUsageId(), Reason: reasonUnknownStatus,
				Message: fmt.Sprintf("the server answered status %q (%s)", r.GetStatus(), r.GetMessage())})
		}
	}
	prog.set(batch[len(batch)-1].end)
	return nil
}

// stripLinePrefix drops the "line K: " a server puts in front of a message:
// K counts lines of the payload, not of the file, and billctl prints its own.
func stripLinePrefix(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 && strings.Trim(rest[:i], "0123456789") == "" {
			return rest[i+2:]
		}
	}
	return msg
}

// sendSummaryJSON is the -o json summary of usage send and usage import.
type sendSummaryJSON struct {
	Rows             *int            `json:"rows,omitempty"`
	Records          int             `json:"records"`
	Accepted         int             `json:"accepted"`
	Duplicates       int             `json:"duplicates"`
	Rejected         int             `json:"rejected"`
	RejectedByReason map[string]int  `json:"rejected_by_reason"`
	Rejections       []rejectionJSON `json:"rejections"`
}

// finishSend prints the summary (also after a failure, for what was
// confirmed) and returns the error that sets the exit status: sendErr, or a
// reported error when anything was rejected.
func (a *app) finishSend(st *sendStats, rows *int, sendErr error) error {
	var err error
	if a.output == "json" {
		rejections := st.rejections
		if rejections == nil {
			rejections = []rejectionJSON{}
		}
		err = writeJSONLine(a.stdout, sendSummaryJSON{Rows: rows, Records: st.records, Accepted: st.accepted,
			Duplicates: st.duplicates, Rejected: st.rejected, RejectedByReason: st.byReason, Rejections: rejections})
	} else {
		prefix := ""
		if rows != nil {
			prefix = fmt.Sprintf("rows %d, ", *rows)
		}
		_, err = fmt.Fprintf(a.stdout, "%saccepted %d, duplicates %d, rejected %d%s\n",
			prefix, st.accepted, st.duplicates, st.rejected, reasonCounts(st.byReason))
	}
	switch {
	case sendErr != nil:
		return sendErr
	case err != nil:
		return err
	case st.rejected > 0:
		return reported{fmt.Errorf("%d records rejected", st.rejected)}
	}
	return nil
}

// reasonCounts renders " (REASON: n, …)" sorted by reason, or "" when empty.
func reasonCounts(byReason map[string]int) string {
	if len(byReason) == 0 {
		return ""
	}
	parts := make([]string, 0, len(byReason))
	for _, r := range slices.Sorted(maps.Keys(byReason)) {
		parts = append(parts, fmt.Sprintf("%s: %d", r, byReason[r]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
