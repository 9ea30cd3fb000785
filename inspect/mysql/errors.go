package mysql

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
)

// Server error codes the agent gets from clawpatrol.
const (
	erHandshake          = 1043 // ER_HANDSHAKE_ERROR, 08S01
	erAccessDenied       = 1045 // ER_ACCESS_DENIED_ERROR, 28000
	erUnknownCommand     = 1047 // ER_UNKNOWN_COM_ERROR, 08S01
	erTableAccessDenied  = 1142 // ER_TABLEACCESS_DENIED_ERROR, 42000: a denied statement
	erUnknownStmtHandler = 1243 // ER_UNKNOWN_STMT_HANDLER, HY000
	erMalformedPacket    = 1835 // ER_MALFORMED_PACKET, HY000
	erUpstream           = 2013 // CR_SERVER_LOST's number: the server went away
)

// errPacket builds an ERR packet.
func errPacket(code uint16, state, message string) []byte {
	b := []byte{0xff}
	b = binary.LittleEndian.AppendUint16(b, code)
	b = append(b, '#')
	b = append(b, state...)
	return append(b, message...)
}

// denyPacket is what the agent gets for a denied statement: ERR 1142 with
// SQLSTATE 42000, naming the rule and its reason.
func denyPacket(d action.Decision) []byte {
	return errPacket(erTableAccessDenied, "42000", "clawpatrol: "+d.Reason()+" (rule "+d.Rule+")")
}

// okPacket is an OK with no rows affected.
func okPacket(status uint16) []byte {
	return append(binary.LittleEndian.AppendUint16([]byte{0, 0, 0}, status), 0, 0)
}

// errMessage returns the code and message of an ERR packet's payload.
func errMessage(b []byte) string {
	f := &fields{b: b}
	f.byte1("ERR")
	code := f.uint16("ERR")
	if len(f.b) > 0 && f.b[0] == '#' {
		f.take(6, "SQLSTATE")
	}
	if f.err != nil {
		return "malformed ERR packet"
	}
	return fmt.Sprintf("ERR %d: %s", code, strings.ToValidUTF8(string(f.rest()), "?"))
}

// okStatus returns the status flags of an OK packet's payload (0x00 or,
// ending a result, 0xfe), and whether it parsed.
func okStatus(b []byte) (uint16, bool) {
	f := &fields{b: b}
	f.byte1("OK")
	f.lenenc("affected rows")
	f.lenenc("last insert id")
	status := f.uint16("status")
	return status, f.err == nil
}

// eofStatus returns the status flags of an EOF packet's payload.
func eofStatus(b []byte) uint16 {
	if len(b) >= 5 {
		return binary.LittleEndian.Uint16(b[3:])
	}
	return 0
}
