package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// applyCmd is `billctl apply -f FILE`.
type applyCmd struct {
	File string `short:"f" required:"" help:"JSON Lines file, one {\"command\":\"Name\", ...fields} per line (proto field names); - reads stdin. Blank lines and lines starting with # are skipped." placeholder:"FILE"`
}

// Run sends the file's commands in order. It stops at the first line that is
// malformed or rejected, printing "line N: Command: CODE: message" on stderr;
// the lines before it stay applied.
func (c *applyCmd) Run(a *app) error {
	in := a.stdin
	if c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	client := a.commandClient()
	r := bufio.NewReader(in)
	for n := 1; ; n++ {
		line, readErr := r.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return fmt.Errorf("read %s: %w", c.File, readErr)
		}
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\ufeff")) // a BOM from an editor
		}
		if err := a.applyLine(client, n, line); err != nil {
			return err
		}
		if readErr != nil { // io.EOF
			return nil
		}
	}
}

// applyLine parses and sends line n. It prints the outcome and returns a
// reported error when the line failed.
func (a *app) applyLine(client billingv1connect.CommandServiceClient, n int, line []byte) error {
	req, name, err := parseCommandLine(line)
	if err == nil && req == nil {
		return nil // blank or comment
	}
	if err == nil {
		ctx, cancel := a.callCtx()
		var res *connect.Response[billingv1.ExecuteResponse]
		res, err = client.Execute(ctx, connect.NewRequest(req))
		cancel()
		if err == nil {
			return a.printApplied(n, name, req, res.Msg.GetResult())
		}
	}
	code, msg := a.describe(err)
	prefix := fmt.Sprintf("line %d: ", n)
	if name != "" {
		prefix += name + ": "
	}
	fmt.Fprintf(a.stderr, "%s%s: %s\n", prefix, code, msg)
	if a.output == "json" {
		_ = writeJSONLine(a.stdout, applyLineJSON{Line: n, Command: name, OK: false, Code: code, Message: msg})
	}
	return reported{err}
}

// applyLineJSON is one line of `apply -o json` output.
type applyLineJSON struct {
	Line    int             `json:"line"`
	Command string          `json:"command,omitempty"`
	OK      bool            `json:"ok"`
	Result  json.RawMessage `json:"result,omitempty"`
	Code    string          `json:"code,omitempty"`
	Message string          `json:"message,omitempty"`
}

// printApplied prints a successful line: "line 3: InviteBillSource ok
// transfer_id=rt-… events=3" or one JSON object.
func (a *app) printApplied(n int, name string, req *billingv1.ExecuteRequest, res *billingv1.CommandResult) error {
	if a.output == "json" {
		raw, err := protoJSON(res)
		if err != nil {
			return err
		}
		return writeJSONLine(a.stdout, applyLineJSON{Line: n, Command: name, OK: true, Result: raw})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "line %d: %s ok", n, name)
	if id := res.GetAggregateId(); id != "" {
		fmt.Fprintf(&b, " %s=%s", idKey(req), id)
	}
	created := make([]string, 0, len(res.GetCreated()))
	for k := range res.GetCreated() {
		created = append(created, k)
	}
	sort.Strings(created)
	for _, k := range created {
		fmt.Fprintf(&b, " %s=%s", k, res.GetCreated()[k])
	}
	fmt.Fprintf(&b, " events=%d", len(res.GetEventIds()))
	if res.GetReplayed() {
		b.WriteString(" replayed=true")
	}
	_, err := fmt.Fprintln(a.stdout, b.String())
	return err
}

// idKey names the aggregate id of a command's result: "transfer_id" for
// transfer commands (so a generated id reads like the field it fills),
// "management_account_id" for organization commands, else "id".
func idKey(req *billingv1.ExecuteRequest) string {
	m := req.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("command"))
	if fd == nil {
		return "id"
	}
	fields := fd.Message().Fields()
	for _, k := range []protoreflect.Name{"transfer_id", "management_account_id"} {
		if fields.ByName(k) != nil {
			return string(k)
		}
	}
	return "id"
}

// commandFields maps a command message name ("InviteBillSource") to its field
// in the ExecuteRequest.command oneof. Built from the descriptor, so a command
// added to the proto is accepted without code here.
var commandFields = func() map[string]protoreflect.FieldDescriptor {
	oneof := (&billingv1.ExecuteRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("command")
	m := make(map[string]protoreflect.FieldDescriptor, oneof.Fields().Len())
	for i := range oneof.Fields().Len() {
		fd := oneof.Fields().Get(i)
		m[string(fd.Message().Name())] = fd
	}
	return m
}()

// commandNames lists the known commands, sorted, for error messages.
func commandNames() []string {
	names := make([]string, 0, len(commandFields))
	for n := range commandFields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// parseCommandLine maps one JSON Lines line to an ExecuteRequest. It returns
// (nil, "", nil) for a blank or comment line. The command name is returned
// whenever the line names one, even when the line is otherwise invalid. Every
// error is an INVALID_ARGUMENT *domain.Error.
func parseCommandLine(line []byte) (*billingv1.ExecuteRequest, string, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] == '#' {
		return nil, "", nil
	}
	if !json.Valid(line) {
		var probe any
		err := json.Unmarshal(line, &probe)
		return nil, "", invalid("malformed JSON: %v", err)
	}
	if line[0] != '{' {
		return nil, "", invalid("want a JSON object per line, like {\"command\":\"InviteBillSource\", ...}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, "", invalid("malformed JSON: %v", err)
	}
	rawName, ok := obj["command"]
	if !ok {
		return nil, "", invalid("missing \"command\" (one of %s)", strings.Join(commandNames(), ", "))
	}
	var name string
	if err := json.Unmarshal(rawName, &name); err != nil || name == "" {
		return nil, "", invalid("\"command\" must be a command name (one of %s)", strings.Join(commandNames(), ", "))
	}
	fd, ok := commandFields[name]
	if !ok {
		return nil, name, invalid("unknown command %q (one of %s)", name, strings.Join(commandNames(), ", "))
	}
	delete(obj, "command")

	md := fd.Message()
	for key := range obj {
		if md.Fields().ByName(protoreflect.Name(key)) == nil && md.Fields().ByJSONName(key) == nil {
			return nil, name, invalid("unknown field %q (fields: %s)", key, strings.Join(fieldNames(md), ", "))
		}
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, name, invalid("%v", err)
	}
	req := &billingv1.ExecuteRequest{}
	cmd := req.ProtoReflect().NewField(fd).Message()
	if err := protojson.Unmarshal(body, cmd.Interface()); err != nil {
		return nil, name, invalid("%s", cleanProtoError(err))
	}
	req.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(cmd))
	return req, name, nil
}

// fieldNames lists a message's proto field names in declaration order.
func fieldNames(md protoreflect.MessageDescriptor) []string {
	names := make([]string, md.Fields().Len())
	for i := range md.Fields().Len() {
		names[i] = string(md.Fields().Get(i).Name())
	}
	return names
}

func invalid(format string, args ...any) error {
	return domain.Reject(domain.CodeInvalidArgument, format, args...)
}

// protoErrorPrefix matches protojson's "proto: (line 1:17): " prefix; the
// position refers to the re-encoded object, not the user's line, so it goes.
var protoErrorPrefix = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):\s*)?`)

// cleanProtoError makes a protojson error readable: no prefix and plain spaces
// (protobuf-go randomly uses non-breaking spaces in error text).
func cleanProtoError(err error) string {
	s := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	return protoErrorPrefix.ReplaceAllString(s, "")
}
