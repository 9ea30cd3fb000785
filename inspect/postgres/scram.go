package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres uses it: the user name in
// the exchange is ignored (the startup message names the role), and
// channel binding is tls-server-end-point.
const (
	scramSHA256     = "SCRAM-SHA-256"
	scramSHA256Plus = "SCRAM-SHA-256-PLUS"
	scramIterations = 4096 // the server's default scram_iterations
)

var b64 = base64.StdEncoding

func nonce() string {
	b := make([]byte, 18)
	rand.Read(b)
	return b64.EncodeToString(b)
}

func hmacSum(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// saslPrep normalises a password the way Postgres does before hashing it
// (SASLprep is NFKC plus mappings that only matter for unusual spaces and
// control characters); an ASCII password is used as it is.
func saslPrep(p string) string {
	for i := range len(p) {
		if p[i] >= 0x80 {
			return norm.NFKC.String(p)
		}
	}
	return p
}

func saltedPassword(password string, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(sha256.New, saslPrep(password), salt, iterations, sha256.Size)
}

// attributes parses "a=1,b=2" into a map of single-letter keys.
func attributes(s string) (map[byte]string, error) {
	m := map[byte]string{}
	for part := range strings.SplitSeq(s, ",") {
		if len(part) < 2 || part[1] != '=' {
			return nil, fmt.Errorf("malformed SCRAM attribute %q", part)
		}
		m[part[0]] = part[2:]
	}
	return m, nil
}

// scramClient logs in upstream with the real password.
type scramClient struct {
	password        string
	gs2             string // the GS2 header: "n,,", "y,," or "p=tls-server-end-point,,"
	binding         []byte // channel binding data for -PLUS
	nonce           string
	clientFirstBare string
	serverSignature []byte
}

// clientFirst returns the SASLInitialResponse payload.
func (c *scramClient) clientFirst() string {
	c.nonce = nonce()
	c.clientFirstBare = "n=,r=" + c.nonce
	return c.gs2 + c.clientFirstBare
}

// clientFinal answers the server-first message.
func (c *scramClient) clientFinal(serverFirst string) (string, error) {
	a, err := attributes(serverFirst)
	if err != nil {
		return "", err
	}
	r, s, i := a['r'], a['s'], a['i']
	if !strings.HasPrefix(r, c.nonce) || len(r) == len(c.nonce) {
		return "", errors.New("SCRAM: the server's nonce does not extend ours")
	}
	salt, err := b64.DecodeString(s)
	if err != nil {
		return "", errors.New("SCRAM: malformed salt")
	}
	iterations, err := strconv.Atoi(i)
	if err != nil || iterations < 1 || iterations > 1<<24 {
		return "", fmt.Errorf("SCRAM: bad iteration count %q", i)
	}
	salted, err := saltedPassword(c.password, salt, iterations)
	if err != nil {
		return "", err
	}
	clientKey := hmacSum(salted, "Client Key")
	withoutProof := "c=" + b64.EncodeToString(append([]byte(c.gs2), c.binding...)) + ",r=" + r
	authMessage := c.clientFirstBare + "," + serverFirst + "," + withoutProof
	sig := hmacSum(sha(clientKey), authMessage)
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, sig)
	c.serverSignature = hmacSum(hmacSum(salted, "Server Key"), authMessage)
	return withoutProof + ",p=" + b64.EncodeToString(proof), nil
}

// verify checks the server-final message: the server proves it knew the
// password too, so a server that merely accepts anything is caught.
func (c *scramClient) verify(serverFinal string) error {
	a, err := attributes(serverFinal)
	if err != nil {
		return err
	}
	if e, ok := a['e']; ok {
		return fmt.Errorf("SCRAM: server error %q", e)
	}
	v, err := b64.DecodeString(a['v'])
	if err != nil || c.serverSignature == nil || !hmac.Equal(v, c.serverSignature) {
		return errors.New("SCRAM: the server's signature is wrong")
	}
	return nil
}

// serverEndPoint is the tls-server-end-point channel binding of a
// certificate (RFC 5929): its hash with its signature's hash, SHA-256 at
// least. It is nil for signature algorithms the RFC leaves undefined.
func serverEndPoint(cert *x509.Certificate) []byte {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil
	}
	h.Write(cert.Raw)
	return h.Sum(nil)
}

// scramServer checks the agent's placeholder the way a server checks a
// password, without ever holding more than the placeholder.
type scramServer struct {
	password        string
	salt            []byte
	nonce           string
	gs2             string
	clientFirstBare string
	serverFirst     string
	salted          []byte
}

// first takes the client-first message and returns the server-first one.
func (s *scramServer) first(clientFirst string) (string, error) {
	// gs2-header: a channel binding flag, an optional authzid, then the bare message.
	flag, rest, ok := strings.Cut(clientFirst, ",")
	if !ok {
		return "", errors.New("SCRAM: malformed client-first message")
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok || authzid != "" {
		return "", errors.New("SCRAM: malformed or unsupported authorization identity")
	}
	if flag != "n" && flag != "y" {
		return "", errors.New("SCRAM: channel binding was not offered")
	}
	a, err := attributes(bare)
	if err != nil {
		return "", err
	}
	cnonce, ok := a['r']
	if !ok || cnonce == "" {
		return "", errors.New("SCRAM: no client nonce")
	}
	if _, ok := a['m']; ok {
		return "", errors.New("SCRAM: unsupported extension")
	}
	s.gs2 = flag + ",,"
	s.clientFirstBare = bare
	s.salt = make([]byte, 16)
	rand.Read(s.salt)
	s.nonce = cnonce + nonce()
	s.serverFirst = "r=" + s.nonce + ",s=" + b64.EncodeToString(s.salt) + ",i=" + strconv.Itoa(scramIterations)
	if s.salted, err = saltedPassword(s.password, s.salt, scramIterations); err != nil {
		return "", err
	}
	return s.serverFirst, nil
}

// final checks the client's proof and returns the server-final message.
func (s *scramServer) final(clientFinal string) (string, error) {
	withoutProof, proof64, ok := strings.Cut(clientFinal, ",p=")
	if !ok {
		return "", errors.New("SCRAM: no proof")
	}
	a, err := attributes(withoutProof)
	if err != nil {
		return "", err
	}
	if a['c'] != b64.EncodeToString([]byte(s.gs2)) || a['r'] != s.nonce {
		return "", errors.New("SCRAM: channel binding or nonce mismatch")
	}
	proof, err := b64.DecodeString(proof64)
	if err != nil || len(proof) != sha256.Size {
		return "", errors.New("SCRAM: malformed proof")
	}
	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	clientKey := hmacSum(s.salted, "Client Key")
	sig := hmacSum(sha(clientKey), authMessage)
	claimed := make([]byte, len(proof))
	subtle.XORBytes(claimed, proof, sig)
	if subtle.ConstantTimeCompare(sha(claimed), sha(clientKey)) != 1 {
		return "", errWrongPassword
	}
	return "v=" + b64.EncodeToString(hmacSum(hmacSum(s.salted, "Server Key"), authMessage)), nil
}

var errWrongPassword = errors.New("wrong password")
