package eventstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protodelim"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Export of sealed months (issue #6): the events of every stream a month's
// seals name, from version 1 up to the sealed head, and the seal streams
// themselves, written as length-delimited protobuf Events (protodelim), streams
// in name order, each in version order. VerifyExport checks such a file with
// nothing but the file: the hash chains, the seals' heads, roots and signatures.

// ExportSummary describes an export.
type ExportSummary struct {
	// Month exported.
	Month string `json:"month"`
	// Seals exported (one per payer that closed the month).
	Seals []SealSummary `json:"seals"`
	// Streams and Events written.
	Streams int    `json:"streams"`
	Events  uint64 `json:"events"`
}

// SealSummary is one seal as an auditor reads it.
type SealSummary struct {
	// Payer and Month of the seal.
	Payer string `json:"payer_account_id"`
	Month string `json:"month"`
	// KeyID of the signing key and the Root, hex.
	KeyID string `json:"key_id"`
	Root  string `json:"root"`
	// Streams the seal names.
	Streams int `json:"streams"`
}

func summarize(s *billingv1.MonthSealed) SealSummary {
	return SealSummary{Payer: s.GetPayerAccountId(), Month: s.GetMonth(), KeyID: s.GetKeyId(), Root: fmt.Sprintf("%x", s.GetRoot()), Streams: len(s.GetStreams())}
}

// errEnough ends a bounded stream read.
var errEnough = errors.New("enough")

// ExportMonth writes the sealed events of month (of one payer, or of every
// payer when payer is "") to w. A month without a seal is an error naming it.
func ExportMonth(ctx context.Context, store Store, month, payer string, w io.Writer) (*ExportSummary, error) {
	filter := "billing.seal.*." + month
	if payer != "" {
		filter = "billing.seal." + payer + "." + month
	}
	if err := ValidateFilter(filter); err != nil {
		return nil, err
	}
	need := map[string]uint64{}
	sum := &ExportSummary{Month: month}
	err := store.ReadAll(ctx, 0, filter, func(r Record) error {
		s := r.Event.GetMonthSealed()
		if s == nil {
			return nil
		}
		need[r.Event.GetStream()] = max(need[r.Event.GetStream()], r.Event.GetStreamVersion())
		for _, h := range s.GetStreams() {
			need[h.GetStream()] = max(need[h.GetStream()], h.GetVersion())
		}
		sum.Seals = append(sum.Seals, summarize(s))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(sum.Seals) == 0 {
		who := "any payer"
		if payer != "" {
			who = "payer " + payer
		}
		return nil, fmt.Errorf("no sealed close of %s by %s: close the month first (billctl close) and let billingd seal it", month, who)
	}
	bw := bufio.NewWriter(w)
	streams := slices.Sorted(func(yield func(string) bool) {
		for s := range need {
			if !yield(s) {
				return
			}
		}
	})
	for _, stream := range streams {
		var n uint64
		err := store.ReadAll(ctx, 0, stream, func(r Record) error {
			if _, err := protodelim.MarshalTo(bw, r.Event); err != nil {
				return err
			}
			if n++; n == need[stream] {
				return errEnough
			}
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			return nil, fmt.Errorf("export %s: %w", stream, err)
		}
		if n != need[stream] {
			return nil, fmt.Errorf("export %s: the store has %d events, the seal names version %d", stream, n, need[stream])
		}
		sum.Events += n
	}
	sum.Streams = len(streams)
	return sum, bw.Flush()
}

// VerifyExport reads an export and verifies it offline: every stream's hash
// chain from version 1, then every seal in it against those chains. It returns
// the summary, or the first failure (*ChainError, *SealError or a decoding error
// naming the event's place in the file).
func VerifyExport(r io.Reader) (*ExportSummary, error) {
	br := bufio.NewReader(r)
	streams := map[string][]Record{}
	var order []string
	sum := &ExportSummary{}
	for i := 0; ; i++ {
		ev := &billingv1.Event{}
		if err := (protodelim.UnmarshalOptions{MaxSize: 64 << 20}).UnmarshalFrom(br, ev); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("event %d of the export cannot be read: %w", i+1, err)
		}
		s := ev.GetStream()
		if _, ok := streams[s]; !ok {
			order = append(order, s)
		}
		streams[s] = append(streams[s], Record{Event: ev})
		sum.Events++
	}
	var seals []*billingv1.MonthSealed
	for _, s := range order {
		if err := VerifyChain(s, streams[s]); err != nil {
			return nil, err
		}
		if strings.HasPrefix(s, "billing.seal.") {
			for _, r := range streams[s] {
				if ms := r.Event.GetMonthSealed(); ms != nil {
					seals = append(seals, ms)
				}
			}
		}
	}
	if len(seals) == 0 {
		return nil, errors.New("the export holds no seal")
	}
	for _, s := range seals {
		if err := VerifySeal(s, streams); err != nil {
			return nil, err
		}
		sum.Seals = append(sum.Seals, summarize(s))
		sum.Month = s.GetMonth()
	}
	sum.Streams = len(order)
	return sum, nil
}
