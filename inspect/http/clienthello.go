package http

// The TLS record and handshake constants a ClientHello parser needs
// (RFC 8446 §5.1, §4, §4.2).
const (
	recordTypeHandshake  = 22
	handshakeClientHello = 1
	extServerName        = 0
	extALPN              = 16
	maxRecord            = 1<<14 + 256 // plaintext limit, with slack for odd stacks
)

// parseClientHello reads a ClientHello from the TLS records at the start of
// b. ok is false for anything malformed, or ambiguous in a way another
// parser could read differently (duplicate extensions, several host
// names): such a flow is not intercepted as TLS at all.
func parseClientHello(b []byte) (sni string, alpn []string, ok, more bool) {
	var hs []byte
	for {
		if len(b) < 5 {
			return "", nil, false, true
		}
		if b[0] != recordTypeHandshake || b[1] != 3 {
			return "", nil, false, false
		}
		n := int(b[3])<<8 | int(b[4])
		if n == 0 || n > maxRecord {
			return "", nil, false, false
		}
		if len(b) < 5+n {
			return "", nil, false, true
		}
		hs = append(hs, b[5:5+n]...)
		b = b[5+n:]
		if len(hs) < 4 {
			continue
		}
		if hs[0] != handshakeClientHello {
			return "", nil, false, false
		}
		m := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if m > maxSniff {
			return "", nil, false, false
		}
		if len(hs) >= 4+m {
			sni, alpn, ok = parseHelloBody(hs[4 : 4+m])
			return sni, alpn, ok, false
		}
	}
}

// reader is a bounds-checked cursor; any short read poisons it.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() int {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (r *reader) u16() int {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return int(v[0])<<8 | int(v[1])
}

// vec8 and vec16 read a length-prefixed vector.
func (r *reader) vec8() *reader {
	b := r.bytes(r.u8())
	return &reader{b: b, bad: r.bad}
}

func (r *reader) vec16() *reader {
	b := r.bytes(r.u16())
	return &reader{b: b, bad: r.bad}
}

func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }

func parseHelloBody(body []byte) (sni string, alpn []string, ok bool) {
	r := &reader{b: body}
	r.bytes(2 + 32) // legacy_version, random
	if sid := r.vec8(); len(sid.b) > 32 {
		return "", nil, false
	}
	if suites := r.vec16(); len(suites.b) < 2 || len(suites.b)%2 != 0 {
		return "", nil, false
	}
	if comp := r.vec8(); len(comp.b) < 1 {
		return "", nil, false
	}
	if r.bad {
		return "", nil, false
	}
	if len(r.b) == 0 {
		return "", nil, true // no extensions at all
	}
	exts := r.vec16()
	if !r.done() {
		return "", nil, false
	}
	seen := map[int]bool{}
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.vec16()
		if exts.bad || data.bad || seen[typ] {
			return "", nil, false
		}
		seen[typ] = true
		switch typ {
		case extServerName:
			list := data.vec16()
			if !data.done() || list.bad {
				return "", nil, false
			}
			for len(list.b) > 0 {
				nameType := list.u8()
				name := list.vec16()
				if list.bad || name.bad || len(name.b) == 0 || nameType != 0 || sni != "" {
					return "", nil, false
				}
				sni = string(name.b)
			}
		case extALPN:
			list := data.vec16()
			if !data.done() || list.bad || len(list.b) == 0 {
				return "", nil, false
			}
			for len(list.b) > 0 {
				p := list.vec8()
				if list.bad || p.bad || len(p.b) == 0 {
					return "", nil, false
				}
				alpn = append(alpn, string(p.b))
			}
		}
	}
	return sni, alpn, true
}
