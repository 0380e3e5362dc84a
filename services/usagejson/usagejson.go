// Package usagejson holds what every usage path (NATS, HTTP, billctl) shares
// about the JSON form of a usage record, so a malformed line is explained in the
// same words whichever way it arrived.
package usagejson

import (
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Parse reads one JSON usage record (proto field names, or JSON names); unknown
// fields are an error. The error, when any, is already phrased by DescribeError.
func Parse(line []byte) (*billingv1.UsageRecord, error) {
	rec := &billingv1.UsageRecord{}
	if err := protojson.Unmarshal(line, rec); err != nil {
		return nil, describedError(DescribeError(err))
	}
	return rec, nil
}

type describedError string

func (e describedError) Error() string { return string(e) }

// protoErrorPosition matches protojson's "proto: [syntax error ](line L:C): "
// prefix; every payload here is one line, so only the column is kept.
var protoErrorPosition = regexp.MustCompile(`^proto:\s*(syntax error)?\s*\(line \d+:(\d+)\):\s*`)

// DescribeError renders a protojson parse error of a one-line payload for a
// person: `column 17: unknown field "bogus"` or "syntax error at column 2:
// invalid value not". protobuf-go deliberately varies the spaces of its error
// text (non-breaking or not); they are normalized here.
func DescribeError(err error) string {
	s := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	if strings.HasSuffix(s, "unexpected EOF") {
		return "incomplete JSON: the line ends before the object does"
	}
	m := protoErrorPosition.FindStringSubmatch(s)
	if m == nil {
		return strings.TrimPrefix(s, "proto: ")
	}
	rest := s[len(m[0]):]
	if m[1] != "" {
		return "syntax error at column " + m[2] + ": " + rest
	}
	return "column " + m[2] + ": " + rest
}
