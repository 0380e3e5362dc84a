package api

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// readModelAnswer is a query response that reports the read model's checkpoint.
type readModelAnswer[T any] interface {
	*T
	proto.Message
	GetCheckpoint() uint64
}

// answer is the tail every query shares: wait until the read model applied
// the position the caller names (MinPositionHeader, else the store's last),
// read — empty when the reader returns nil — and report the checkpoint waited
// for when the reader did not set one. op names the read in errors.
func answer[T any, P readModelAnswer[T]](ctx context.Context, s *service, minPosition, op string, empty func() P, read func(context.Context) (P, error)) (*connect.Response[T], error) {
	checkpoint, err := s.awaitReadModel(ctx, minPosition)
	if err != nil {
		return nil, err
	}
	res, err := read(ctx)
	if err != nil {
		return nil, withOp(op, err)
	}
	if res == nil {
		res = empty()
	}
	if res.GetCheckpoint() == 0 {
		m := res.ProtoReflect()
		m.Set(m.Descriptor().Fields().ByName("checkpoint"), protoreflect.ValueOfUint64(checkpoint))
	}
	return connect.NewResponse((*T)(res)), nil
}
