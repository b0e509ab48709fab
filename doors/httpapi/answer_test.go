package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/drover-iot/drover/ingest"
)

// TestAppendPlain: the reflection-free answer is byte for byte what
// json.Encoder writes, and answers with more than a status are left to it.
func TestAppendPlain(t *testing.T) {
	acc := Answer{Status: 202}
	for _, tc := range []struct {
		a     Answer
		plain bool
	}{
		{acc, true},
		{Answer{Status: 202, Items: []Answer{acc, acc, acc}}, true},
		{Answer{Status: 503, Items: []Answer{}}, true},
		{Answer{Status: 207, Items: []Answer{acc, {Status: 400, Outcome: ingest.Outcome{Kind: ingest.Refused, Reason: "not_json"}}}}, false},
		{Answer{Status: 400, Outcome: ingest.Outcome{Kind: ingest.Refused, Message: "<bad> & \"worse\""}}, false},
		{Answer{Status: 202, Items: []Answer{{Status: 202, Items: []Answer{acc}}}}, false},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(tc.a); err != nil {
			t.Fatal(err)
		}
		got, ok := appendPlain(nil, tc.a)
		if ok != tc.plain {
			t.Errorf("%+v: plain = %v, want %v", tc.a, ok, tc.plain)
			continue
		}
		if ok && !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%+v:\n got %s\nwant %s", tc.a, got, want.Bytes())
		}
	}
}

// TestSplitNDJSON: the lines split in place are those bufio.Scanner gave
// (trimmed, blank ones dropped, CRLF ends too), and appending to one item
// cannot overwrite the next.
func TestSplitNDJSON(t *testing.T) {
	for _, body := range []string{
		"{\"a\":1}", "{\"a\":1}\n", "{\"a\":1}\r\n{\"b\":2}\r\n", "\n\n {\"a\":1} \n\t\n{\"b\":2}", "x\ny\nz\n\n",
	} {
		var want [][]byte
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				want = append(want, bytes.Clone(line))
			}
		}
		got, bad := split([]byte(body), true, 10)
		if bad != nil {
			t.Fatalf("%q: %+v", body, bad)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %q, want %q", body, got, want)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%q: item %d %q, want %q", body, i, got[i], want[i])
			}
			_ = append(got[i], "!!!"...)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%q: appending to an item changed item %d to %q", body, i, got[i])
			}
		}
	}
}
