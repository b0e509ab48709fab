package apps

import (
	"reflect"
	"testing"
)

func TestJoinCodec(t *testing.T) {
	st := &joinState{RightWM: 100, LeftWM: -5, Wall: 1 << 40,
		Right: []joinRec{{ID: "r1", TS: 1, I: 2, F: []byte(`{"a":1}`), N: map[string]float64{"value": 38.5, "b": -1}}, {ID: "r2", TS: 3, I: 4, F: []byte(`{}`)}},
		Left:  []joinRec{{ID: "l1", K: "farm/cow-1", TS: 2, I: 2, F: []byte(`{"lat":47}`)}}}
	b, err := joinCodec{}.Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := joinCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, st)
	}
	empty, err := joinCodec{}.Decode([]byte{joinCodecV1, 0, 0, 0, 0, 0})
	if err != nil || !reflect.DeepEqual(empty, &joinState{}) {
		t.Fatalf("empty state: %+v, %v", empty, err)
	}
	for i := 1; i < len(b); i++ {
		if _, err := (joinCodec{}).Decode(b[:i]); err == nil {
			t.Fatalf("a state cut at %d of %d bytes decoded", i, len(b))
		}
	}
	if _, err := (joinCodec{}).Decode([]byte{9}); err == nil {
		t.Fatal("unknown version decoded")
	}
}

// TestJoinCodecEvidence: a join share keeps its evidence in the join's
// table; the codec round-trips it too.
func TestJoinCodecEvidence(t *testing.T) {
	ev := &evidenceState{Hour: 3600000, Records: 2, First: 1, Last: 2, IDs: []uint64{1, 9}}
	b, err := joinCodec{}.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := joinCodec{}.Decode(b)
	if err != nil || !reflect.DeepEqual(got, ev) {
		t.Fatalf("evidence round trip: %+v, %v", got, err)
	}
}
