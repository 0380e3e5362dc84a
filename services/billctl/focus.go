package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// usageImportCmd is `billctl usage import --format focus FILE.csv`.
type usageImportCmd struct {
	Format string `required:"" enum:"focus" placeholder:"focus" help:"Input format: focus (FOCUS 1.2 cost and usage CSV, columns found by their header names)."`
	File   string `arg:"" help:"CSV file with a header row; - reads stdin." placeholder:"FILE.csv"`
	usageTransport
}

// Run maps the file's rows to usage records and sends them like usage send
// (NATS request-reply, or --http), then prints rows, accepted, duplicates and
// rejected by reason. Missing required columns fail before anything is sent.
func (c *usageImportCmd) Run(a *app) error {
	if err := c.check(); err != nil {
		return err
	}
	in, size, closeIn, err := a.openInput(c.File)
	if err != nil {
		return err
	}
	defer closeIn()
	rows := 0
	next, err := focusSource(in, &rows)
	if err != nil {
		return invalid("%s: %v", c.File, err)
	}
	sender, err := a.batchSender(c.usageTransport)
	if err != nil {
		return err
	}
	defer sender.close()
	prog := a.newProgress("usage import", size)
	st := newSendStats()
	sendErr := a.sendBatches(next, sender, c.Batch, prog, st)
	prog.finish()
	return a.finishSend(st, &rows, sendErr)
}

// FOCUS 1.2 column names (case-sensitive) read by the import. x_ columns are
// provider extensions.
const (
	colSubAccountID      = "SubAccountId"
	colChargePeriodStart = "ChargePeriodStart"
	colChargePeriodEnd   = "ChargePeriodEnd"
	colServiceName       = "ServiceName"
	colSkuMeter          = "SkuMeter"
	colSkuID             = "SkuId"
	colOperation         = "x_Operation"
	colRegionID          = "RegionId"
	colPricingQuantity   = "PricingQuantity"
	colPricingUnit       = "PricingUnit"
	colListUnitPrice     = "ListUnitPrice"
	colBilledCost        = "BilledCost"
	colBillingCurrency   = "BillingCurrency"
	colChargeCategory    = "ChargeCategory"
	colTags              = "Tags"
	colXUsageID          = "x_UsageId"
	colUsageID           = "UsageId"
	colResourceID        = "ResourceId"
)

// focusRequired are the columns without which no usage record can be built.
var focusRequired = []string{colSubAccountID, colChargePeriodStart, colChargePeriodEnd, colServiceName,
	colPricingQuantity, colBilledCost, colBillingCurrency}

// focusTimeLayouts are the accepted forms of ChargePeriodStart/End: RFC 3339,
// and the zone-less forms FOCUS exports use, read as UTC.
var focusTimeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05", "2006-01-02T15:04:05"}

// focusColumns maps the header of one FOCUS file: column name → index.
type focusColumns struct {
	index  map[string]int
	header []string
}

// newFocusColumns reads the header row, rejecting duplicate names and
// naming every missing required column at once.
func newFocusColumns(header []string) (*focusColumns, error) {
	c := &focusColumns{index: make(map[string]int, len(header)), header: header}
	for i, name := range header {
		name = strings.TrimSpace(name)
		header[i] = name
		if _, dup := c.index[name]; dup && name != "" {
			return nil, fmt.Errorf("column %q appears twice in the header", name)
		}
		c.index[name] = i
	}
	var missing []string
	for _, name := range focusRequired {
		if _, ok := c.index[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing FOCUS columns: %s (required: %s; column names are case-sensitive)",
			strings.Join(missing, ", "), strings.Join(focusRequired, ", "))
	}
	return c, nil
}

// get returns the trimmed cell of column name, "" when the file has no such column.
func (c *focusColumns) get(row []string, name string) string {
	i, ok := c.index[name]
	if !ok || i >= len(row) {
		return ""
	}
	return strings.TrimSpace(row[i])
}

// first returns the first non-empty cell among names.
func (c *focusColumns) first(row []string, names ...string) string {
	for _, n := range names {
		if v := c.get(row, n); v != "" {
			return v
		}
	}
	return ""
}

// mapRow builds the usage record of a row. The usage id is x_UsageId or
// UsageId when the row has one, else derived from the row (derivedUsageID).
func (c *focusColumns) mapRow(row []string) (*billingv1.UsageRecord, error) {
	r := &billingv1.UsageRecord{
		AccountId:      c.get(row, colSubAccountID),
		Service:        c.get(row, colServiceName),
		UsageType:      c.first(row, colSkuMeter, colSkuID),
		Operation:      c.get(row, colOperation),
		Region:         c.get(row, colRegionID),
		Quantity:       c.get(row, colPricingQuantity),
		Unit:           c.get(row, colPricingUnit),
		ListUnitPrice:  c.get(row, colListUnitPrice),
		BilledCost:     c.get(row, colBilledCost),
		Currency:       c.get(row, colBillingCurrency),
		ChargeCategory: c.get(row, colChargeCategory),
	}
	var err error
	if r.ChargePeriodStart, err = parseFocusTime(colChargePeriodStart, c.get(row, colChargePeriodStart)); err != nil {
		return nil, err
	}
	if r.ChargePeriodEnd, err = parseFocusTime(colChargePeriodEnd, c.get(row, colChargePeriodEnd)); err != nil {
		return nil, err
	}
	if r.Tags, err = parseFocusTags(c.get(row, colTags)); err != nil {
		return nil, err
	}
	r.UsageId = c.first(row, colXUsageID, colUsageID)
	if r.UsageId == "" {
		r.UsageId = derivedUsageID(r, c.get(row, colResourceID))
	}
	return r, nil
}

// parseFocusTime parses a charge period bound; an empty cell stays unset (the
// server then dead-letters the record as MISSING_FIELD).
func parseFocusTime(col, v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	for _, layout := range focusTimeLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return timestamppb.New(t.UTC()), nil
		}
	}
	return nil, fmt.Errorf("%s %q is not a date-time (want RFC 3339, e.g. 2026-09-03T00:00:00Z, or 2026-09-03 00:00:00)", col, v)
}

// parseFocusTags reads the Tags column: a JSON object. String values are kept
// as they are, null becomes "", other values keep their JSON text.
func parseFocusTags(v string) (map[string]string, error) {
	if v == "" || v == "null" || v == "{}" {
		return nil, nil
	}
	d := json.NewDecoder(strings.NewReader(v))
	d.UseNumber()
	var obj map[string]json.RawMessage
	if err := d.Decode(&obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%s %q is not a JSON object", colTags, v)
	}
	if d.More() {
		return nil, fmt.Errorf("%s %q holds more than one JSON value", colTags, v)
	}
	tags := make(map[string]string, len(obj))
	for k, raw := range obj {
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
		case string(raw) == "null":
			s = ""
		default:
			s = string(raw)
		}
		tags[k] = s
	}
	return tags, nil
}

// derivedUsageID is the usage id of a row that carries none: "focus-" and the
// first 32 hex digits of the SHA-256 of a canonical text of the mapped record
// plus the row's ResourceId when it has one. The same row gives the same id
// whenever it is imported, so importing a file twice changes nothing; the
// resource id keeps apart two resources whose usage is otherwise identical
// (two equal instances in the same hour), which would else count once.
//
// The canonical text is one line per field, `name=value\n` with the value
// quoted by strconv.Quote, in this order: account_id, charge_period_start,
// charge_period_end (RFC 3339 in UTC, "" when unset), service, usage_type,
// operation, region, quantity, unit, list_unit_price, billed_cost, currency,
// free_tier (true/false), charge_category, then `tag "KEY"` per tag sorted by
// key, then resource_id when not empty. It is stable contract: a change would
// make re-imports of old files count twice (a golden test guards it).
func derivedUsageID(r *billingv1.UsageRecord, resourceID string) string {
	var b strings.Builder
	field := func(name, value string) {
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(value))
		b.WriteByte('\n')
	}
	ts := func(t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		return t.AsTime().UTC().Format(time.RFC3339Nano)
	}
	field("account_id", r.GetAccountId())
	field("charge_period_start", ts(r.GetChargePeriodStart()))
	field("charge_period_end", ts(r.GetChargePeriodEnd()))
	field("service", r.GetService())
	field("usage_type", r.GetUsageType())
	field("operation", r.GetOperation())
	field("region", r.GetRegion())
	field("quantity", r.GetQuantity())
	field("unit", r.GetUnit())
	field("list_unit_price", r.GetListUnitPrice())
	field("billed_cost", r.GetBilledCost())
	field("currency", r.GetCurrency())
	field("free_tier", strconv.FormatBool(r.GetFreeTier()))
	field("charge_category", r.GetChargeCategory())
	for _, k := range slices.Sorted(maps.Keys(r.GetTags())) {
		field("tag "+strconv.Quote(k), r.GetTags()[k])
	}
	if resourceID != "" {
		field("resource_id", resourceID)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return "focus-" + hex.EncodeToString(sum[:])[:32]
}

// focusSource reads the header of a FOCUS CSV (failing when required columns
// are missing) and returns the source of its rows, each mapped to a usage
// record in JSON. A row that cannot be mapped (a bad date, Tags that are not
// JSON, a wrong number of cells) becomes a malformed item whose payload is
// {"focus_line":N,"error":…,"row":{column: cell}}: the server answers it
// MALFORMED and dead-letters it with the row, so it is not lost. rows counts
// the data rows read.
func focusSource(r io.Reader, rows *int) (itemSource, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM)) // before the csv reader, which takes it for a cell's first character
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = 0 // every row has as many cells as the header
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty: want a header row with FOCUS column names")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	cols, err := newFocusColumns(header)
	if err != nil {
		return nil, err
	}
	marshal := protojson.MarshalOptions{UseProtoNames: true}
	return func() (usageItem, bool, error) {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return usageItem{}, false, nil
		}
		line, _ := cr.FieldPos(0)
		var pe *csv.ParseError
		if err != nil && !(errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount)) {
			return usageItem{}, false, err // csv errors name the line
		}
		*rows++
		it := usageItem{line: line, end: cr.InputOffset()}
		var rec *billingv1.UsageRecord
		if err != nil {
			err = fmt.Errorf("the row has %d cells, the header %d", len(row), len(cols.header))
		} else {
			rec, err = cols.mapRow(row)
		}
		if err == nil {
			it.payload, err = marshal.Marshal(rec)
		}
		if err != nil {
			it.bad = err.Error()
			it.payload = malformedRow(line, it.bad, cols.header, row)
		}
		return it, true, nil
	}, nil
}

// malformedRow is the payload of a row that could not be mapped.
func malformedRow(line int, reason string, header, row []string) []byte {
	cells := make(map[string]string, len(row))
	for i, v := range row {
		name := fmt.Sprintf("column %d", i+1)
		if i < len(header) && header[i] != "" {
			name = header[i]
		}
		cells[name] = v
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Line  int               `json:"focus_line"`
		Error string            `json:"error"`
		Row   map[string]string `json:"row"`
	}{line, reason, cells})
	return bytes.TrimSpace(b.Bytes())
}
