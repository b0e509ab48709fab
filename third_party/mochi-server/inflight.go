// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]packets.Packet // internal contains the inflight packets
	receiveQuota        int32                     // remaining inbound qos quota for flow control
	sendQuota           int32                     // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                     // maximum allowed receive quota
	maximumSendQuota    int32                     // maximum allowed send quota
	immediate           []uint16                  // drover patch: ids of queued (Expiry < 0) packets, oldest first; may hold stale ids
}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{
		internal: map[uint16]packets.Packet{},
	}
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[m.PacketID]
	i.internal[m.PacketID] = m
	if m.Expiry < 0 && (!ok || old.Expiry >= 0) { // drover patch: queue in order
		i.immediate = append(i.immediate, m.PacketID)
	}
	return !ok
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if m, ok := i.internal[id]; ok {
		return m, true
	}

	return packets.Packet{}, false
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	for k, v := range i.internal {
		c.internal[k] = v
	}
	c.immediate = append([]uint16(nil), i.immediate...) // drover patch
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	m := []packets.Packet{}
	for _, v := range i.internal {
		if !immediate || (immediate && v.Expiry < 0) {
			m = append(m, v)
		}
	}

	sort.Slice(m, func(i, j int) bool {
		return uint16(m[i].Created) < uint16(m[j].Created)
	})

	return m
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	// drover patch: upstream took i.RLock() here and then called GetAll,
	// which takes i.RLock() again. A recursive read lock deadlocks as soon
	// as a writer (Set, from a publisher's goroutine delivering to this
	// client) queues between the two RLocks: sync.RWMutex blocks new
	// readers while a writer waits. GetAll locks on its own, so the outer
	// lock is dropped.
	m := i.GetAll(true)
	if len(m) > 0 {
		return m[0], true
	}

	return packets.Packet{}, false
}

// drover patch: TakeSendQuota, TakeNextImmediate and HasImmediate replace
// the racy quota bookkeeping around queued (Expiry < 0) packets; see
// Server.sendImmediate and DROVER.md.

// TakeSendQuota takes one unit of send quota if any is left, atomically
// (check and decrement cannot be split by a concurrent PUBACK).
func (i *Inflight) TakeSendQuota() bool {
	for {
		q := atomic.LoadInt32(&i.sendQuota)
		if q <= 0 {
			return false
		}
		if atomic.CompareAndSwapInt32(&i.sendQuota, q, q-1) {
			return true
		}
	}
}

// TakeNextImmediate claims the oldest queued packet: under the write lock
// it clears its Expiry < 0 mark, so the packet stays in flight until
// acknowledged but is sent only once. Queued packets are kept in a FIFO of
// ids (O(1) here; upstream's NextImmediate collected and sorted all of them
// by whole seconds for every send, reordering packets queued within a
// second).
func (i *Inflight) TakeNextImmediate() (packets.Packet, bool) {
	i.Lock()
	defer i.Unlock()
	i.dropStaleImmediate()
	if len(i.immediate) == 0 {
		return packets.Packet{}, false
	}
	next := i.internal[i.immediate[0]]
	i.immediate = i.immediate[1:]
	next.Expiry = 0
	i.internal[next.PacketID] = next
	return next, true
}

// HasImmediate reports whether a queued packet waits for send quota.
func (i *Inflight) HasImmediate() bool {
	i.Lock()
	defer i.Unlock()
	i.dropStaleImmediate()
	return len(i.immediate) > 0
}

// dropStaleImmediate drops ids at the head of the queue whose packet is no
// longer queued (deleted, or sent). Call with the write lock held.
func (i *Inflight) dropStaleImmediate() {
	for len(i.immediate) > 0 {
		if v, ok := i.internal[i.immediate[0]]; ok && v.Expiry < 0 {
			return
		}
		i.immediate = i.immediate[1:]
	}
	i.immediate = nil // release the backing array
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	_, ok := i.internal[id]
	delete(i.internal, id)

	return ok
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) < atomic.LoadInt32(&i.maximumSendQuota) {
		atomic.AddInt32(&i.sendQuota, 1)
	}
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}
