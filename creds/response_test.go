package creds

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestRedactResponse(t *testing.T) {
	const secret = "sk-SECRETsecretSECRET0123456789"
	s := &Store{byName: map[string]*Credential{"api": {Name: "api", Secret: secret, Placeholder: "sk-placeholderPLACEHOLDER0123"}}, names: []string{"api"}}
	gz := func(text string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		io.WriteString(w, text)
		w.Close()
		return b.String()
	}
	zl := func(text string) string {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		io.WriteString(w, text)
		w.Close()
		return b.String()
	}
	for _, tc := range []struct {
		name, method, coding, body string
		status                     int
		wantStatus                 int
		wantBody                   string
		wantLength                 string // Content-Length after
	}{
		{name: "plain", coding: "", body: "token " + secret, wantStatus: 200, wantBody: "token <redacted:api>"},
		{name: "gzip", coding: "gzip", body: gz("token " + secret), wantStatus: 200, wantBody: "token <redacted:api>"},
		{name: "deflate", coding: "deflate", body: zl("token " + secret), wantStatus: 200, wantBody: "token <redacted:api>"},
		{name: "brotli", coding: "br", body: "token " + secret, wantStatus: 502, wantBody: `content coding "br"`},
		{name: "head", method: "HEAD", coding: "", body: "", wantStatus: 200, wantLength: "42"},
		{name: "not modified", status: 304, coding: "", body: "", wantStatus: 304, wantLength: "42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, status := tc.method, tc.status
			if method == "" {
				method = "GET"
			}
			if status == 0 {
				status = 200
			}
			resp := &http.Response{
				StatusCode: status,
				Header:     http.Header{"X-Echo": {"Bearer " + secret}, "Content-Length": {"42"}},
				Body:       io.NopCloser(strings.NewReader(tc.body)),
				Trailer:    http.Header{"X-Trailer": {secret}},
				Request:    &http.Request{Method: method},
			}
			if tc.coding != "" {
				resp.Header.Set("Content-Encoding", tc.coding)
			}
			s.RedactResponse(resp)
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) || strings.Contains(string(body), secret) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if got := resp.Header.Get("Content-Length"); got != tc.wantLength {
				t.Errorf("Content-Length %q, want %q", got, tc.wantLength)
			}
			if tc.wantStatus != 502 && resp.Header.Get("X-Echo") != "Bearer <redacted:api>" {
				t.Errorf("header %q", resp.Header.Get("X-Echo"))
			}
			if strings.Contains(resp.Header.Get("X-Echo"), secret) {
				t.Errorf("header kept the secret")
			}
			if tc.wantStatus == 200 && tc.method == "" && resp.Trailer.Get("X-Trailer") != "<redacted:api>" {
				t.Errorf("trailer %q", resp.Trailer.Get("X-Trailer"))
			}
			if resp.Header.Get("Content-Encoding") != "" && tc.wantStatus != 502 {
				t.Errorf("Content-Encoding %q left on a decoded body", resp.Header.Get("Content-Encoding"))
			}
		})
	}
}

func TestInjectAsksForIdentity(t *testing.T) {
	c := &Credential{Name: "api", Secret: "s3cret-s3cret", Placeholder: "ph-ph-ph"}
	req, _ := http.NewRequest("GET", "https://api.test/", nil)
	req.Header.Set("Accept-Encoding", "gzip, br")
	if err := c.InjectHTTP(req); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Accept-Encoding"); got != "identity" {
		t.Errorf("Accept-Encoding %q, want identity", got)
	}
}
