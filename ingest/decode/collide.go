package decode

import "time"

// Records that collide inside one message. The sink keys readings on
// (tenant, device, metric, ts) and fixes on (tenant, device, ts): two
// records of one message with the same key would become one row, the
// other silently gone. Such a message is rejected as a whole
// (duplicate_timestamp), naming the metric, the ts and both records, so
// the device's author can give each value its own time. A re-delivered
// copy of a message is not a collision: it yields the same records with
// the same event ids, which the sink writes once.

// uniqueScan is the record count up to which collisions are found by
// comparing pairs, without allocating.
const uniqueScan = 8

type readingKey struct {
	metric string
	ms     int64
}

// checkUnique rejects out when two sensor readings share metric and ts or
// two GPS fixes share ts. Media records are one per message.
func checkUnique(out *Output) error {
	n := len(out.Sensor)
	key := func(i int) readingKey { return readingKey{out.Sensor[i].Metric, out.Sensor[i].TS.UnixMilli()} }
	if n > uniqueScan && out.seen == nil {
		out.seen = make(map[readingKey]int, n)
	}
	if i, j, ok := firstCollision(n, key, out.seen); ok {
		r := &out.Sensor[j]
		return fail(StageValidate, ReasonDuplicateTimestamp, "ts",
			"metric %s has two values at ts %s (records %d and %d of the message): one message carries one value per metric and time; give each its own time",
			quote(r.Metric, 64), r.TS.Format(time.RFC3339Nano), out.index(i), out.index(j))
	}
	gkey := func(i int) int64 { return out.GPS[i].TS.UnixMilli() }
	if i, j, ok := firstCollision(len(out.GPS), gkey, nil); ok {
		return fail(StageValidate, ReasonDuplicateTimestamp, "ts",
			"two GPS fixes at ts %s (fixes %d and %d of the message): one message carries one fix per time",
			out.GPS[j].TS.Format(time.RFC3339Nano), i, j)
	}
	return nil
}

// firstCollision returns the first pair i < j with key(i) == key(j).
// Above uniqueScan records it uses seen (cleared first; nil = a new map).
func firstCollision[K comparable](n int, key func(int) K, seen map[K]int) (int, int, bool) {
	if n < 2 {
		return 0, 0, false
	}
	if n <= uniqueScan {
		for j := 1; j < n; j++ {
			kj := key(j)
			for i := 0; i < j; i++ {
				if key(i) == kj {
					return i, j, true
				}
			}
		}
		return 0, 0, false
	}
	if seen == nil {
		seen = make(map[K]int, n)
	}
	clear(seen)
	for j := range n {
		k := key(j)
		if i, ok := seen[k]; ok {
			return i, j, true
		}
		seen[k] = j
	}
	return 0, 0, false
}

// index is Sensor[i]'s index in the message.
func (o *Output) index(i int) int {
	if len(o.sensorIndex) == len(o.Sensor) {
		return o.sensorIndex[i]
	}
	return i
}
