package groupkit

import (
	"reflect"
	"testing"
)

type cacheTestState struct {
	N    int
	Tags []string
}

// TestCachedCodec checks the identity cache: the slice the last Encode
// returned decodes to the same state once; any other slice, a second
// Decode, or a copy decode from the bytes.
func TestCachedCodec(t *testing.T) {
	c := NewCachedCodec[cacheTestState](JSONCodec[cacheTestState]{})
	want := cacheTestState{N: 7, Tags: []string{"a"}}
	d := &cacheTestState{N: 7, Tags: []string{"a"}}
	b, err := c.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := (JSONCodec[cacheTestState]{}).Encode(d); !reflect.DeepEqual(b, plain) {
		t.Fatal("the cached codec writes other bytes than the codec it wraps")
	}
	tests := []struct {
		name     string
		in       []byte
		wantSame bool
	}{
		{"a copy of the bytes decodes", append([]byte(nil), b...), false},
		{"a prefix of the slice decodes (or fails)", b[:len(b)-1], false},
		{"the encoded slice is a hit", b, true},
		{"a second decode of it decodes", b, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Decode(tc.in)
			if err != nil {
				if tc.wantSame || len(tc.in) == len(b) {
					t.Fatal(err)
				}
				return
			}
			got := v.(*cacheTestState)
			if (got == d) != tc.wantSame {
				t.Fatalf("same object = %v, want %v", got == d, tc.wantSame)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("decoded %+v", got)
			}
		})
	}

	// A taken state mutated and not written back: the stored bytes still
	// decode to the old content.
	b2, _ := c.Encode(d)
	taken, _ := c.Decode(b2)
	taken.(*cacheTestState).N = 1
	again, _ := c.Decode(b2)
	if again.(*cacheTestState).N != 7 {
		t.Error("a mutated, unwritten state leaked through the cache")
	}

	// Re-encoding a state replaces its entry; superseded bytes miss.
	d.N = 7
	e1, _ := c.Encode(d)
	e2, _ := c.Encode(d)
	if n := c.Len(); n != 1 {
		t.Errorf("cache holds %d entries for one state", n)
	}
	if v, _ := c.Decode(e1); v.(*cacheTestState) == d {
		t.Error("superseded bytes hit the cache")
	}
	if v, _ := c.Decode(e2); v.(*cacheTestState) != d {
		t.Error("latest bytes missed the cache")
	}

	// Other types pass through uncached; errors are the codec's.
	if _, err := c.Encode(cacheTestState{N: 1}); err != nil || c.Len() != 0 {
		t.Errorf("encoding a value (not a pointer): %v, %d cached", err, c.Len())
	}
	if _, err := c.Decode([]byte("{")); err == nil {
		t.Error("bad JSON decoded")
	}

	// Reset empties it.
	if _, err := c.Encode(d); err != nil || c.Len() != 1 {
		t.Fatalf("encode: %v, %d cached", err, c.Len())
	}
	c.Reset()
	if c.Len() != 0 {
		t.Error("Reset left entries")
	}

	// The bound empties the cache instead of growing past it.
	small := NewCachedCodec[cacheTestState](JSONCodec[cacheTestState]{})
	small.max = 2
	for i := range 5 {
		if _, err := small.Encode(&cacheTestState{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.Len(); n > 2 {
		t.Errorf("bounded cache holds %d", n)
	}
}
