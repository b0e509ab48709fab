package groupkit

import "hash"

// KafkaHasher returns a goka hasher builder that assigns keys to partitions
// exactly as Kafka's default partitioner does (Java client, franz-go's
// default, sarama's NewReferenceHashPartitioner): murmur2 of the key with
// the sign bit cleared, modulo the partition count. Sum32 never has the top
// bit set, so goka's and sarama's int32 arithmetic give the same result.
func KafkaHasher() func() hash.Hash32 {
	return func() hash.Hash32 { return &murmur2{} }
}

// Partition returns the partition Kafka's default partitioner picks for key
// among n partitions.
func Partition(key string, n int32) int32 {
	if n <= 0 {
		return 0
	}
	return int32(murmur2Sum([]byte(key))&0x7fffffff) % n
}

type murmur2 struct{ buf []byte }

func (m *murmur2) Write(p []byte) (int, error) { m.buf = append(m.buf, p...); return len(p), nil }
func (m *murmur2) Sum(b []byte) []byte {
	s := m.Sum32()
	return append(b, byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}
func (m *murmur2) Reset()         { m.buf = m.buf[:0] }
func (m *murmur2) Size() int      { return 4 }
func (m *murmur2) BlockSize() int { return 4 }
func (m *murmur2) Sum32() uint32  { return murmur2Sum(m.buf) & 0x7fffffff }

// murmur2Sum is Kafka's murmur2 (seed 0x9747b28c).
func murmur2Sum(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	n := length / 4
	for i := 0; i < n; i++ {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
