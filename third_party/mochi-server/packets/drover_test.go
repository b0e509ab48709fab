// SPDX-License-Identifier: MIT
// drover patch: tests of drover's fixes (see DROVER.md).

package packets

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// A v5 PUBACK omits its reason code only when it is 0x00 without
// properties; 0x10 (no matching subscribers) is written.
func TestPubackEncodeKeepsNonErrorReasonCode(t *testing.T) {
	for _, tc := range []struct {
		code byte
		want []byte
	}{
		{CodeSuccess.Code, []byte{Puback << 4, 2, 0, 7}},
		{CodeNoMatchingSubscribers.Code, []byte{Puback << 4, 3, 0, 7, 0x10}},
	} {
		pk := Packet{FixedHeader: FixedHeader{Type: Puback}, PacketID: 7, ReasonCode: tc.code, ProtocolVersion: 5}
		var b bytes.Buffer
		require.NoError(t, pk.PubackEncode(&b))
		require.Equal(t, tc.want, b.Bytes())
	}
}
