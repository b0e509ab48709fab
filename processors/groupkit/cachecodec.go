package groupkit

import (
	"sync"
	"unsafe"

	"github.com/lovoo/goka"
)

// DefaultCachedStates is the default bound of a CachedCodec: when it holds
// that many states it is emptied (a miss only costs a decode).
const DefaultCachedStates = 1 << 20

// CachedCodec wraps a group-table codec whose Decode returns *T with an
// identity cache that saves the decode goka does for every input record.
// goka reads a key's state with Context.Value (storage Get, then codec
// Decode) and writes it with SetValue (codec Encode, storage Set,
// changelog produce). With in-memory storage (MemoryBuilder) Get returns
// the very slice the last Encode returned, so Decode of that slice hands
// back the state it was encoded from instead of decoding it again (a
// quarter of the features group's per-record CPU).
//
// Entries are keyed by the slice's address and length and hold the slice,
// so the address cannot be reused while the entry exists. A hit removes
// the entry: the caller owns the state and may mutate it, and a callback
// that changes the state without writing it back cannot leave a stale
// entry behind (the next Decode of those bytes decodes them). Storage that
// copies values (LevelDB) never hits and decodes as before. The wrapped
// codec must leave v, after Encode, indistinguishable to the callbacks
// from a decode of the bytes: fields it does not store (a "dirty" mark,
// say) must be reset by its Encode. A CachedCodec is safe for concurrent
// use (goka runs one goroutine per partition; Processor.Get may decode
// from others).
type CachedCodec[T any] struct {
	codec goka.Codec
	max   int

	mu    sync.Mutex
	byPtr map[*byte]cachedState[T]
	owner map[*T]*byte
}

type cachedState[T any] struct {
	b []byte
	v *T
}

var _ goka.Codec = (*CachedCodec[struct{}])(nil)

// NewCachedCodec wraps c, holding at most DefaultCachedStates states.
func NewCachedCodec[T any](c goka.Codec) *CachedCodec[T] {
	return &CachedCodec[T]{codec: c, max: DefaultCachedStates, byPtr: map[*byte]cachedState[T]{}, owner: map[*T]*byte{}}
}

// Encode implements goka.Codec: the wrapped codec's bytes, remembered as
// the encoding of v when v is a *T.
func (c *CachedCodec[T]) Encode(v interface{}) ([]byte, error) {
	b, err := c.codec.Encode(v)
	if err != nil || len(b) == 0 {
		return b, err
	}
	s, ok := v.(*T)
	if !ok || s == nil {
		return b, nil
	}
	p := unsafe.SliceData(b)
	c.mu.Lock()
	if old, ok := c.owner[s]; ok {
		delete(c.byPtr, old)
	}
	if len(c.byPtr) >= c.max {
		clear(c.byPtr)
		clear(c.owner)
	}
	c.byPtr[p] = cachedState[T]{b: b, v: s}
	c.owner[s] = p
	c.mu.Unlock()
	return b, nil
}

// Decode implements goka.Codec: the state b was encoded from if b is the
// slice that Encode returned last for it (once), else the wrapped codec's
// decoding.
func (c *CachedCodec[T]) Decode(b []byte) (interface{}, error) {
	if len(b) > 0 {
		p := unsafe.SliceData(b)
		c.mu.Lock()
		e, ok := c.byPtr[p]
		if ok && len(e.b) == len(b) {
			delete(c.byPtr, p)
			delete(c.owner, e.v)
			c.mu.Unlock()
			return e.v, nil
		}
		c.mu.Unlock()
	}
	return c.codec.Decode(b)
}

// Reset empties the cache. Call it when the instance's partitions change
// (RebalanceOption does): states of partitions that moved away would
// otherwise stay cached until the bound empties the cache.
func (c *CachedCodec[T]) Reset() {
	c.mu.Lock()
	clear(c.byPtr)
	clear(c.owner)
	c.mu.Unlock()
}

// RebalanceOption returns a goka option that resets the cache whenever
// the processor gets a new partition assignment. It sets goka's (single)
// rebalance callback.
func (c *CachedCodec[T]) RebalanceOption() goka.ProcessorOption {
	return goka.WithRebalanceCallback(func(goka.Assignment) { c.Reset() })
}

// Len returns the number of cached states.
func (c *CachedCodec[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byPtr)
}
