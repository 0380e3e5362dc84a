// Package esdbfake is a hand-written, in-memory stand-in for a KurrentDB
// node's gRPC services, for tests of the eventstore/esdb adapter and of
// billingd on it where no KurrentDB server can run. See Server.
package esdbfake

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	features "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/serverfeatures"
	shared "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/shared"
	api "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/streams"
	v2errors "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v2/streams/errors"
	v2 "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v2/streams/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Server is a hand-written, in-memory stand-in for a KurrentDB node's
// gRPC services: the v1 Streams service (appends with expected revisions and
// the idempotent retry of the same event ids, stream reads both ways, $all
// reads both ways, catch-up subscriptions to $all with a stream-name filter,
// checkpoints and the caught-up message), the v2 StreamsService's atomic
// multi-stream AppendSession (KurrentDB 25.1+; every expected revision is
// checked before anything is written, a failure answers the first
// conflicting stream in request order with StreamRevisionConflictErrorDetails),
// and ServerFeatures, which announces AppendSession unless the fake plays
// an older server (Start's old). It lets the adapter's own code run through
// the real client without a server; it models KurrentDB as the esdb package
// comment describes it (positions commit = prepare, gaps between them, the
// server's own "$" events in $all), so it checks the adapter against that
// model, not against KurrentDB itself: esdb's TestConformance does that, when
// EVENTSTORE_URL is set.
//
// To exercise the adapter's defences it answers reads of $all from a
// position inclusively in both directions (the adapter must drop the
// repeated event) and drops every subscription after SetDrop's number of
// events when that is set (the adapter must subscribe again).
type Server struct {
	api.UnimplementedStreamsServer

	// oldServer makes the fake an EventStoreDB without multi-stream appends:
	// ServerFeatures does not announce AppendSession.
	oldServer bool
	url       string
	stop      func()

	mu      sync.Mutex
	log     []fakeEvent           // $all, in position order
	streams map[string][]int      // stream → indexes in log
	changed chan struct{}         // closed and replaced by every append
	next    uint64                // next position
	appends int                   // appends so far
	drop    int                   // drop subscriptions after this many events (0 = never)
	subs    map[string]int        // subscriptions opened per filter text
	byID    map[string]fakeResult // result of each append by its first event id
}

type fakeEvent struct {
	id       *shared.UUID
	stream   string
	revision uint64
	position uint64
	meta     map[string]string
	custom   []byte
	data     []byte
}

type fakeResult struct {
	stream string
	last   uint64 // revision of the append's last event
	pos    uint64
}

// Start serves a fake on a loopback port until Close; with old, the fake is
// an older server without multi-stream appends.
func Start(old bool) (*Server, error) {
	f := &Server{oldServer: old, streams: map[string][]int{}, changed: make(chan struct{}), next: 1000,
		subs: map[string]int{}, byID: map[string]fakeResult{}}
	f.system("$epoch-information") // a fresh log starts with the server's own records
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer()
	api.RegisterStreamsServer(g, f)
	features.RegisterServerFeaturesServer(g, fakeFeatures{f: f})
	v2.RegisterStreamsServiceServer(g, fakeV2{f: f})
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(l) }()
	f.url = fmt.Sprintf("kurrentdb://%s?tls=false", l.Addr())
	f.stop = func() { g.Stop(); <-done }
	return f, nil
}

// URL is the fake's connection string.
func (f *Server) URL() string { return f.url }

// Close stops serving.
func (f *Server) Close() { f.stop() }

// system appends an event of the server's own to $all. f.mu must be held or
// the server not yet serving.
func (f *Server) system(stream string) {
	f.addLocked(stream, &shared.UUID{Value: &shared.UUID_String_{String_: fmt.Sprintf("sys-%d", f.next)}}, nil, nil, []byte("{}"))
}

// addLocked writes one event at the end of $all and of its stream.
func (f *Server) addLocked(stream string, id *shared.UUID, meta map[string]string, custom, data []byte) fakeEvent {
	if meta == nil {
		meta = map[string]string{"type": "$system", "content-type": "application/json"}
	}
	m := map[string]string{"created": strconv.FormatInt(time.Now().UnixNano()/100, 10)}
	for k, v := range meta {
		m[k] = v
	}
	ev := fakeEvent{id: id, stream: stream, revision: uint64(len(f.streams[stream])), position: f.next, meta: m, custom: custom, data: data}
	f.next += 64 + uint64(len(data)) // positions are byte offsets: gaps between events
	f.streams[stream] = append(f.streams[stream], len(f.log))
	f.log = append(f.log, ev)
	return ev
}

func uuidKey(u *shared.UUID) string {
	if s := u.GetStructured(); s != nil {
		return fmt.Sprintf("%x-%x", s.GetMostSignificantBits(), s.GetLeastSignificantBits())
	}
	return u.GetString_()
}

// Append implements the Streams service's append.
func (f *Server) Append(srv api.Streams_AppendServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "append without options")
	}
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	var msgs []*api.AppendReq_ProposedMessage
	for {
		req, err := srv.Recv()
		if err != nil {
			break // io.EOF: the client closed its side
		}
		msgs = append(msgs, req.GetProposedMessage())
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	current := len(f.streams[stream]) // number of events
	ok := false
	switch r := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_NoStream:
		ok = current == 0
	case *api.AppendReq_Options_Revision:
		ok = current > 0 && uint64(current-1) == r.Revision
	case *api.AppendReq_Options_Any:
		ok = true
	case *api.AppendReq_Options_StreamExists:
		ok = current > 0
	}
	if !ok {
		// The idempotent retry: the same events, already written, succeed again.
		if len(msgs) > 0 {
			if res, seen := f.byID[uuidKey(msgs[0].GetId())]; seen && res.stream == stream {
				return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
					CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: res.last},
					PositionOption:        &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
				}}})
			}
		}
		wrong := &api.AppendResp_WrongExpectedVersion{}
		if current == 0 {
			wrong.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		} else {
			wrong.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(current - 1)}
		}
		return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: wrong}})
	}
	var last fakeEvent
	for _, m := range msgs {
		last = f.addLocked(stream, m.GetId(), m.GetMetadata(), m.GetCustomMetadata(), m.GetData())
	}
	f.byID[uuidKey(msgs[0].GetId())] = fakeResult{stream: stream, last: last.revision, pos: last.position}
	f.committedLocked()
	return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: last.revision},
		PositionOption:        &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{CommitPosition: last.position, PreparePosition: last.position}},
	}}})
}

// committedLocked ends an append: now and then the server's own records land
// between the ledger's, and subscriptions wake up.
func (f *Server) committedLocked() {
	f.appends++
	if f.appends%3 == 0 {
		f.system("$stats-fake")
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// fakeFeatures is the ServerFeatures service: a 25.1 server announces AppendSession.
type fakeFeatures struct {
	features.UnimplementedServerFeaturesServer
	f *Server
}

func (x fakeFeatures) GetSupportedMethods(context.Context, *shared.Empty) (*features.SupportedMethods, error) {
	out := &features.SupportedMethods{EventStoreServerVersion: "25.1.0"}
	if x.f.oldServer {
		out.EventStoreServerVersion = "24.10.0"
	} else {
		out.Methods = append(out.Methods, &features.SupportedMethod{MethodName: "appendsession", ServiceName: "kurrentdb.protocol.v2.streams.streamsservice"})
	}
	return out, nil
}

// fakeV2 is the v2 StreamsService: the atomic multi-stream AppendSession.
type fakeV2 struct {
	v2.UnimplementedStreamsServiceServer
	f *Server
}

// AppendSession checks every request's expected revision, then writes all
// of them, or nothing.
func (x fakeV2) AppendSession(srv v2.StreamsService_AppendSessionServer) error {
	var reqs []*v2.AppendRequest
	for {
		req, err := srv.Recv()
		if err != nil {
			break // io.EOF: the client closed its side
		}
		reqs = append(reqs, req)
	}
	f := x.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range reqs {
		current := int64(len(f.streams[r.GetStream()])) - 1 // -1: no stream
		want := int64(-2)                                   // any
		if r.ExpectedRevision != nil {
			want = r.GetExpectedRevision()
		}
		ok := want == -2 || want == current || (want == -4 && current >= 0)
		if !ok {
			st, err := status.New(codes.FailedPrecondition, "stream revision conflict").WithDetails(
				&v2errors.StreamRevisionConflictErrorDetails{Stream: r.GetStream(), ExpectedRevision: want, ActualRevision: current})
			if err != nil {
				return err
			}
			return st.Err()
		}
	}
	out := &v2.AppendSessionResponse{}
	for _, r := range reqs {
		var last fakeEvent
		for _, rec := range r.GetRecords() {
			meta := map[string]string{"type": rec.GetSchema().GetName(), "content-type": "application/octet-stream"}
			if rec.GetSchema().GetFormat() == v2.SchemaFormat_SCHEMA_FORMAT_JSON {
				meta["content-type"] = "application/json"
			}
			custom, err := json.Marshal(properties(rec))
			if err != nil {
				return err
			}
			last = f.addLocked(r.GetStream(), &shared.UUID{Value: &shared.UUID_String_{String_: rec.GetRecordId()}}, meta, custom, rec.GetData())
		}
		pos := int64(last.position)
		out.Output = append(out.Output, &v2.AppendResponse{Stream: r.GetStream(), StreamRevision: int64(last.revision), Position: &pos})
		out.Position = pos
	}
	f.committedLocked()
	return srv.SendAndClose(out)
}

// properties are a record's string properties (its metadata).
func properties(rec *v2.AppendRecord) map[string]string {
	out := map[string]string{}
	for k, v := range rec.GetProperties() {
		out[k] = v.GetStringValue()
	}
	return out
}

func readEvent(ev fakeEvent) *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id: ev.id, StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(ev.stream)},
			StreamRevision: ev.revision, PreparePosition: ev.position, CommitPosition: ev.position,
			Metadata: ev.meta, CustomMetadata: ev.custom, Data: ev.data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: ev.position},
	}}}
}

// Read implements the Streams service's reads and subscriptions.
func (f *Server) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	o := req.GetOptions()
	back := o.GetReadDirection() == api.ReadReq_Options_Backwards
	if so := o.GetStream(); so != nil {
		if o.GetSubscription() != nil {
			return status.Error(codes.Unimplemented, "the fake has no stream subscriptions")
		}
		return f.readStream(so, back, o.GetCount(), srv)
	}
	all := o.GetAll()
	if o.GetSubscription() == nil {
		return f.readAll(all, back, o.GetCount(), srv)
	}
	return f.subscribe(all, o.GetFilter(), srv)
}

func (f *Server) readStream(so *api.ReadReq_Options_StreamOptions, back bool, count uint64, srv api.Streams_ReadServer) error {
	stream := string(so.GetStreamIdentifier().GetStreamName())
	f.mu.Lock()
	idx := append([]int(nil), f.streams[stream]...)
	evs := make([]fakeEvent, len(idx))
	for i, j := range idx {
		evs[i] = f.log[j]
	}
	f.mu.Unlock()
	if len(evs) == 0 {
		return srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{StreamIdentifier: so.GetStreamIdentifier()}}})
	}
	var from int
	switch r := so.GetRevisionOption().(type) {
	case *api.ReadReq_Options_StreamOptions_Revision:
		from = int(min(r.Revision, uint64(len(evs))))
	case *api.ReadReq_Options_StreamOptions_Start:
		from = 0
	case *api.ReadReq_Options_StreamOptions_End:
		from = len(evs) - 1
	}
	for n := uint64(0); n < count; n++ {
		i := from + int(n)
		if back {
			i = from - int(n)
		}
		if i < 0 || i >= len(evs) {
			break
		}
		if err := srv.Send(readEvent(evs[i])); err != nil {
			return err
		}
	}
	return nil
}

// snapshot copies $all.
func (f *Server) snapshot() ([]fakeEvent, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeEvent(nil), f.log...), f.changed
}

func (f *Server) readAll(all *api.ReadReq_Options_AllOptions, back bool, count uint64, srv api.Streams_ReadServer) error {
	log, _ := f.snapshot()
	start := 0
	switch a := all.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Start:
		start = 0
	case *api.ReadReq_Options_AllOptions_End:
		start = len(log) - 1
		if !back {
			start = len(log)
		}
	case *api.ReadReq_Options_AllOptions_Position:
		p := a.Position.GetCommitPosition()
		start = len(log)
		for i, ev := range log {
			if ev.position >= p { // inclusive, both ways
				start = i
				break
			}
		}
		if back && (start == len(log) || log[start].position > p) {
			start--
		}
	}
	for n := uint64(0); n < count; n++ {
		i := start + int(n)
		if back {
			i = start - int(n)
		}
		if i < 0 || i >= len(log) {
			break
		}
		if err := srv.Send(readEvent(log[i])); err != nil {
			return err
		}
	}
	return nil
}

func (f *Server) subscribe(all *api.ReadReq_Options_AllOptions, filter *api.ReadReq_Options_FilterOptions, srv api.Streams_ReadServer) error {
	var match func(string) bool = func(string) bool { return true }
	window := 32
	key := ""
	if filter != nil {
		expr := filter.GetStreamIdentifier()
		if expr == nil {
			return status.Error(codes.Unimplemented, "the fake filters on stream names only")
		}
		key = expr.GetRegex() + "|" + strings.Join(expr.GetPrefix(), ",")
		if r := expr.GetRegex(); r != "" {
			re, err := regexp.Compile(r)
			if err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			match = re.MatchString
		} else {
			prefixes := expr.GetPrefix()
			match = func(s string) bool {
				for _, p := range prefixes {
					if strings.HasPrefix(s, p) {
						return true
					}
				}
				return false
			}
		}
		if m := filter.GetMax(); m > 0 {
			window = int(m)
		}
	}
	f.mu.Lock()
	f.subs[key]++
	drop := f.drop
	f.mu.Unlock()
	if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: "fake"}}}); err != nil {
		return err
	}
	var after uint64 // deliver events after this position (exclusive)
	if p := all.GetPosition(); p != nil {
		after = p.GetCommitPosition()
	} else if all.GetEnd() != nil {
		log, _ := f.snapshot()
		if len(log) > 0 {
			after = log[len(log)-1].position
		}
	}
	sent, scanned, live := 0, 0, false
	for {
		log, changed := f.snapshot()
		for _, ev := range log {
			if ev.position <= after {
				continue
			}
			after = ev.position
			if !match(ev.stream) {
				scanned++
				if scanned%window == 0 {
					if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{CommitPosition: ev.position, PreparePosition: ev.position}}}); err != nil {
						return err
					}
				}
				continue
			}
			if drop > 0 && sent == drop {
				return status.Error(codes.Unavailable, "the fake drops the subscription")
			}
			if err := srv.Send(readEvent(ev)); err != nil {
				return err
			}
			sent++
		}
		if !live {
			live = true
			// A 25.1 server says when and where it caught up; an older one says nothing more.
			caught := &api.ReadResp_CaughtUp{}
			if !f.oldServer {
				caught.Timestamp = timestamppb.Now()
				caught.Position = &api.ReadResp_Position{CommitPosition: after, PreparePosition: after}
			}
			if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: caught}}); err != nil {
				return err
			}
		}
		select {
		case <-srv.Context().Done():
			return srv.Context().Err()
		case <-changed:
		}
	}
}

// Subscriptions returns how many subscriptions were opened in all.
func (f *Server) Subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.subs {
		n += c
	}
	return n
}

// SetDrop makes every later subscription drop after n events (0 = never).
func (f *Server) SetDrop(n int) {
	f.mu.Lock()
	f.drop = n
	f.mu.Unlock()
}
