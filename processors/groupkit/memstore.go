package groupkit

import (
	"errors"
	"sort"
	"sync"

	"github.com/lovoo/goka/storage"
)

// memStorage is an in-memory goka storage. goka's own (storage.NewMemory)
// re-sorts its whole key list on every new key, so restoring a table of
// 100k devices takes quadratic time (15 s for 100k devices, growing
// fast); this one keeps a plain map and sorts only when an iterator is
// taken. It is safe for concurrent use: iterators are snapshots and take
// no lock while they are read.
type memStorage struct {
	mu     sync.RWMutex
	m      map[string][]byte
	offset *int64
}

var _ storage.Storage = (*memStorage)(nil)

// MemoryBuilder returns a goka storage builder that keeps each table
// partition in memory, in a map (Set, Get, Has and Delete are O(1); an
// iterator sorts a snapshot of the keys once). Use it instead of goka's
// storage.MemoryBuilder, whose insert re-sorts every key. Nothing survives
// a restart: the table is restored from its changelog topic.
func MemoryBuilder() storage.Builder {
	return func(string, int32) (storage.Storage, error) {
		return &memStorage{m: map[string][]byte{}}, nil
	}
}

func (s *memStorage) Open() error          { return nil }
func (s *memStorage) Close() error         { return nil }
func (s *memStorage) MarkRecovered() error { return nil }

func (s *memStorage) Has(key string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[key]
	return ok, nil
}

func (s *memStorage) Get(key string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[key], nil
}

func (s *memStorage) Set(key string, value []byte) error {
	if value == nil {
		return errors.New("cannot write nil value")
	}
	s.mu.Lock()
	s.m[key] = value
	s.mu.Unlock()
	return nil
}

func (s *memStorage) Delete(key string) error {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

func (s *memStorage) GetOffset(def int64) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.offset == nil {
		return def, nil
	}
	return *s.offset, nil
}

func (s *memStorage) SetOffset(offset int64) error {
	s.mu.Lock()
	s.offset = &offset
	s.mu.Unlock()
	return nil
}

// Iterator returns an iterator over a snapshot of the storage, in key
// order. Values are shared with the storage (goka never mutates a stored
// value in place).
func (s *memStorage) Iterator() (storage.Iterator, error) {
	return s.IteratorWithRange(nil, nil)
}

// IteratorWithRange is Iterator limited to keys in [start, limit); a nil
// bound is open.
func (s *memStorage) IteratorWithRange(start, limit []byte) (storage.Iterator, error) {
	s.mu.RLock()
	it := &memIter{i: -1, keys: make([]string, 0, len(s.m)), vals: make(map[string][]byte, len(s.m))}
	for k, v := range s.m {
		if (start != nil && k < string(start)) || (limit != nil && k >= string(limit)) {
			continue
		}
		it.keys = append(it.keys, k)
		it.vals[k] = v
	}
	s.mu.RUnlock()
	sort.Strings(it.keys)
	return it, nil
}

type memIter struct {
	i    int
	keys []string
	vals map[string][]byte
}

func (it *memIter) Next() bool {
	if it.i < len(it.keys) {
		it.i++
	}
	return it.i < len(it.keys)
}

func (it *memIter) Err() error { return nil }

func (it *memIter) Key() []byte {
	if it.i < 0 || it.i >= len(it.keys) {
		return nil
	}
	return []byte(it.keys[it.i])
}

func (it *memIter) Value() ([]byte, error) {
	if it.i < 0 || it.i >= len(it.keys) {
		return nil, nil
	}
	return it.vals[it.keys[it.i]], nil
}

func (it *memIter) Release() { it.keys, it.vals, it.i = nil, nil, 0 }

// Seek positions the iterator at the first key ≥ key (Key and Value
// return it, as with LevelDB) and reports whether there is one.
func (it *memIter) Seek(key []byte) bool {
	it.i = sort.SearchStrings(it.keys, string(key))
	return it.i < len(it.keys)
}
