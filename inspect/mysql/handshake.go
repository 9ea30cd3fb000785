package mysql

import (
	"bytes"
	"encoding/binary"
)

// Capability flags.
const (
	capLongPassword     = 1 << 0 // also CLIENT_MYSQL: unset, MariaDB reads its extended flags
	capFoundRows        = 1 << 1
	capLongFlag         = 1 << 2
	capConnectWithDB    = 1 << 3
	capNoSchema         = 1 << 4
	capCompress         = 1 << 5
	capODBC             = 1 << 6
	capLocalFiles       = 1 << 7
	capIgnoreSpace      = 1 << 8
	capProtocol41       = 1 << 9
	capInteractive      = 1 << 10
	capSSL              = 1 << 11
	capTransactions     = 1 << 13
	capSecureConnection = 1 << 15
	capMultiStatements  = 1 << 16
	capMultiResults     = 1 << 17
	capPSMultiResults   = 1 << 18
	capPluginAuth       = 1 << 19
	capConnectAttrs     = 1 << 20
	capPluginAuthLenenc = 1 << 21
	capExpiredPasswords = 1 << 22
	capSessionTrack     = 1 << 23
)

// passedCaps are the capabilities clawpatrol relays between agent and
// server. Left out: LOCAL_FILES (the server could ask for any of the
// agent's files), COMPRESS and the like (the bytes could not be read),
// DEPRECATE_EOF, OPTIONAL_RESULTSET_METADATA and QUERY_ATTRIBUTES (they
// change the framing this package reads), and MariaDB's extended
// capabilities (progress reports, bulk and cached-metadata execution).
const passedCaps = capLongPassword | capFoundRows | capLongFlag | capConnectWithDB | capNoSchema | capODBC |
	capIgnoreSpace | capProtocol41 | capInteractive | capTransactions | capSecureConnection | capMultiStatements |
	capMultiResults | capPSMultiResults | capPluginAuth | capPluginAuthLenenc | capExpiredPasswords | capSessionTrack

// neededCaps are what clawpatrol needs from both sides.
const neededCaps = capProtocol41 | capSecureConnection | capPluginAuth

// Server status flags.
const (
	statusMoreResults        = 0x0008
	statusCursorExists       = 0x0040
	statusNoBackslashEscapes = 0x0200
)

// Authentication plugins.
const (
	nativePassword = "mysql_native_password"
	cachingSHA2    = "caching_sha2_password"
	sha256Password = "sha256_password"
	clearPassword  = "mysql_clear_password"
)

// greeting is the server's Handshake v10.
type greeting struct {
	version string
	connID  uint32
	nonce   []byte // auth-plugin-data, 20 bytes for the usual plugins
	caps    uint32
	charset byte
	status  uint16
	plugin  string
}

func parseGreeting(b []byte) (*greeting, error) {
	f := &fields{b: b}
	if v := f.byte1("greeting"); v != 10 {
		if v == 0xff {
			return nil, protocolError("the server refused the connection: %s", errMessage(b))
		}
		return nil, protocolError("protocol version %d, want 10", v)
	}
	g := &greeting{version: string(f.cstring("server version"))}
	g.connID = f.uint32("connection id")
	g.nonce = append(g.nonce, f.take(8, "auth data")...)
	f.take(1, "filler")
	g.caps = uint32(f.uint16("capabilities"))
	if len(f.b) > 0 {
		g.charset = f.byte1("character set")
		g.status = f.uint16("status")
		g.caps |= uint32(f.uint16("capabilities")) << 16
		dataLen := int(f.byte1("auth data length"))
		f.take(10, "reserved")
		if g.caps&capSecureConnection != 0 {
			n := max(13, dataLen-8)
			part := f.take(n, "auth data")
			// The last byte of part 2 is a NUL the length counts.
			g.nonce = append(g.nonce, bytes.TrimRight(part, "\x00")...)
		}
		if g.caps&capPluginAuth != 0 && f.err == nil {
			name := f.b
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			g.plugin = string(name)
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	if g.caps&neededCaps != neededCaps {
		return nil, protocolError("the server does not speak the 4.1 protocol with plugin authentication")
	}
	if g.plugin == "" {
		g.plugin = nativePassword
	}
	return g, nil
}

// build writes a greeting. Its extended MariaDB capabilities are zero, and
// CLIENT_MYSQL is set: clients then use none of them.
func (g *greeting) build() []byte {
	b := []byte{10}
	b = append(append(b, g.version...), 0)
	b = binary.LittleEndian.AppendUint32(b, g.connID)
	b = append(b, g.nonce[:8]...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(g.caps))
	b = append(b, g.charset)
	b = binary.LittleEndian.AppendUint16(b, g.status)
	b = binary.LittleEndian.AppendUint16(b, uint16(g.caps>>16))
	b = append(b, byte(len(g.nonce)+1))
	b = append(b, make([]byte, 10)...)
	part2 := g.nonce[8:]
	b = append(b, part2...)
	b = append(b, make([]byte, max(13-len(part2), 1))...)
	return append(append(b, g.plugin...), 0)
}

// handshakeResponse is the client's HandshakeResponse41.
type handshakeResponse struct {
	caps      uint32
	maxPacket uint32
	charset   byte
	user      string
	auth      []byte
	db        string
	plugin    string
	attrs     []byte // length-encoded, as sent
}

// sslRequest reports whether b is an SSLRequest: the first 32 bytes of a
// response, with CLIENT_SSL.
func sslRequest(b []byte) bool {
	return len(b) == 32 && binary.LittleEndian.Uint32(b)&capSSL != 0
}

func parseHandshakeResponse(b []byte) (*handshakeResponse, error) {
	f := &fields{b: b}
	r := &handshakeResponse{caps: f.uint32("capabilities")}
	if r.caps&(capProtocol41|capSecureConnection) != capProtocol41|capSecureConnection {
		return nil, protocolError("the client does not speak the 4.1 protocol")
	}
	r.maxPacket = f.uint32("max packet")
	r.charset = f.byte1("character set")
	f.take(23, "filler")
	r.user = string(f.cstring("user"))
	if r.caps&capPluginAuthLenenc != 0 {
		r.auth = f.lenencString("auth response")
	} else {
		r.auth = f.take(int(f.byte1("auth response")), "auth response")
	}
	if r.caps&capConnectWithDB != 0 && len(f.b) > 0 {
		r.db = string(f.cstring("database"))
	}
	if r.caps&capPluginAuth != 0 && len(f.b) > 0 {
		r.plugin = string(f.cstring("auth plugin"))
	}
	if r.caps&capConnectAttrs != 0 && len(f.b) > 0 {
		before := f.b
		f.lenencString("connection attributes")
		r.attrs = before[:len(before)-len(f.b)]
	}
	if f.err != nil {
		return nil, f.err
	}
	return r, nil
}

func (r *handshakeResponse) build() []byte {
	b := binary.LittleEndian.AppendUint32(nil, r.caps)
	b = binary.LittleEndian.AppendUint32(b, r.maxPacket)
	b = append(b, r.charset)
	b = append(b, make([]byte, 23)...)
	b = append(append(b, r.user...), 0)
	if r.caps&capPluginAuthLenenc != 0 {
		b = appendLenencString(b, r.auth)
	} else {
		b = append(append(b, byte(len(r.auth))), r.auth...)
	}
	if r.caps&capConnectWithDB != 0 {
		b = append(append(b, r.db...), 0)
	}
	if r.caps&capPluginAuth != 0 {
		b = append(append(b, r.plugin...), 0)
	}
	if r.caps&capConnectAttrs != 0 {
		b = append(b, r.attrs...)
	}
	return b
}

// sslRequestPacket is the SSLRequest for a response r.
func (r *handshakeResponse) sslRequestPacket() []byte {
	return r.build()[:32]
}
