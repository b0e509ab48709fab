package apps

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/lovoo/goka"
)

// joinCodec is the group-table codec of joinState: a version byte, then
// varints and length-prefixed bytes. The buffered records' fields are
// stored as the JSON they were encoded to once; a JSON codec re-validated
// and copied them on every state write, most of the join's CPU time.
// Version 2 adds each record's key (a linked join's state key is not a
// device). A join share keeps its evidence (evidenceState, JSON: it starts
// with '{') in the same table, so the codec reads and writes those too.
type joinCodec struct{}

const (
	joinCodecV1 = 1
	joinCodecV2 = 2
)

var errJoinState = errors.New("join state: truncated or corrupt")

func (joinCodec) Encode(v interface{}) ([]byte, error) {
	if ev, isEv := v.(*evidenceState); isEv {
		return json.Marshal(ev)
	}
	st, ok := v.(*joinState)
	if !ok {
		if s, isVal := v.(joinState); isVal {
			st = &s
		} else {
			return nil, fmt.Errorf("join state codec: cannot encode %T", v)
		}
	}
	size := 32
	for _, r := range slices.Concat(st.Right, st.Left) {
		size += len(r.ID) + len(r.K) + len(r.F) + 32 + 16*len(r.N)
	}
	b := make([]byte, 0, size)
	b = append(b, joinCodecV2)
	b = binary.AppendVarint(b, st.RightWM)
	b = binary.AppendVarint(b, st.LeftWM)
	b = binary.AppendVarint(b, st.Wall)
	for _, recs := range [][]joinRec{st.Right, st.Left} {
		b = binary.AppendUvarint(b, uint64(len(recs)))
		for _, r := range recs {
			b = appendBytes(b, []byte(r.ID))
			b = appendBytes(b, []byte(r.K))
			b = binary.AppendVarint(b, r.TS)
			b = binary.AppendVarint(b, r.I)
			b = appendBytes(b, r.F)
			b = binary.AppendUvarint(b, uint64(len(r.N)))
			for _, k := range sortedKeys(r.N) {
				b = appendBytes(b, []byte(k))
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.N[k]))
			}
		}
	}
	return b, nil
}

func sortedKeys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

type byteReader struct {
	b   []byte
	err error
}

func (r *byteReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err, r.b = errJoinState, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *byteReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = errJoinState, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *byteReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err, r.b = errJoinState, nil
		return nil
	}
	v := slices.Clone(r.b[:n])
	r.b = r.b[n:]
	return v
}

func (joinCodec) Decode(data []byte) (interface{}, error) {
	if len(data) > 0 && data[0] == '{' {
		ev := &evidenceState{}
		if err := json.Unmarshal(data, ev); err != nil {
			return nil, fmt.Errorf("evidence state: %w", err)
		}
		return ev, nil
	}
	if len(data) == 0 || (data[0] != joinCodecV1 && data[0] != joinCodecV2) {
		return nil, fmt.Errorf("join state: unknown version")
	}
	v2 := data[0] == joinCodecV2
	r := &byteReader{b: data[1:]}
	st := &joinState{RightWM: r.varint(), LeftWM: r.varint(), Wall: r.varint()}
	for _, dst := range []*[]joinRec{&st.Right, &st.Left} {
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			return nil, errJoinState
		}
		recs := make([]joinRec, 0, n)
		for range n {
			rec := joinRec{ID: string(r.bytes())}
			if v2 {
				rec.K = string(r.bytes())
			}
			rec.TS, rec.I, rec.F = r.varint(), r.varint(), r.bytes()
			if k := r.uvarint(); k > 0 && k <= uint64(len(r.b)) {
				rec.N = make(map[string]float64, k)
				for range k {
					name := string(r.bytes())
					if len(r.b) < 8 {
						return nil, errJoinState
					}
					rec.N[name] = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
					r.b = r.b[8:]
				}
			}
			recs = append(recs, rec)
		}
		if len(recs) > 0 {
			*dst = recs
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return st, nil
}

// withEvidence is a window share's group-table codec: the windows' codec,
// and evidenceState as JSON (starting with '{', which no version byte of
// the windows' codec is).
type withEvidence struct{ goka.Codec }

func (c withEvidence) Encode(v interface{}) ([]byte, error) {
	if ev, ok := v.(*evidenceState); ok {
		return json.Marshal(ev)
	}
	return c.Codec.Encode(v)
}

func (c withEvidence) Decode(b []byte) (interface{}, error) {
	if len(b) > 0 && b[0] == '{' {
		ev := &evidenceState{}
		if err := json.Unmarshal(b, ev); err != nil {
			return nil, fmt.Errorf("evidence state: %w", err)
		}
		return ev, nil
	}
	return c.Codec.Decode(b)
}
