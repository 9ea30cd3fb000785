package rego

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

// benchAction is a typical action: an HTTPS read of the GitHub API as an
// agent sends it, with the common fields a live session stamps.
func benchAction() *action.Action {
	return &action.Action{
		ID:       "01JD0000000000000000000000",
		Time:     time.Date(2026, 11, 24, 18, 0, 0, 123e6, time.UTC),
		Session:  "01JD0000000000000000000001",
		Agent:    &action.Agent{Command: []string{"claude", "-p", "fix it"}, PID: 4242, Exe: "/usr/bin/node"},
		Protocol: action.ProtoHTTP, Endpoint: "github", Credential: "github",
		Destination: action.Destination{Host: "api.github.com", Port: 443, IP: "198.18.0.3", TLS: true},
		HTTP: &action.HTTP{
			Method: "GET", Scheme: "https", Host: "api.github.com", Path: "/repos/acme/app/issues",
			Query: map[string][]string{"state": {"open"}},
			Headers: map[string][]string{
				"accept":        {"application/vnd.github+json"},
				"authorization": {"<redacted>"},
				"user-agent":    {"claude-cli/1.0"},
			},
		},
	}
}

// BenchmarkDecide measures one decision with every example policy loaded;
// p50-ns is the median of the individually timed decisions.
func BenchmarkDecide(b *testing.B) {
	eng, err := Load([]string{"../examples"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	a := benchAction()
	ctx := context.Background()
	if d := eng.Decide(ctx, a); d.Rule != "github-read" {
		b.Fatalf("decision %+v", d)
	}
	times := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		eng.Decide(ctx, a)
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
}

// BenchmarkInput measures building the input alone.
func BenchmarkInput(b *testing.B) {
	a := benchAction()
	b.ReportAllocs()
	for b.Loop() {
		Input(a)
	}
}

// BenchmarkDecideCancellable is BenchmarkDecide with a context that can be
// cancelled, as a connection's is.
func BenchmarkDecideCancellable(b *testing.B) {
	eng, err := Load([]string{"../examples"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	a := benchAction()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		eng.Decide(ctx, a)
	}
}

// BenchmarkDecideExamples decides example fixtures of other protocols.
func BenchmarkDecideExamples(b *testing.B) {
	eng, err := Load([]string{"../examples"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{
		"github/fixtures/graphql-query.json",
		"slack/fixtures/post-named-channel.json",
		"postgres/fixtures/select.json",
		"kubernetes/fixtures/exec.json",
		"github/fixtures/graphql-truncated.json",
	} {
		f, err := fixtures.Read("../examples/" + name)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strings.TrimSuffix(strings.ReplaceAll(name, "/fixtures/", "-"), ".json"), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				eng.Decide(ctx, f.Action)
			}
		})
	}
}
