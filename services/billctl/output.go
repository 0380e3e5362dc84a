package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"text/tabwriter"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// writeTable prints rows as aligned columns; empty cells print as "-".
func writeTable(w io.Writer, rows [][]string) error {
	return writeTableWithFooter(w, rows, nil)
}

// writeTableWithFooter is writeTable with a last line (e.g. a TOTAL) aligned
// with the rows, whose empty cells stay blank. Tabs and line breaks inside a
// cell become spaces so that they cannot break the alignment.
func writeTableWithFooter(w io.Writer, rows [][]string, footer []string) error {
	if footer == nil {
		return writeTableWithFooters(w, rows, nil)
	}
	return writeTableWithFooters(w, rows, [][]string{footer})
}

// writeTableWithFooters is writeTableWithFooter with several last lines (a
// TOTAL per currency).
func writeTableWithFooters(w io.Writer, rows [][]string, footers [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(row []string, dash bool) error {
		cells := make([]string, len(row))
		for i, c := range row {
			c = cellSpace.Replace(c)
			if c == "" && dash {
				c = "-"
			}
			cells[i] = c
		}
		_, err := fmt.Fprintln(tw, strings.TrimRight(strings.Join(cells, "\t"), "\t"))
		return err
	}
	for _, row := range rows {
		if err := line(row, true); err != nil {
			return err
		}
	}
	for _, footer := range footers {
		if err := line(footer, false); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// cellSpace flattens the characters that would break a table's alignment.
var cellSpace = strings.NewReplacer("\t", " ", "\r\n", " ", "\n", " ", "\r", " ")

// protoJSON encodes m with proto field names and every field present, in a
// stable compact form (protojson's own spacing is deliberately unstable).
func protoJSON(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// writeProtoJSON prints m as indented JSON with proto field names.
func writeProtoJSON(w io.Writer, m proto.Message) error {
	raw, err := protoJSON(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// writeJSONLine prints v as one compact JSON line.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// describe turns an error into the "CODE" and "message" billctl prints: the
// server's ErrorInfo when present, a friendly text when the server cannot be
// reached, the Connect code otherwise.
func (a *app) describe(err error) (code, msg string) {
	var de *domain.Error
	if errors.As(err, &de) {
		return string(de.Code), de.Message
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return "ERROR", err.Error()
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "UNAVAILABLE", fmt.Sprintf("cannot reach billingd at %s: connection refused (is it running? start it with `make run`, or point --server / BILLING_SERVER at it)", a.server)
	}
	code, msg = strings.ToUpper(ce.Code().String()), ce.Message()
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*billingv1.ErrorInfo); ok {
				code, msg = info.GetCode(), info.GetMessage()
				break
			}
		}
	}
	switch {
	case ce.Code() == connect.CodeUnavailable && code == "UNAVAILABLE" && len(ce.Details()) == 0:
		msg = fmt.Sprintf("cannot reach billingd at %s: %s", a.server, msg)
	case ce.Code() == connect.CodeUnauthenticated && a.token == "":
		msg += fmt.Sprintf(" (billctl sent no token: pass --token, set BILLING_TOKEN, or run from the directory holding %s)", defaultTokenFile)
	}
	return code, msg
}
