package netstack

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func answer(t *testing.T, names *Names, name string, typ dnsmessage.Type) (dnsmessage.Header, []dnsmessage.Resource) {
	t.Helper()
	resp := names.Answer(query(t, name, typ))
	if resp == nil {
		t.Fatalf("no answer for %s %v", name, typ)
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	return m.Header, m.Answers
}

func TestAnswers(t *testing.T) {
	names := NewNames(VirtualNet)
	h, a := answer(t, names, "db.internal.", dnsmessage.TypeA)
	if h.RCode != dnsmessage.RCodeSuccess || len(a) != 1 {
		t.Fatalf("A: %v %v", h, a)
	}
	ip := netip.AddrFrom4(a[0].Body.(*dnsmessage.AResource).A)
	if ip != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("first name got %v", ip)
	}
	if _, a2 := answer(t, names, "DB.Internal.", dnsmessage.TypeA); netip.AddrFrom4(a2[0].Body.(*dnsmessage.AResource).A) != ip {
		t.Fatal("a name must keep its address in any case")
	}
	// AAAA, HTTPS (type 65) and TXT: no data, so clients use the A record
	// and get no QUIC or ECH hints.
	for _, typ := range []dnsmessage.Type{dnsmessage.TypeAAAA, dnsmessage.Type(65), dnsmessage.TypeTXT} {
		if h, a := answer(t, names, "db.internal.", typ); h.RCode != dnsmessage.RCodeSuccess || len(a) != 0 {
			t.Errorf("%v: want NODATA, got %v %v", typ, h.RCode, a)
		}
	}
	h, a = answer(t, names, "1.0.18.198.in-addr.arpa.", dnsmessage.TypePTR)
	if len(a) != 1 || a[0].Body.(*dnsmessage.PTRResource).PTR.String() != "db.internal." {
		t.Fatalf("PTR: %v %v", h, a)
	}
	if h, _ := answer(t, names, "9.9.9.9.in-addr.arpa.", dnsmessage.TypePTR); h.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("PTR of an unknown address: %v", h.RCode)
	}
}

func TestNamesTableIsBounded(t *testing.T) {
	names := NewNames(netip.MustParsePrefix("198.18.0.0/30")) // .1 and .2 usable
	for i, name := range []string{"a", "b"} {
		if _, ok := names.Assign(name); !ok {
			t.Fatalf("name %d refused", i)
		}
	}
	if _, ok := names.Assign("c"); ok {
		t.Fatal("a full table handed out an address")
	}
	if h, _ := answer(t, names, "c.", dnsmessage.TypeA); h.RCode != dnsmessage.RCodeServerFailure {
		t.Fatalf("full table: want SERVFAIL, got %v", h.RCode)
	}
}

func TestAnswerRejectsNonQueries(t *testing.T) {
	names := NewNames(VirtualNet)
	if names.Answer([]byte{1, 2, 3}) != nil {
		t.Fatal("garbage answered")
	}
	q := query(t, "x.", dnsmessage.TypeA)
	q[2] |= 0x80 // a response, not a query
	if names.Answer(q) != nil {
		t.Fatal("a response was answered")
	}
}

// FuzzAnswer: nothing the agent sends to port 53 may crash the resolver,
// and whatever it answers must parse.
func FuzzAnswer(f *testing.F) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	seed, _ := b.Finish()
	f.Add(seed)
	f.Add([]byte{0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	names := NewNames(VirtualNet)
	f.Fuzz(func(t *testing.T, q []byte) {
		resp := names.Answer(q)
		if resp == nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("unparseable answer %x to %x: %v", resp, q, err)
		}
	})
}
