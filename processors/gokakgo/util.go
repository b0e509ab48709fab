package gokakgo

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type (
	atomicInt64    = atomic.Int64
	kmsgCommitReq  = kmsg.OffsetCommitRequest
	kmsgCommitResp = kmsg.OffsetCommitResponse
)

func kerrOf(code int16) error { return kerr.ErrorForCode(code) }
